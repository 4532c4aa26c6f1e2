"""Command localizations through discord.py's own sync path: the bot logs in to the Discord stand-in,
`setup_hook` sets the CatalogTranslator, `tree.sync` builds the payload, and the stand-in stores it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bot import i18n
from bot.command_translator import valid_command_name, valid_menu_name, valid_text
from tests.cogs.conftest import BotFactory
from tests.fakes.discord_api import FakeDiscord

GUILD = FakeDiscord.GUILD_ID


@pytest.fixture
def spanish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    root = tmp_path / "locales"
    catalog = Catalog(locale="es", domain=i18n.DOMAIN)
    catalog.add("prompt", "indicación", context=i18n.NAME_CONTEXT)
    catalog.add("first_frame", "Primer Fotograma", context=i18n.NAME_CONTEXT)  # Discord would refuse it
    catalog.add("Make a video with Google Veo 3.1", "Haz un vídeo con Google Veo 3.1")
    catalog.add("What should happen in the video", "Qué debe pasar en el vídeo")
    catalog.add("landscape", "horizontal")
    catalog.add("Length in seconds", "x" * 101)  # over Discord's 100
    path = root / "es" / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:
        write_po(out, catalog)
    monkeypatch.setattr(i18n, "LOCALES_DIR", root)
    i18n.reset_cache()
    yield
    i18n.reset_cache()


def synced(fake: FakeDiscord, name: str) -> dict[str, Any]:
    [entry] = [c for c in fake.commands[GUILD] if c["name"] == name]
    return entry


def option(command: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in command["options"] if o["name"] == name)


async def test_sync_payload_carries_the_catalog_translations(spanish: None, make_harness: BotFactory) -> None:
    harness = await make_harness()
    veo = synced(harness.fake, "veo")
    assert veo["description_localizations"] == {"es-ES": "Haz un vídeo con Google Veo 3.1",
                                                "es-419": "Haz un vídeo con Google Veo 3.1"}
    prompt = option(veo, "prompt")
    assert prompt["name_localizations"] == {"es-ES": "indicación", "es-419": "indicación"}
    assert prompt["description_localizations"]["es-419"] == "Qué debe pasar en el vídeo"
    assert "name_localizations" not in option(veo, "first_frame")  # refused translation left out, not synced
    sora = synced(harness.fake, "sora")
    landscape = next(c for c in option(sora, "orientation")["choices"] if c["value"] == "landscape")
    assert landscape["name_localizations"] == {"es-ES": "horizontal", "es-419": "horizontal"}
    assert "description_localizations" not in option(sora, "duration")
    assert veo["name"] == "veo" and prompt["name"] == "prompt"  # the defaults stay English


def test_discord_name_rules() -> None:
    assert valid_command_name("primer_fotograma") and valid_command_name("duración")
    assert valid_command_name("プロンプト") and valid_command_name("ระยะเวลา") and valid_command_name("अवधि")
    assert not valid_command_name("Primer") and not valid_command_name("dos palabras")
    assert not valid_command_name("") and not valid_command_name("a" * 33) and not valid_command_name("動画・作成")
    assert valid_menu_name("Hacer un vídeo") and not valid_menu_name("x" * 33)
    assert valid_text("x" * 100) and not valid_text("x" * 101) and not valid_text(" ")
