# The container worker (cloudformation/runner-service.yaml runs it on ECS Fargate).
#   docker build -t runners .
#   docker run --env-file worker.env runners     # RUNNERS_<RUNNER>_ACTIVITY_ARN and RUNNERS_* variables
# It serves until SIGTERM, then drains its long polls (up to 60 s) and hands running jobs
# to the next worker: give it a stop timeout of at least 70 s.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 runners \
    && useradd --system --uid 10001 --gid runners --no-create-home --shell /usr/sbin/nologin runners

WORKDIR /app
COPY requirements-runtime.txt .
RUN pip install --requirement requirements-runtime.txt

# The emulator, the demo and the test support stay out (.dockerignore). A runner plugin
# goes in with a line of its own: RUN pip install <its package>.
COPY runners/ runners/

USER 10001:10001
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "runners", "worker", "--from-env"]
