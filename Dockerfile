# Framecast: a slim image that runs the bot as a non-root user, data on a volume.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATABASE_URL=sqlite:////data/bot.db \
    HTTP_LISTEN=0.0.0.0:8080

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app framecast \
    && mkdir -p /data && chown framecast /data

USER framecast
VOLUME ["/data"]
EXPOSE 8080

# /healthz answers 200 only when the gateway is connected, the database is writable and the poller is alive.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"

CMD ["python", "-m", "bot"]
