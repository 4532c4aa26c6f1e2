"""Private replies follow the member's Discord language (`interaction.locale`), through the real command
tree with real interaction payloads; the shipped catalogs are used as they are."""

from __future__ import annotations

from typing import Any

import pytest

from tests.cogs.conftest import Harness
from tests.fakes.discord_api import FakeDiscord

CHANNEL = FakeDiscord.CHANNEL_ID


async def run(harness: Harness, name: str, options: dict[str, Any] | None = None, *, locale: str,
              **kwargs: Any) -> str:
    payload = harness.fake.slash_command(name, options, **kwargs)
    payload["locale"] = locale
    reply = await harness.run(payload)
    assert reply.ephemeral
    return reply.content


@pytest.mark.parametrize(("locale", "heading"), [
    ("es-ES", "**Tus créditos en este servidor**"),
    ("es-419", "**Tus créditos en este servidor**"),
    ("ja", "**このサーバーでのクレジット**"),
    ("en-US", "**Your credits in this server**"),
    ("fr", "**Your credits in this server**"),
    ("zh-TW", "**Your credits in this server**"),
])
async def test_quota_answers_in_the_members_language(harness: Harness, locale: str, heading: str) -> None:
    content = await run(harness, "quota", locale=locale)
    assert content.startswith(heading)
    if locale.startswith("es"):
        assert "Vídeos en curso: 0 / 10" in content


async def test_a_refusal_is_rendered_in_the_members_language(harness: Harness) -> None:
    assert await run(harness, "job", {"id": 999}, locale="es-ES") == \
        "No se encontró el trabajo n.º 999 en este servidor."
    assert await run(harness, "job", {"id": 999}, locale="ja") == "このサーバーにジョブ #999 は見つかりません。"
    assert await run(harness, "job", {"id": 999}, locale="en-GB") == "Job #999 not found in this server."


async def test_an_input_error_names_the_option_as_the_members_client_shows_it(harness: Harness) -> None:
    content = await run(harness, "veo", {"prompt": "   "}, locale="es-419")
    assert content == "**prompt**: escribe un prompt que describa el vídeo."
    content = await run(harness, "kling", {"prompt": "a cat", "duration": 5, "cfg_scale": 0.5, "multi_prompt": "one"},
                        locale="ja")
    assert content.startswith("**マルチショット**: ショットのプロンプトを `|` で区切って")


async def test_accepted_reply_and_public_summary_follow_the_requester(harness: Harness) -> None:
    content = await run(harness, "veo", {"prompt": "un gato surfeando", "model": "veo-fast-kkiai"}, locale="es-ES")
    assert content.startswith("Trabajo n.º 1 aceptado")
    [card] = harness.public_messages(CHANNEL)
    [embed] = card.embeds
    assert embed["title"].startswith("Trabajo n.º 1 · /veo")
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Opciones"].startswith("modo: texto") and fields["Estado"].startswith("En cola")
    assert "Pedido por" in fields


async def test_moderator_replies_follow_the_moderators_language(harness: Harness) -> None:
    content = await run(harness, "framecast", subcommand="show", subcommand_group="settings", locale="ja",
                        permissions=1 << 5)
    assert content.startswith("**Framecast の設定**")
    assert "一時停止: いいえ" in content
