"""Public results and cards speak the requester's language (stored with the job), else the server's."""

from __future__ import annotations

import dataclasses

from bot.jobs.models import JobStatus
from bot.jobs.poller import NO_URL_MESSAGE
from bot.jobs.service import CANCELLED_MESSAGE
from bot.publishing.render import render_result
from tests.publishing.test_discord_publisher import make_job


def test_result_follows_the_requesters_locale_then_the_servers() -> None:
    done = make_job(video_url="https://v.example/x.mp4")
    assert render_result(dataclasses.replace(done, locale="ja", guild_locale="es-ES")).content.startswith(
        f"<@{done.user_id}> Veo 3.1 Fast (kie.ai) の動画ができました（ジョブ #7）:\nhttps://v.example/x.mp4")
    assert "tu vídeo de Veo 3.1 Fast (kie.ai) está listo" in render_result(
        dataclasses.replace(done, locale=None, guild_locale="es-ES")).content
    assert "your Veo 3.1 Fast (kie.ai) video is ready" in render_result(done).content


def test_a_stored_reason_the_bot_wrote_is_shown_in_the_readers_language() -> None:
    failed = make_job(status=JobStatus.FAILED, error_message=str(NO_URL_MESSAGE), locale="es-419")
    assert "el proveedor dijo que el vídeo estaba listo, pero no envió ningún enlace" in \
        render_result(failed).content.lower()
    vendor_words = make_job(status=JobStatus.FAILED, error_message="content policy violation", locale="ja")
    assert "content policy violation" in render_result(vendor_words).content  # the vendor's own words, as sent
    cancelled = make_job(status=JobStatus.CANCELLED, error_message=str(CANCELLED_MESSAGE), locale="ja",
                         cancelled_by=1)
    assert "モデレーターによりキャンセルされました" in render_result(cancelled).content
