# syntax=docker/dockerfile:1
#
# Image of the yokoten workers. One image runs every command:
#   docker run IMAGE                  -> matcher worker (the default CMD)
#   docker run IMAGE correlator       -> correlator (faust worker)
#   docker run IMAGE topics create    -> create the Kafka topics, then exit
#   docker run -v ./feeds:/feeds:ro IMAGE ioc push /feeds/iocs.csv
# Settings come from YOKOTEN_* environment variables (see service/config.py).

ARG PYTHON_IMAGE=python:3.11-slim

# ---- build stage: compilers and pip live only here -------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# pyahocorasick is a C extension. pip uses its wheel where PyPI has one for the
# platform and compiles it from source otherwise, which needs gcc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/yokoten

WORKDIR /src

# Dependencies first, from pyproject.toml alone, so that a source change
# reuses this layer instead of reinstalling every dependency.
COPY pyproject.toml ./
RUN python -c "import tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(project['dependencies']))" > requirements.txt \
 && /opt/yokoten/bin/pip install -r requirements.txt

COPY README.md ./
COPY detectors ./detectors
COPY service ./service
RUN /opt/yokoten/bin/pip wheel --no-deps --wheel-dir /src/dist . \
 && /opt/yokoten/bin/pip install --no-deps /src/dist/yokoten-*.whl

# ---- final stage: the venv and the app, no build tools ---------------------
FROM ${PYTHON_IMAGE}

# The correlator (faust) writes its data directory, yokoten-correlator-data,
# into the working directory, so /var/lib/yokoten is owned by the service user.
# Mount a volume or an emptyDir there when the root filesystem is read-only.
RUN groupadd --system --gid 10001 yokoten \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/yokoten --no-create-home \
        --shell /usr/sbin/nologin yokoten \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/yokoten

COPY --from=build /opt/yokoten /opt/yokoten

ENV PATH=/opt/yokoten/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YOKOTEN_METRICS_HOST=0.0.0.0 \
    YOKOTEN_METRICS_PORT=9308

WORKDIR /var/lib/yokoten
USER 10001:10001

EXPOSE 9308

# The image has no curl or wget, so the check uses Python's urllib. It follows
# YOKOTEN_METRICS_PORT and fails when that is 0, because then no server runs.
# One-shot commands (topics create, ioc push) exit long before the first check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('YOKOTEN_METRICS_PORT', '9308'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["yokoten"]
CMD ["matcher"]
