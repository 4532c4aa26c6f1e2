"""Member-supplied images: check them cheaply, download them with a cap, prove what they are, re-host.

Why each step: the declared type and size cost nothing to check, so a wrong file is refused before any
download; the download is streamed and aborted past the cap so a lying `size` cannot make us read a
huge body; the magic bytes catch a renamed file or a lying content type (the vendor would otherwise
fail minutes later, after credits were held). Discord's CDN URLs expire after about a day, so when
the job's provider can host images itself (kie.ai's file upload) we hand it the bytes instead.

No Discord import here: the cog turns `discord.Attachment` into `ImageInput` first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import httpx

from bot.catalog import ImageRole, ProviderName
from bot.i18n import Text, _
from bot.providers.base import ImageHost
from bot.validation import ImageInput

log = logging.getLogger(__name__)

# MIME type -> the name members know the format by.
ACCEPTED_TYPES: dict[str, str] = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP"}
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg"}

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class AttachmentError(Exception):
    """An attachment the member must replace; `user_message` names the file and what is accepted."""

    def __init__(self, role: ImageRole, filename: str, user_message: str) -> None:
        super().__init__(user_message)
        self.role = role
        self.filename = filename
        self.user_message = user_message


def describe_limit(max_bytes: int) -> str:
    """`10 MiB`, `512 KiB`: the cap as members read it."""
    if max_bytes >= 1024 * 1024 and max_bytes % (1024 * 1024) == 0:
        return f"{max_bytes // (1024 * 1024)} MiB"
    if max_bytes >= 1024:
        return f"{max_bytes / 1024:.0f} KiB"
    return f"{max_bytes} bytes"


def accepted_text(max_bytes: int) -> Text:
    return _("accepted: PNG, JPEG, WebP up to {limit}", limit=describe_limit(max_bytes))


def normalise_content_type(declared: str | None) -> str | None:
    """`image/PNG; charset=x` -> `image/png`; None when nothing was declared."""
    if not declared:
        return None
    base = declared.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type the bytes really are (PNG, JPEG, WebP), or None."""
    if data.startswith(PNG_MAGIC):
        return "image/png"
    if data.startswith(JPEG_MAGIC):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class AttachmentProcessor:
    """Checks, downloads and re-hosts a request's images. One per bot; holds no per-request state."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        max_bytes: int,
        image_hosts: Mapping[ProviderName, ImageHost] | None = None,
    ) -> None:
        self._http = http
        self._max_bytes = max_bytes
        self._image_hosts = dict(image_hosts or {})

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def _not_an_image(self, image: ImageInput) -> AttachmentError:
        return AttachmentError(
            image.role,
            image.filename,
            _("**{file}** is not a PNG, JPEG or WebP image ({accepted}).", file=image.filename,
              accepted=accepted_text(self._max_bytes)),
        )

    def _too_big(self, image: ImageInput, size: int | None) -> AttachmentError:
        limit, accepted = describe_limit(self._max_bytes), accepted_text(self._max_bytes)
        if size:
            message = _("**{file}** is {size}; the limit is {limit} ({accepted}).", file=image.filename,
                        size=describe_limit(size), limit=limit, accepted=accepted)
        else:
            message = _("**{file}** is too large; the limit is {limit} ({accepted}).", file=image.filename,
                        limit=limit, accepted=accepted)
        return AttachmentError(image.role, image.filename, message)

    def check_declared(self, image: ImageInput) -> None:
        """Refuse on what Discord told us, before any download."""
        declared = normalise_content_type(image.content_type)
        if declared is not None and declared not in ACCEPTED_TYPES:
            raise self._not_an_image(image)
        if image.size > self._max_bytes:
            raise self._too_big(image, image.size)

    async def download(self, image: ImageInput) -> bytes:
        """Stream the file, stopping as soon as it passes the cap."""
        chunks: list[bytes] = []
        received = 0
        try:
            async with self._http.stream("GET", image.url) as response:
                if response.status_code != 200:
                    raise AttachmentError(
                        image.role, image.filename,
                        _("**{file}** could not be downloaded from Discord (HTTP {status}); attach it again.",
                          file=image.filename, status=response.status_code),
                    )
                announced = response.headers.get("content-length")
                if announced and announced.isdigit() and int(announced) > self._max_bytes:
                    raise self._too_big(image, int(announced))
                async for chunk in response.aiter_bytes():
                    received += len(chunk)
                    if received > self._max_bytes:
                        raise self._too_big(image, None)
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            log.warning("downloading attachment %s failed: %s", image.filename, type(exc).__name__)
            raise AttachmentError(
                image.role, image.filename,
                _("**{file}** could not be downloaded from Discord; attach it again.", file=image.filename),
            ) from exc
        return b"".join(chunks)

    async def fetch_verified(self, image: ImageInput) -> tuple[bytes, str]:
        """Download and prove the bytes are an accepted image; returns (data, real MIME type)."""
        self.check_declared(image)
        data = await self.download(image)
        actual = sniff_image_type(data)
        declared = normalise_content_type(image.content_type)
        # A renamed file, or a content type that lies about the bytes.
        if actual is None or (declared is not None and declared != actual):
            raise self._not_an_image(image)
        return data, actual

    async def prepare(
        self, images: Mapping[ImageRole, ImageInput], provider: ProviderName
    ) -> dict[ImageRole, str]:
        """The URL per role the vendor should fetch.

        Every declared check runs before any download, and every download is verified before any
        upload, so one bad file costs no re-hosting of the others.
        """
        for image in images.values():
            self.check_declared(image)
        verified = [(image, *await self.fetch_verified(image)) for image in images.values()]
        host = self._image_hosts.get(provider)
        urls: dict[ImageRole, str] = {}
        for image, data, content_type in verified:
            urls[image.role] = (
                await host.upload_image(data, image.filename, content_type) if host is not None else image.url
            )
        return urls
