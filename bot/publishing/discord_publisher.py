"""The Discord side of delivery: post a finished job's result (thread -> channel -> DM) and audit lines.

Why it looks like this:
- Results are posted with the bot token, never the interaction token (that dies after 15 minutes).
- Every post carries the job's nonce; discord.py sends it with `enforce_nonce`, so Discord answers a
  repeat within a few minutes with the message it already made instead of a second one. For a retry
  after that window (or after a crash between "posted" and "recorded"), we first look at the target's
  recent messages for one by us naming this job, and return its id instead of posting again.
- A missing or forbidden destination falls through to the next one; a busy Discord (429/5xx, network)
  is a retryable `DeliveryError`, because another destination would not be less busy and falling
  through would post the result somewhere the member does not expect.
- Success is only ever reported with a real message id.
- A job's thread is recorded before Discord is asked for it (cogs/generate.py), so a bot stopped in
  between leaves a row naming a thread that does not exist. Delivery then makes that thread on the
  summary, once, so the result still lands under the member's request.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import discord
import httpx

from bot.clock import Clock, SystemClock
from bot.jobs.cards import Button, Card
from bot.publishing.base import DeliveryError, ResultMessage
from bot.publishing.components import button_view, edit_card_message
from bot.publishing.render import thread_name

if TYPE_CHECKING:
    from bot.jobs.models import JobRecord

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 50
NONCE_MEMORY_SECONDS = 240  # Discord dedupes a repeated nonce for "a few minutes"; stay well inside
MESSAGE_MAX_CHARS = 2000
# Discord error codes that mean "this destination is gone or closed to us", not "try later".
UNUSABLE_TARGET_CODES = {10003, 50001, 50013, 50083, 160005, 50007}
FILE_TOO_LARGE_CODE = 40005
UPLOAD_LIMIT_MEMORY_SECONDS = 3600.0  # a server's boost level (its upload limit) rarely changes
THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440  # Discord's default for a thread made from the client


class _Unusable(Exception):
    """The destination cannot take the message (deleted, forbidden, archived); try the next one."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing  # Discord does not know it (404), as opposed to closed to us


def carries_job_marker(content: str, job_id: int) -> bool:
    """Whether a message we posted is this job's result (the rendered texts say `job #<id>`)."""
    return re.search(rf"\bjob #{job_id}(?!\d)", content) is not None


def _retry_after(exc: discord.HTTPException) -> float | None:
    if isinstance(exc, discord.RateLimited):
        return exc.retry_after
    response: Any = getattr(exc, "response", None)
    header = response.headers.get("Retry-After") if response is not None and hasattr(response, "headers") else None
    try:
        return float(header) if header is not None else None
    except ValueError:
        return None


def _classify(exc: Exception, where: str) -> Exception:
    """Map a failed Discord call to "try the next destination" or "retry later"."""
    if isinstance(exc, discord.RateLimited):
        return DeliveryError(f"rate limited posting to {where}", retryable=True, retry_after=exc.retry_after)
    if isinstance(exc, (discord.NotFound, discord.Forbidden)):
        return _Unusable(f"{where}: {exc.status} {exc.code}", missing=isinstance(exc, discord.NotFound))
    if isinstance(exc, discord.HTTPException):
        if exc.status == 429 or exc.status >= 500:
            return DeliveryError(f"Discord answered {exc.status} posting to {where}", retryable=True,
                                 retry_after=_retry_after(exc))
        if exc.code in UNUSABLE_TARGET_CODES:
            return _Unusable(f"{where}: {exc.status} {exc.code}")
        return DeliveryError(f"Discord refused the message for {where}: {exc.status} {exc.code}", retryable=False)
    if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError, OSError)):
        return DeliveryError(f"network error posting to {where}: {type(exc).__name__}", retryable=True)
    return exc


class DiscordPublisher:
    """`Publisher` for a running discord.py client."""

    def __init__(self, bot: discord.Client, *, http: httpx.AsyncClient | None = None,
                 clock: Clock | None = None, download_timeout: float = 60.0) -> None:
        self.bot = bot
        self._clock: Clock = clock or SystemClock()
        self._http = http
        self._own_http = http is None
        self._download_timeout = download_timeout
        self._upload_limits: dict[int, tuple[int, float]] = {}  # guild id -> (bytes, when asked)

    async def aclose(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- results ------------------------------------------------------------------------------------

    async def deliver(self, job: JobRecord, message: ResultMessage) -> int:
        content = message.content
        if message.video_url and message.video_url not in content:
            content = f"{content}\n{message.video_url}"
        content = content[:MESSAGE_MAX_CHARS]
        mentions = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(message.mention_user_id)], replied_user=False,
        )
        may_exist = self._may_have_been_posted(job)
        video = await self._download_video(job, message) if message.video_url else None

        targets: list[tuple[str, Any]] = []
        if job.thread_id:
            targets.append(("thread", self._partial(job.thread_id, job.guild_id, discord.ChannelType.public_thread)))
        if job.channel_id and job.channel_id != job.thread_id:
            targets.append(("channel", self._partial(job.channel_id, job.guild_id, None)))
        targets.append(("dm", None))

        async def post(where: str, target: Any) -> int:
            if target is None:
                target = await self._dm_channel(job.user_id)
            if may_exist:
                found = await self._find_posted(target, job.id)
                if found is not None:
                    log.info("job %s: result already posted in %s as %s", job.id, where, found)
                    return found
            sent = await self._send(target, content, message.nonce, mentions, video, job.id, message.buttons)
            log.info("job %s: result posted in %s as message %s", job.id, where, sent)
            return sent

        reasons: list[str] = []
        for where, target in targets:
            try:
                try:
                    return await post(where, target)
                except _Unusable as exc:
                    if not (where == "thread" and exc.missing):
                        raise
                    made = await self._make_missing_thread(job)
                    if made is None:
                        raise
                    return await post("thread", made)
            except _Unusable as exc:
                reasons.append(str(exc))
                log.info("job %s: %s unusable (%s); trying the next destination", job.id, where, exc)
        raise DeliveryError(f"job {job.id}: no destination accepted the result ({'; '.join(reasons)})",
                            retryable=False)

    async def _make_missing_thread(self, job: JobRecord) -> Any | None:
        """The thread the row names on the summary, made now: the bot stopped after recording it (a
        public thread on a message has the message's id) and before asking Discord. None when that
        is not the case or Discord says no (summary deleted, thread removed by a moderator)."""
        if not (job.channel_id and job.summary_message_id and job.thread_id == job.summary_message_id):
            return None
        try:
            # The REST call itself: a partial message's create_thread wants the server in the cache.
            made = await self.bot.http.start_thread_with_message(
                job.channel_id, job.summary_message_id, name=thread_name(job.id, job.family.value, job.prompt),
                auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            if exc.status == 429 or exc.status >= 500:
                raise _classify(exc, f"thread on summary {job.summary_message_id}") from exc
            log.info("job %s: its thread is gone and cannot be made on the summary (%s %s)", job.id,
                     exc.status, exc.code)
            return None
        except Exception as exc:  # classified, then re-raised
            raise _classify(exc, f"thread on summary {job.summary_message_id}") from exc
        thread_id = int(made["id"])
        log.info("job %s: made its missing thread %s on the summary", job.id, thread_id)
        return self._partial(thread_id, job.guild_id, discord.ChannelType.public_thread)

    def _may_have_been_posted(self, job: JobRecord) -> bool:
        """A retry, or a first attempt so late (a restart after a crash) that Discord's nonce memory
        may have lapsed: look before posting."""
        if job.delivery_attempts > 0:
            return True
        finished = job.finished_at
        return finished is not None and self._clock.now() - finished > NONCE_MEMORY_SECONDS

    async def _send(self, target: Any, content: str, nonce: str, mentions: discord.AllowedMentions,
                    video: bytes | None, job_id: int, buttons: Sequence[Button] = ()) -> int:
        where = f"channel {getattr(target, 'id', '?')}"
        extra: dict[str, Any] = {"nonce": nonce, "allowed_mentions": mentions}
        view = button_view(buttons)
        if view is not None:
            extra["view"] = view
        try:
            try:
                file = discord.File(io.BytesIO(video), filename=f"framecast-{job_id}.mp4") if video else None
                sent = await target.send(content, file=file, **extra) if file else await target.send(content, **extra)
            except discord.HTTPException as exc:
                if video is None or (exc.code != FILE_TOO_LARGE_CODE and exc.status != 413):
                    raise
                # Our idea of the upload limit was wrong; the link alone still works.
                sent = await target.send(content, **extra)
        except Exception as exc:  # classified, then re-raised
            raise _classify(exc, where) from exc
        if not sent or not getattr(sent, "id", None):
            raise DeliveryError(f"Discord returned no message id for {where}", retryable=True)
        return int(sent.id)

    async def _find_posted(self, target: Any, job_id: int) -> int | None:
        """A message by us naming this job among the target's recent ones (a retry after a lost answer)."""
        me = self.bot.user
        if me is None:
            return None
        try:
            async for old in target.history(limit=HISTORY_LOOKBACK):
                if old.author.id == me.id and carries_job_marker(old.content, job_id):
                    return int(old.id)
        except discord.NotFound as exc:
            raise _Unusable(f"history of {getattr(target, 'id', '?')}: {exc.status}") from exc
        except discord.Forbidden:
            # No Read Message History here: we cannot look, so rely on the nonce and post.
            return None
        except discord.HTTPException as exc:
            raise _classify(exc, f"history of {getattr(target, 'id', '?')}") from exc
        return None

    def _partial(self, channel_id: int, guild_id: int | None, kind: discord.ChannelType | None) -> Any:
        return self.bot.get_partial_messageable(channel_id, guild_id=guild_id, type=kind)

    async def _dm_channel(self, user_id: int) -> Any:
        try:
            user = self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)
            return user.dm_channel or await user.create_dm()
        except Exception as exc:  # classified, then re-raised
            raise _classify(exc, f"DM with {user_id}") from exc

    async def _upload_limit(self, guild_id: int) -> int:
        """The server's upload limit: from the gateway's guild cache when this process has one, else
        asked over REST (a worker has no gateway) and remembered for a while; the base limit if unknown."""
        guild = self.bot.get_guild(guild_id)
        if guild is not None:
            return guild.filesize_limit
        known = self._upload_limits.get(guild_id)
        if known is not None and self._clock.now() - known[1] < UPLOAD_LIMIT_MEMORY_SECONDS:
            return known[0]
        try:
            limit = (await self.bot.fetch_guild(guild_id, with_counts=False)).filesize_limit
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError, OSError):
            return discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        self._upload_limits[guild_id] = (limit, self._clock.now())
        return limit

    async def _download_video(self, job: JobRecord, message: ResultMessage) -> bytes | None:
        """The video bytes when they fit the server's upload limit; None means "post the link only"."""
        assert message.video_url is not None
        # A little headroom for the multipart envelope. A DM fallback with a smaller limit answers
        # "too large" and `_send` then posts the link alone.
        cap = await self._upload_limit(job.guild_id) - 64 * 1024
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self._download_timeout, follow_redirects=True)
        chunks: list[bytes] = []
        size = 0
        try:
            async with self._http.stream("GET", message.video_url) as response:
                if response.status_code != 200:
                    return None
                announced = response.headers.get("content-length")
                if announced and announced.isdigit() and int(announced) > cap:
                    return None
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        return None
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            log.info("job %s: video download for attaching failed (%s); posting the link only",
                     job.id, type(exc).__name__)
            return None
        return b"".join(chunks) or None

    # --- cards --------------------------------------------------------------------------------------

    async def edit_card(self, job: JobRecord, channel_id: int, message_id: int, card: Card) -> bool:
        """Edit a job's card; False when it is gone (never re-made). Other failures raise (retried)."""
        return await edit_card_message(self.bot, job.guild_id, channel_id, message_id, card)

    # --- notices ------------------------------------------------------------------------------------

    async def post_notice(self, job: JobRecord, text: str, nonce: str) -> int:
        where = job.thread_id or job.channel_id
        kind = discord.ChannelType.public_thread if job.thread_id else None
        target = self._partial(where, job.guild_id, kind)
        return await self._send_text(target, text, nonce, f"notice for job {job.id}")

    # --- audit --------------------------------------------------------------------------------------

    async def post_audit(self, guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        target = self._partial(channel_id, guild_id, None)
        return await self._send_text(target, text, nonce, f"audit channel {channel_id}")

    async def _send_text(self, target: discord.PartialMessageable, text: str, nonce: str, where: str) -> int:
        """Post a short text that pings nobody; a place closed to us is final, anything else classified."""
        try:
            sent = await target.send(text[:MESSAGE_MAX_CHARS], nonce=nonce,
                                     allowed_mentions=discord.AllowedMentions.none())
        except Exception as exc:  # classified: re-raised, final when the place is unusable
            classified = _classify(exc, where)
            if isinstance(classified, _Unusable):
                raise DeliveryError(f"{where} is not postable ({classified})", retryable=False) from exc
            raise classified from exc
        if not sent or not getattr(sent, "id", None):
            raise DeliveryError(f"Discord returned no message id for {where}", retryable=True)
        return int(sent.id)
