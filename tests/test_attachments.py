"""bot.attachments against a real HTTP server on 127.0.0.1: declared checks, capped download, magic bytes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from bot.attachments import AttachmentError, AttachmentProcessor, sniff_image_type
from bot.catalog import ImageRole, ProviderName
from bot.validation import ImageInput
from fakes.loopback import serve

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"\x00" * 64
CAP = 1024


class FileServer:
    """Serves fixed bodies; counts requests so tests can prove nothing was downloaded."""

    def __init__(self) -> None:
        self.bodies: dict[str, bytes] = {}
        self.hits: list[str] = []
        self.base = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits.append(name)
        if name not in self.bodies:
            return web.Response(status=404)
        if name.startswith("chunked"):
            # No Content-Length: the cap must be enforced while streaming.
            response = web.StreamResponse()
            response.enable_chunked_encoding()
            await response.prepare(request)
            body = self.bodies[name]
            for start in range(0, len(body), 256):
                await response.write(body[start:start + 256])
            await response.write_eof()
            return response
        return web.Response(body=self.bodies[name], content_type="application/octet-stream")


class RecordingHost:
    """An ImageHost that records uploads and returns a predictable URL."""

    def __init__(self) -> None:
        self.uploads: list[tuple[str, str, int]] = []

    async def upload_image(self, data: bytes, filename: str, content_type: str) -> str:
        self.uploads.append((filename, content_type, len(data)))
        return f"https://files.example/{filename}"


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = FileServer()
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner = web.AppRunner(app)
    port = await serve(runner)
    server.base = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def image(files: FileServer, name: str, *, content_type: str | None = "image/png", size: int | None = None,
          role: ImageRole = ImageRole.FIRST_FRAME) -> ImageInput:
    body = files.bodies.get(name, b"")
    return ImageInput(role=role, filename=name, url=f"{files.base}/{name}", attachment_id=1,
                      content_type=content_type, size=len(body) if size is None else size)


def test_sniff_recognises_the_three_formats_only() -> None:
    assert sniff_image_type(PNG) == "image/png"
    assert sniff_image_type(JPEG) == "image/jpeg"
    assert sniff_image_type(WEBP) == "image/webp"
    assert sniff_image_type(PDF) is None
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WAVE") is None
    assert sniff_image_type(b"") is None


async def test_valid_images_keep_discord_urls_without_a_host(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies.update({"a.png": PNG, "b.webp": WEBP})
    processor = AttachmentProcessor(http, max_bytes=CAP)
    first = image(files, "a.png")
    last = image(files, "b.webp", content_type="image/webp", role=ImageRole.LAST_FRAME)
    urls = await processor.prepare({first.role: first, last.role: last}, ProviderName.KKIAI)
    assert urls == {ImageRole.FIRST_FRAME: first.url, ImageRole.LAST_FRAME: last.url}
    assert sorted(files.hits) == ["a.png", "b.webp"]


async def test_kie_jobs_are_rehosted(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["photo.jpg"] = JPEG
    host = RecordingHost()
    processor = AttachmentProcessor(http, max_bytes=CAP, image_hosts={ProviderName.KIE: host})
    item = image(files, "photo.jpg", content_type="image/jpeg")
    urls = await processor.prepare({item.role: item}, ProviderName.KIE)
    assert urls == {ImageRole.FIRST_FRAME: "https://files.example/photo.jpg"}
    assert host.uploads == [("photo.jpg", "image/jpeg", len(JPEG))]
    # Another provider with no host keeps the Discord URL even though a kie host exists.
    assert await processor.prepare({item.role: item}, ProviderName.KKIAI) == {item.role: item.url}


async def test_declared_wrong_type_is_refused_before_download(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["doc.pdf"] = PDF
    processor = AttachmentProcessor(http, max_bytes=CAP)
    item = image(files, "doc.pdf", content_type="application/pdf")
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({item.role: item}, ProviderName.KKIAI)
    assert "**doc.pdf** is not a PNG, JPEG or WebP image" in caught.value.user_message
    assert "accepted: PNG, JPEG, WebP up to 1 KiB" in caught.value.user_message
    assert files.hits == []


async def test_declared_oversize_is_refused_before_download(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["big.png"] = PNG
    processor = AttachmentProcessor(http, max_bytes=CAP)
    item = image(files, "big.png", size=CAP + 1)
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({item.role: item}, ProviderName.KKIAI)
    assert caught.value.user_message.startswith("**big.png**")
    assert "limit" in caught.value.user_message
    assert files.hits == []


async def test_renamed_file_fails_on_magic_bytes(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["cat.png"] = PDF  # a PDF renamed to .png, declared as PNG
    host = RecordingHost()
    processor = AttachmentProcessor(http, max_bytes=CAP, image_hosts={ProviderName.KIE: host})
    item = image(files, "cat.png")
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({item.role: item}, ProviderName.KIE)
    assert caught.value.user_message == (
        "**cat.png** is not a PNG, JPEG or WebP image (accepted: PNG, JPEG, WebP up to 1 KiB)."
    )
    assert host.uploads == []


async def test_lying_content_type_fails(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["x.png"] = JPEG  # JPEG bytes declared as PNG
    processor = AttachmentProcessor(http, max_bytes=CAP)
    item = image(files, "x.png", content_type="image/png")
    with pytest.raises(AttachmentError):
        await processor.prepare({item.role: item}, ProviderName.KKIAI)


async def test_lying_size_is_caught_while_streaming(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies["chunked.png"] = PNG + b"\x00" * (CAP * 4)
    processor = AttachmentProcessor(http, max_bytes=CAP)
    item = image(files, "chunked.png", size=10)  # declares 10 bytes
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({item.role: item}, ProviderName.KKIAI)
    assert "**chunked.png**" in caught.value.user_message and "limit" in caught.value.user_message


async def test_one_bad_file_means_no_uploads_at_all(files: FileServer, http: httpx.AsyncClient) -> None:
    files.bodies.update({"good.png": PNG, "bad.png": PDF})
    host = RecordingHost()
    processor = AttachmentProcessor(http, max_bytes=CAP, image_hosts={ProviderName.KIE: host})
    good = image(files, "good.png", role=ImageRole.REFERENCE_1)
    bad = image(files, "bad.png", role=ImageRole.REFERENCE_2)
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({good.role: good, bad.role: bad}, ProviderName.KIE)
    assert caught.value.role is ImageRole.REFERENCE_2
    assert host.uploads == []


async def test_missing_file_names_the_file(files: FileServer, http: httpx.AsyncClient) -> None:
    processor = AttachmentProcessor(http, max_bytes=CAP)
    item = image(files, "gone.png", size=10)
    with pytest.raises(AttachmentError) as caught:
        await processor.prepare({item.role: item}, ProviderName.KKIAI)
    assert "**gone.png** could not be downloaded" in caught.value.user_message
