"""Task input: a JSON document, read field by field with errors that name the field.

Every runner parses its input with ``Fields`` so a malformed task fails with
``RunnerInputError`` naming what to fix, whatever the runner.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

from runners.errors import RunnerInputError

# Step Functions' quota for a task's input; larger input cannot come from AWS.
MAX_INPUT_BYTES = 262_144


def parse_document(raw: str) -> dict[str, Any]:
    """Task input is a JSON object, or a JSON string holding one (the original sample's
    ``Pass`` states produce the latter)."""
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_INPUT_BYTES:
        raise RunnerInputError("$", f"input is over {MAX_INPUT_BYTES} bytes")
    try:
        document: Any = json.loads(raw)
        if isinstance(document, str):
            document = json.loads(document)
    except ValueError as error:
        raise RunnerInputError("$", f"input is not JSON: {error}") from error
    except RecursionError:
        raise RunnerInputError("$", "input nests too deeply to parse") from None
    if not isinstance(document, dict):
        raise RunnerInputError("$", f"input must be a JSON object, got {type(document).__name__}")
    return document


class Fields:
    """Typed access to task input fields, failing with the field's name."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document

    def text(self, name: str, required: bool = False, max_length: int = 1024) -> str | None:
        value = self._document.get(name)
        if value is None:
            if required:
                raise RunnerInputError(name, "is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise RunnerInputError(name, "must be a non-empty string")
        if len(value) > max_length:
            raise RunnerInputError(name, f"must be at most {max_length} characters")
        _check_characters(name, value)
        return value

    def required_text(self, name: str, max_length: int = 1024) -> str:
        value = self.text(name, required=True, max_length=max_length)
        assert value is not None
        return value

    def number(self, name: str, minimum: float, maximum: float) -> float | None:
        value = self._document.get(name)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise RunnerInputError(name, "must be a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RunnerInputError(name, "must be a number")
        if not minimum <= value <= maximum:
            raise RunnerInputError(name, f"must be between {minimum:g} and {maximum:g}")
        return float(value)

    def integer(self, name: str, minimum: int, maximum: int) -> int | None:
        value = self.number(name, minimum, maximum)
        if value is None:
            return None
        if value != int(value):
            raise RunnerInputError(name, "must be a whole number")
        return int(value)

    def choice(self, name: str, choices: Sequence[str]) -> str | None:
        value = self.text(name)
        if value is not None and value not in choices:
            raise RunnerInputError(name, f"must be one of {', '.join(choices)}")
        return value

    def string_map(self, name: str) -> dict[str, str]:
        value = self._document.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise RunnerInputError(name, "must be an object of string values")
        for key, item in value.items():
            _check_unicode(f"{name}.{_shown(key)}", key)
            _check_unicode(f"{name}.{_shown(key)}", item)
        return dict(value)

    def string_list(self, name: str, max_items: int) -> list[str] | None:
        value = self._document.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RunnerInputError(name, "must be a list of strings")
        if not 1 <= len(value) <= max_items:
            raise RunnerInputError(name, f"must hold 1 to {max_items} items")
        for index, item in enumerate(value):
            _check_unicode(f"{name}[{index}]", item)
        return list(value)


def _check_unicode(name: str, value: str) -> None:
    """JSON may carry lone surrogates ("\\ud800"); no AWS API accepts them."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RunnerInputError(name, "must be valid Unicode text (no lone surrogates)") from None


def _check_characters(name: str, value: str) -> None:
    _check_unicode(name, value)
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n\r" for c in value):
        raise RunnerInputError(name, "must not hold control characters")


def _shown(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")[:64]
