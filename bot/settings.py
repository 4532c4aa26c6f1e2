"""All configuration, read from the environment (and `.env`) through pydantic-settings.

Every field here is documented in README.md and `.env.example`; keep the three in step.
Secrets are `SecretStr` so that a settings object printed into a log shows `**********`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from storage.database import sqlite_path

# The Docker image's own defaults (/data for the database, the health server on), read after the
# environment and `.env`: a blank `DATABASE_URL=` or `HTTP_LISTEN=` from a copied .env.example, which
# `docker run --env-file` turns into an empty variable, then still means "the image's default", and the
# same .env works on a bare machine, where this file does not exist.
IMAGE_DEFAULTS_FILE = Path("/etc/framecast/defaults.env")
OFF_VALUES = {"off", "none", "no", "false", "0"}



class Settings(BaseSettings):
    """Framecast's settings; names are the environment variables, case-insensitive."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", env_ignore_empty=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then `.env`, then the image's defaults file (if any)."""
        image_defaults = DotEnvSettingsSource(settings_cls, env_file=IMAGE_DEFAULTS_FILE, env_ignore_empty=True)
        return init_settings, env_settings, dotenv_settings, image_defaults, file_secret_settings

    # --- Discord -----------------------------------------------------------------------------
    discord_token: SecretStr
    discord_api_base: str | None = None
    discord_guild_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    # Gateway sharding (gateway processes only). Unset: discord.py asks Discord how many shards to run
    # and runs them all in this process. Set both to run only some of them here.
    shard_count: int | None = Field(default=None, ge=1)
    shard_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)

    # --- Storage -----------------------------------------------------------------------------
    database_url: str = "sqlite:///data/bot.db"

    # --- Vendors -----------------------------------------------------------------------------
    kkiai_base_url: str = "https://www.kkiai.com"
    kkiai_api_key: SecretStr | None = None
    kie_base_url: str = "https://api.kie.ai"
    kie_upload_base_url: str = "https://kieai.redpandaai.co"
    kie_api_key: SecretStr | None = None
    kling_base_url: str | None = None
    kling_api_key: SecretStr | None = None
    veo_preferred_provider: Literal["kie", "kkiai"] = "kie"

    # --- Polling, timeouts, vendor limits ----------------------------------------------------
    http_timeout_seconds: float = 30.0
    submit_timeout_seconds: float = 60.0
    poll_min_interval_seconds: float = 3.0
    poll_max_interval_seconds: float = 60.0
    # Set: every running job is polled every this many seconds, instead of the learned schedule.
    poll_interval_seconds: float | None = Field(default=None, gt=0)
    job_timeout_seconds: float | None = None  # None: each model's own maximum from the catalog
    uncertain_submit_grace_seconds: float = 900.0
    provider_max_in_flight: int = 8
    # Vendor requests (status checks, submits) and deliveries the poller has in flight at once. A
    # round trip to a vendor takes ~0.1-0.5 s, so this bounds checks per second (256 at 0.25 s: ~1,000/s;
    # the 10,000-job benchmark's peak needs ~560/s, and at 128 its checks queued for up to 1 s).
    poller_concurrency: int = Field(default=256, ge=1, le=4096)
    kie_submits_per_10s: int = 20
    # The unified API's and Kling's gateways publish no account rate; 10 per 10 s stays the cautious default.
    kkiai_submits_per_10s: int = Field(default=10, ge=1)
    kling_submits_per_10s: int = Field(default=10, ge=1)
    lease_seconds: float = 180.0

    # --- Quotas ------------------------------------------------------------------------------
    quota_daily_credits: int = 10
    quota_max_concurrent_jobs: int = 2

    # --- Attachments -------------------------------------------------------------------------
    max_attachment_bytes: int = 10 * 1024 * 1024

    # --- Operators' HTTP server and callbacks ------------------------------------------------
    http_listen: str | None = None
    public_base_url: str | None = None
    kie_webhook_hmac_key: SecretStr | None = None

    log_level: str = "INFO"

    @field_validator("discord_guild_ids", "shard_ids", mode="before")
    @classmethod
    def _split_guild_ids(cls, value: object) -> object:
        """Accept `123,456` (the documented form) as well as a real list."""
        if isinstance(value, str):
            return [int(part) for part in value.replace(" ", "").split(",") if part]
        if isinstance(value, int):
            return [value]
        return value

    @field_validator(
        "discord_api_base", "kling_base_url", "http_listen", "public_base_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty line in `.env` (`KLING_BASE_URL=`) means "not configured", not "empty URL"; `off`
        turns off what the image turns on (HTTP_LISTEN=off: no operators' server)."""
        if isinstance(value, str) and (not value.strip() or value.strip().lower() in OFF_VALUES):
            return None
        return value.rstrip("/") if isinstance(value, str) else value

    @field_validator("kkiai_api_key", "kie_api_key", "kling_api_key", "kie_webhook_hmac_key", mode="before")
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # --- Derived -------------------------------------------------------------------------------
    def shard_problems(self) -> list[str]:
        """Why SHARD_COUNT / SHARD_IDS cannot work, one sentence each (empty when they can)."""
        if self.shard_ids and self.shard_count is None:
            return ["SHARD_IDS needs SHARD_COUNT (the total number of shards over all gateway processes)"]
        count = self.shard_count or 0
        wrong = [i for i in self.shard_ids if not 0 <= i < count]
        if wrong:
            return [f"SHARD_IDS {wrong} are outside 0..{count - 1} (SHARD_COUNT is {count})"]
        if len(set(self.shard_ids)) != len(self.shard_ids):
            return ["SHARD_IDS names a shard twice"]
        return []

    @property
    def database_path(self) -> Path:
        """The SQLite file named by DATABASE_URL (`sqlite:///relative` or `sqlite:////absolute`);
        ValueError for a PostgreSQL URL (it names no file) or an unknown scheme."""
        path = sqlite_path(self.database_url)
        if path is None:
            raise ValueError("DATABASE_URL names a PostgreSQL server, not a SQLite file")
        return path

    @property
    def database_engine(self) -> str:
        """'sqlite' or 'postgres', from DATABASE_URL's scheme; ValueError for any other scheme."""
        return "sqlite" if sqlite_path(self.database_url) is not None else "postgres"

    @property
    def kkiai_configured(self) -> bool:
        return self.kkiai_api_key is not None and bool(self.kkiai_base_url)

    @property
    def kie_configured(self) -> bool:
        return self.kie_api_key is not None and bool(self.kie_base_url)

    @property
    def kling_configured(self) -> bool:
        return self.kling_api_key is not None and self.kling_base_url is not None

    def secret_values(self) -> list[str]:
        """Every secret in force, for the log redaction filter."""
        secrets = [self.discord_token, self.kkiai_api_key, self.kie_api_key, self.kling_api_key,
                   self.kie_webhook_hmac_key]
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
