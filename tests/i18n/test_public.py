"""Public results and cards speak the requester's language (stored with the job), else the server's."""

from __future__ import annotations

import dataclasses

from bot.clock import FakeClock
from bot.i18n import _, _n, from_json, join, to_json, translate
from bot.jobs.models import DeliveryState, JobStatus
from bot.jobs.service import CANCELLED_MESSAGE
from bot.providers.base import NO_LINK_MESSAGE, TaskState
from bot.publishing.render import render_result
from storage.database import Database
from tests.jobs.support import build_rig
from tests.publishing.test_discord_publisher import make_job


def test_result_follows_the_requesters_locale_then_the_servers() -> None:
    done = make_job(video_url="https://v.example/x.mp4")
    assert render_result(dataclasses.replace(done, locale="ja", guild_locale="es-ES")).content.startswith(
        f"<@{done.user_id}> Veo 3.1 Fast (kie.ai) の動画ができました（ジョブ #7）:\nhttps://v.example/x.mp4")
    assert "tu vídeo de Veo 3.1 Fast (kie.ai) está listo" in render_result(
        dataclasses.replace(done, locale=None, guild_locale="es-ES")).content
    assert "your Veo 3.1 Fast (kie.ai) video is ready" in render_result(done).content


def test_a_stored_reason_the_bot_wrote_is_shown_in_the_readers_language() -> None:
    failed = make_job(status=JobStatus.FAILED, error_message=str(NO_LINK_MESSAGE), locale="es-419")
    assert "el proveedor dijo que el vídeo estaba listo, pero no envió ningún enlace" in \
        render_result(failed).content.lower()
    vendor_words = make_job(status=JobStatus.FAILED, error_message="content policy violation", locale="ja")
    assert "content policy violation" in render_result(vendor_words).content  # the vendor's own words, as sent
    cancelled = make_job(status=JobStatus.CANCELLED, error_message=str(CANCELLED_MESSAGE), locale="ja",
                         cancelled_by=1)
    assert "モデレーターによりキャンセルされました" in render_result(cancelled).content


async def test_a_vendor_reason_with_parameters_is_stored_and_shown_in_each_language(
    db: Database, fake_clock: FakeClock,
) -> None:
    """The reason travels from the vendor client (PollResult) through the finisher into the row as a
    message id and parameters, so every reader gets it in their language, not the English rendering."""
    rig = build_rig(db, fake_clock, duration=60)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.outcome = TaskState.FAILED
    provider.error_message = _("The vendor could not make this video: {reason}", reason="prompt too vague")

    async def finished() -> bool:
        return (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED

    await rig.run_until(finished)
    done = await rig.job(job.id)
    assert done.error_message == "The vendor could not make this video: prompt too vague"  # English for operators
    assert translate(done.reason or "", "ja") == "プロバイダーはこの動画を作成できませんでした: prompt too vague"
    spanish = render_result(dataclasses.replace(done, locale="es-ES")).content
    assert "El proveedor no pudo crear este vídeo: prompt too vague" in spanish


def test_stored_text_round_trips_and_bad_data_reads_as_nothing() -> None:
    text = _("{who}: {what}", who=_n("{n} credit", "{n} credits", n=3), what=join([_("text"), "x"], " · "))
    back = from_json(to_json(text))
    assert back is not None and translate(back, "es") == translate(text, "es") == "3 créditos: texto · x"
    assert to_json("plain words") is None and from_json(None) is None and from_json("{not json") is None
