"""The catalog machinery on catalogs written for the test: lookup, fallback, plurals, broken entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import discord
import pytest
from babel.messages.catalog import Catalog
from babel.messages.pofile import write_po

from bot import i18n
from bot.i18n import _, _n, translate


def write_catalog(root: Path, code: str, entries: dict[object, object], contexts: dict[str, str] | None = None,
                  fuzzy: set[str] | None = None) -> None:
    catalog = Catalog(locale=code.split("_")[0] if code != "zh_CN" else "zh_Hans_CN", domain=i18n.DOMAIN)
    for msgid, string in entries.items():
        catalog.add(msgid, string, flags=("fuzzy",) if fuzzy and msgid in fuzzy else ())
    for msgid, string in (contexts or {}).items():
        catalog.add(msgid, string, context=i18n.NAME_CONTEXT)
    path = root / code / "LC_MESSAGES" / f"{i18n.DOMAIN}.po"
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:
        write_po(out, catalog)


@pytest.fixture
def locales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setattr(i18n, "LOCALES_DIR", tmp_path)
    i18n.reset_cache()
    write_catalog(tmp_path, "es", {
        "Hello {name}": "Hola {name}",
        "Job #{id} accepted": "Trabajo n.º {id} aceptado",
        "Reason: {reason}": "Motivo: {reason}",
        "The vendor did not say why": "El proveedor no dijo por qué",
        ("{n} credit", "{n} credits"): ("{n} crédito", "{n} de créditos", "{n} créditos"),
        "Broken {x}": "Roto {y}",
        "Guessed": "Adivinado",
        "Empty": "",
        "prompt": "indicación (texto)",
    }, contexts={"prompt": "indicación"}, fuzzy={"Guessed"})
    write_catalog(tmp_path, "zh_CN", {"Hello {name}": "你好 {name}"})
    write_catalog(tmp_path, "ja", {("{n} credit", "{n} credits"): ("{n} クレジット",)})
    yield tmp_path
    i18n.reset_cache()


def test_text_is_english_until_rendered_elsewhere() -> None:
    text = _("Hello {name}", name="Ana")
    assert text == "Hello Ana" and text.msgid == "Hello {name}" and dict(text.params) == {"name": "Ana"}
    assert translate(text, "en-US") == "Hello Ana" and translate(text, None) == "Hello Ana"


def test_locales_fall_back_to_their_language_never_sideways(locales: Path) -> None:
    text = _("Hello {name}", name="Ana")
    assert translate(text, discord.Locale.spain_spanish) == "Hola Ana"
    assert translate(text, discord.Locale.latin_american_spanish) == "Hola Ana"
    assert translate(text, "es") == "Hola Ana"
    assert translate(text, discord.Locale.chinese) == "你好 Ana"  # zh-CN has its catalog
    assert translate(text, discord.Locale.taiwan_chinese) == "Hello Ana"  # zh-TW must not read zh-CN
    assert translate(text, discord.Locale.french) == "Hello Ana"
    assert translate(text, "xx-YY") == "Hello Ana"
    assert i18n.shipped_locales() == ("es", "ja", "zh_CN")


def test_parameters_that_are_text_are_translated_too(locales: Path) -> None:
    text = _("Reason: {reason}", reason=_("The vendor did not say why"))
    assert text == "Reason: The vendor did not say why"
    assert translate(text, "es-ES") == "Motivo: El proveedor no dijo por qué"


def test_plurals_follow_each_language(locales: Path) -> None:
    assert _n("{n} credit", "{n} credits", n=1) == "1 credit"
    assert _n("{n} credit", "{n} credits", n=3) == "3 credits"
    assert translate(_n("{n} credit", "{n} credits", n=1), "es-ES") == "1 crédito"
    assert translate(_n("{n} credit", "{n} credits", n=0), "es-ES") == "0 créditos"
    assert translate(_n("{n} credit", "{n} credits", n=5), "ja") == "5 クレジット"


def test_stored_plain_english_is_translated_by_exact_id(locales: Path) -> None:
    assert translate("The vendor did not say why", "es-419") == "El proveedor no dijo por qué"
    assert translate("a reason nobody catalogued", "es-419") == "a reason nobody catalogued"


def test_broken_fuzzy_and_empty_entries_read_as_english(locales: Path) -> None:
    assert translate(_("Broken {x}", x=1), "es") == "Broken 1"
    assert translate(_("Guessed"), "es") == "Guessed"
    assert translate(_("Empty"), "es") == "Empty"


def test_contexts_keep_names_apart_from_sentences(locales: Path) -> None:
    assert i18n.lookup("prompt", "es", context=i18n.NAME_CONTEXT) == "indicación"
    assert i18n.lookup("prompt", "es") == "indicación (texto)"


def test_text_survives_pickling() -> None:
    import pickle

    text = pickle.loads(pickle.dumps(_n("{n} credit", "{n} credits", n=2)))
    assert text == "2 credits" and text.msgid_plural == "{n} credits"


def test_pick_locale_prefers_the_first_that_is_set() -> None:
    assert i18n.pick_locale(None, "ja") == "ja"
    assert i18n.pick_locale(discord.Locale.spain_spanish, "ja") == "es-ES"
    assert i18n.pick_locale(None, "") == "en-US"


def test_spanish_uses_its_third_form_for_millions(locales: Path) -> None:
    assert translate(_n("{n} credit", "{n} credits", n=1_000_000), "es") == "1000000 de créditos"
