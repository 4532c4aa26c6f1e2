"""The composition root: every service built once, from settings, sharing one database and clock.

The Discord bot, the operators' HTTP server and the end-to-end tests all start from
`build_services`, so they run the very same wiring.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.audit import AuditService
from bot.catalog import ProviderName
from bot.clock import Clock, SystemClock
from bot.jobs.cards import CardKeeper
from bot.jobs.poller import Poller
from storage.jobs import JobRepository
from bot.jobs.service import JobService
from bot.moderation.policy import PolicyService
from bot.providers.base import ProviderClient
from bot.providers.registry import build_providers, close_providers
from bot.publishing.base import Publisher
from bot.quota.service import QuotaService
from bot.server_admin import ServerAdmin
from bot.settings import Settings
from storage.cards import CardStore
from storage.database import Database, open_database
from storage.guild_settings import GuildSettingsStore

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    clock: Clock
    providers: dict[ProviderName, ProviderClient]
    jobs: JobService
    quota: QuotaService
    policy: PolicyService
    audit: AuditService
    poller: Poller
    guild_settings: GuildSettingsStore
    admin: ServerAdmin
    cards: CardKeeper
    owns_providers: bool = field(default=True)

    async def aclose(self) -> None:
        """Stop the card keeper and the poller, release vendor pools (ours only), close the database."""
        try:
            await self.cards.stop()
            await self.poller.stop()
        finally:
            try:
                if self.owns_providers:
                    await close_providers(self.providers)
            finally:
                await self.db.close()


async def build_services(
    settings: Settings,
    publisher: Publisher,
    clock: Clock | None = None,
    providers: Mapping[ProviderName, ProviderClient] | None = None,
    instance_id: str | None = None,
) -> Services:
    """Open the database DATABASE_URL names and wire every service; the poller is not started."""
    clock = clock or SystemClock()
    db = await open_database(settings.database_url)
    try:
        owns_providers = providers is None
        clients = dict(providers) if providers is not None else build_providers(settings, clock)
        store = GuildSettingsStore(db)
        quota = QuotaService(db, settings, clock, store)
        policy = PolicyService(db, clock, store)
        audit = AuditService(db, clock)
        repository = JobRepository(db)
        poller = Poller(settings=settings, db=db, clock=clock, providers=clients, quota=quota,
                        publisher=publisher, audit_service=audit, repository=repository, instance_id=instance_id)
        jobs = JobService(settings=settings, db=db, clock=clock, providers=clients, quota=quota, policy=policy,
                          repository=repository, audit=audit, wake_poller=poller.wake)
        admin = ServerAdmin(db, clock, store, wake_poller=poller.wake, audit=audit)
        cards = CardKeeper(store=CardStore(db), repository=repository, clock=clock, settings=settings,
                           publisher=publisher)
    except BaseException:
        await db.close()
        raise
    log.info("services built: providers %s, poller %s", sorted(p.value for p in clients), poller.owner)
    return Services(settings=settings, db=db, clock=clock, providers=clients, jobs=jobs, quota=quota,
                    policy=policy, audit=audit, poller=poller, guild_settings=store, admin=admin, cards=cards,
                    owns_providers=owns_providers)
