# Framecast: a slim image that runs the bot as a non-root user (uid 10001), data on the /data volume.
# One image, every role: `framecast` (all in one), `framecast gateway`, `framecast worker`.

# --- build: a wheel, so the runtime image holds no source tree, build/ or *.egg-info -------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime -----------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The image's defaults (database on /data, health server on 0.0.0.0:8080) are read after the environment
# and .env, so blank lines from a copied .env.example keep them; see bot/settings.py.
COPY docker/defaults.env /etc/framecast/defaults.env
COPY --from=build /wheels /wheels
RUN pip install /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /app framecast \
    && mkdir -p /app /data && chown framecast /app /data

WORKDIR /app
USER 10001
VOLUME ["/data"]
EXPOSE 8080

# /healthz means what the role runs (all: gateway + database + poller; gateway: gateway + database;
# worker: Discord REST + database + poller). The check asks wherever HTTP_LISTEN says, in one line.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["framecast", "healthcheck"]

ENTRYPOINT ["framecast"]
CMD ["all"]
