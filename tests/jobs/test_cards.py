"""The job card keeper against a real SQLite file and the real poller: what the card shows, when it is
edited, that its final edit survives a restart, that a deleted card stays deleted, and that it never
asks a vendor anything."""

from __future__ import annotations

from dataclasses import replace

from bot.clock import FakeClock
from bot.jobs.cards import (
    EMBED_TOTAL_MAX,
    MAX_PROGRESS_EDITS,
    PROGRESS_EDIT_SECONDS,
    Card,
    CardContext,
    CardKeeper,
    render_card,
)
from bot.jobs.models import JobRecord, JobStatus
from bot.providers.base import PollResult, TaskState
from fakes.publisher import RecordingPublisher
from storage.cards import CardStore
from storage.database import Database
from tests.jobs.support import Rig, build_rig


def status_of(cards: RecordingPublisher, index: int = -1) -> str:
    return cards.card_edits_made[index][1].fields[0][1]


def keeper_for(rig: Rig, publisher: RecordingPublisher) -> CardKeeper:
    return CardKeeper(store=CardStore(rig.db), repository=rig.jobs.repository, clock=rig.clock,
                      settings=rig.settings, publisher=publisher)


async def posted(rig: Rig, keeper: CardKeeper, model: str = "veo-fast-kie") -> JobRecord:
    """A job whose card was posted (as the cog does), message id = 5000 + job id."""
    job = await rig.create(model=model)
    _card, position = await keeper.render_new(job)
    await keeper.record_posted(job, 20, 5000 + job.id, position)
    return job


async def test_card_follows_the_job_to_done_with_a_link_and_no_vendor_call(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=120)
    cards = RecordingPublisher()
    keeper = keeper_for(rig, cards)
    job = await posted(rig, keeper)
    first, position = await keeper.render_new(job)
    assert position == 1 and "Queued: number 1 in line" in first.fields[0][1] and first.colour == 0x95A5A6
    assert [b.custom_id for b in first.buttons] == ["fc:cancel:1"]

    assert await keeper.run_once() == 0  # nothing moved
    await rig.poller.run_once()  # submitted: now generating
    polls_before = len(rig.providers[job.provider].polls)
    assert await keeper.run_once() == 1
    assert "Generating, started <t:" in status_of(cards) and "Usually ready in about" in status_of(cards)
    assert cards.card_edits_made[-1][1].colour == 0x3498DB

    async def delivered() -> bool:
        return (await rig.job(job.id)).delivery_state.value == "delivered"
    await rig.run_until(delivered, step=10)
    assert len(rig.providers[job.provider].polls) > polls_before
    polls = len(rig.providers[job.provider].polls)
    assert await keeper.run_once() == 1
    final = cards.card_edits_made[-1][1]
    done = await rig.job(job.id)
    assert final.colour == 0x2ECC71 and final.buttons == ()
    assert f"https://discord.com/channels/10/{done.destination_channel_id}/{done.result_message_id}" in final.fields[0][1]
    assert await keeper.run_once() == 0  # closed: never edited again
    assert len(rig.providers[job.provider].polls) == polls  # the keeper asked the vendor nothing


async def test_progress_edits_are_spaced_and_capped_but_the_final_edit_always_happens(
        db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=10_000)
    cards = RecordingPublisher()
    keeper = keeper_for(rig, cards)
    job = await posted(rig, keeper)
    await rig.poller.run_once()
    await keeper.run_once()  # -> generating
    edits_at_start = len(cards.card_edits_made)
    provider = rig.providers[job.provider]
    for step in range(1, 40):
        provider.poll_script.append(PollResult(state=TaskState.RUNNING, raw_status="processing", progress=step / 100))
        await db.execute("UPDATE jobs SET next_due_at = ? WHERE id = ?", (fake_clock.now(), job.id))
        await rig.poller.run_once()
        await keeper.run_once()
        await keeper.run_once()  # a second look at once: spaced edits only
        fake_clock.advance(PROGRESS_EDIT_SECONDS / 3)
    progress_edits = len(cards.card_edits_made) - edits_at_start
    assert 0 < progress_edits <= MAX_PROGRESS_EDITS
    assert "Progress:" in status_of(cards)
    # 39 readings 5 s apart: at most one edit per 15 s, and never more than the cap.
    assert progress_edits <= min(MAX_PROGRESS_EDITS, 39 // 3 + 1)

    await rig.jobs.cancel_job(10, job.id, actor_id=30)
    await rig.poller.run_once()  # delivers the cancellation
    assert await keeper.run_once() == 1
    assert "Cancelled by <@30>" in status_of(cards) and cards.card_edits_made[-1][1].colour == 0x607D8B


async def test_final_edit_happens_after_a_restart_and_a_deleted_card_is_left_alone(
        db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=30)
    keeper = keeper_for(rig, RecordingPublisher())
    kept = await posted(rig, keeper)
    deleted = await posted(rig, keeper)

    async def both_delivered() -> bool:
        states = [(await rig.job(j.id)).delivery_state.value for j in (kept, deleted)]
        return states == ["delivered", "delivered"]
    await rig.run_until(both_delivered, step=5)  # the old keeper never ran: "killed" before its edits

    cards = RecordingPublisher()
    cards.cards_gone.add(5000 + deleted.id)
    cards.card_failures = 1
    fresh = keeper_for(rig, cards)  # a new process, the same database
    assert await fresh.run_once() == 0  # Discord busy for the first: retried on the next tick
    assert await fresh.run_once() == 1
    assert [job_id for job_id, _card in cards.card_edits_made] == [kept.id]
    assert await fresh.run_once() == 0
    assert (await CardStore(db).get(deleted.id)) is not None


async def test_a_failed_job_says_why_and_cards_fit_discord_limits(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create(prompt="y" * 1990)
    failed = replace(job, status=JobStatus.FAILED, error_message="content policy: <@123> @everyone " + "z" * 5000)
    card = render_card(failed, CardContext())
    assert card.fields[0][1].startswith("Failed: content policy") and "@everyone" not in card.fields[0][1]
    total = len(card.title) + len(card.description) + len(card.footer) + sum(len(n) + len(v) for n, v in card.fields)
    assert total <= EMBED_TOTAL_MAX and all(len(v) <= 1024 for _n, v in card.fields) and len(card.title) <= 256
    assert card.buttons == () and card.colour == 0xE74C3C
