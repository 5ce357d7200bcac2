"""Generate the sample datasets, deterministically (same seed, same bytes).

    python samples/generate.py [--out samples/data]

Two CSV files with the columns of the original sample's QuickSight datasets, filled
with invented values: a sales pipeline (about 20,000 opportunities, 2011-2016) and daily
marketing metrics (one row a day, 2013-2016).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

SEED = 20180612
SALES_FILE = "SalesPipeline_QuickSightSample.csv"
MARKETING_FILE = "MarketingData_QuickSightSample.csv"
SALES_COLUMNS = [
    "Date", "Salesperson", "Lead Name", "Segment", "Region", "Target Close",
    "Forecasted Monthly Revenue", "Opportunity Stage", "Weighted Revenue",
    "Closed Opportunity", "Active Opportunity", "Latest Status Entry",
]
MARKETING_COLUMNS = [
    "Date", "New visitors SEO", "New visitors CPC", "New visitors Social Media",
    "Return visitors", "Twitter mentions", "Twitter follower adds",
    "Twitter followers cumulative", "Mailing list adds ", "Mailing list cumulative",
    "Website Pageviews", "Website Visits", "Website Unique Visits", "Mobile uniques",
    "Tablet uniques", "Desktop uniques", "Free sign up", "Paid conversion", "Events",
]
SALESPEOPLE = ["Mara Quist", "Tobias Renn", "Ines Farrow", "Olu Bakare", "Priya Nandan",
               "Henrik Solberg", "Celia Montrose"]
SEGMENTS = {"SMB": 0.50, "Enterprise": 0.34, "Startup": 0.16}
REGIONS = {"US": 0.61, "EMEA": 0.26, "APAC": 0.13}
# stage -> (share of opportunities, probability used for the weighted revenue)
STAGES = {
    "Lead": (0.435, 0.1),
    "Closed Lost": (0.380, 0.0),
    "Prospect": (0.095, 0.2),
    "Contracting": (0.033, 0.8),
    "Closed Won": (0.030, 1.0),
    "Qualified": (0.027, 0.5),
}
EVENTS = ["Webinar", "Trade show", "Product launch", "Press release", "Meetup"]


def _day(value: date) -> str:
    """The original's format: month/day/year without leading zeros."""
    return f"{value.month}/{value.day}/{value.year}"


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def sales_rows(rng: random.Random, rows: int = 20_994) -> Iterator[list[str]]:
    start, days = date(2011, 1, 2), (date(2016, 12, 31) - date(2011, 1, 2)).days
    offsets = sorted(rng.randrange(days + 1) for _ in range(rows))
    counters: dict[str, int] = {}
    for offset in offsets:
        opened = start + timedelta(days=offset)
        segment, region = _pick(rng, SEGMENTS), _pick(rng, REGIONS)
        prefix = f"{region}_{segment}"
        counters[prefix] = counters.get(prefix, 0) + 1
        stage = rng.choices(list(STAGES), weights=[s for s, _ in STAGES.values()])[0]
        forecast = min(999_999, int(rng.lognormvariate(11.6, 0.9)))
        closed = stage.startswith("Closed")
        yield [
            _day(opened),
            rng.choice(SALESPEOPLE),
            f"{prefix}_{counters[prefix]}",
            segment,
            region,
            _day(opened + timedelta(days=rng.randint(14, 120))),
            str(forecast),
            stage,
            str(round(forecast * STAGES[stage][1])),
            "TRUE" if closed else "FALSE",
            "TRUE" if not closed and rng.random() < 0.1 else "FALSE",
            "TRUE" if rng.random() < 0.48 else "FALSE",
        ]


def marketing_rows(rng: random.Random) -> Iterator[list[str]]:
    day, last = date(2013, 1, 1), date(2016, 12, 31)
    followers, mailing = 180, 1850
    while day <= last:
        growth = 1 + (day - date(2013, 1, 1)).days / 1461
        weekly = 0.75 if day.weekday() >= 5 else 1.0 + 0.05 * math.sin(day.weekday())
        seo = int(rng.gauss(2100, 250) * growth * weekly)
        cpc = int(seo * rng.uniform(0.12, 0.18))
        social = int(seo * rng.uniform(0.02, 0.04))
        returning = int((seo + cpc + social) * rng.uniform(0.08, 0.12))
        visits = (seo + cpc + social + returning) * 3
        uniques = int(visits * rng.uniform(0.30, 0.36))
        follower_adds = max(0, int(rng.gauss(3, 2)))
        mailing_adds = max(0, int(rng.gauss(4, 3)))
        followers += follower_adds
        mailing += mailing_adds
        mobile = int(uniques * rng.uniform(0.08, 0.14))
        tablet = int(uniques * rng.uniform(0.15, 0.22))
        yield [
            _day(day), str(seo), str(cpc), str(social), str(returning),
            str(max(0, int(rng.gauss(2, 2)))), str(follower_adds), str(followers),
            str(mailing_adds), str(mailing), str(int(visits * rng.uniform(2.8, 3.2))),
            str(visits), str(uniques), str(mobile), str(tablet), str(uniques - mobile - tablet),
            str(int(uniques * rng.uniform(0.45, 0.55))), str(int(uniques * rng.uniform(0.02, 0.04))),
            rng.choice(EVENTS) if rng.random() < 0.03 else "",
        ]
        day += timedelta(days=1)


def render(columns: list[str], rows: Iterator[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def datasets(seed: int = SEED) -> dict[str, bytes]:
    """File name -> contents; the same seed always gives the same bytes."""
    return {
        SALES_FILE: render(SALES_COLUMNS, sales_rows(random.Random(seed))),
        MARKETING_FILE: render(MARKETING_COLUMNS, marketing_rows(random.Random(seed + 1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, content in datasets().items():
        (args.out / name).write_bytes(content)
        print(f"{args.out / name}: {len(content):,} bytes")


if __name__ == "__main__":
    main()
