"""Buttons, modals and the **Make a video** message command through discord.py's real component, modal and
context-menu paths: INTERACTION_CREATE payloads handed to the client's own state, against the Discord
stand-in and a real database, including after a restart (a new client on the same database)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cogs.conftest import PNG, BotFactory, Harness, harness_factory
from fakes.discord_api import MANAGE_GUILD, FakeDiscord
from fakes.vendors import FakeKieVendor

GUILD = FakeDiscord.GUILD_ID
CHANNEL = FakeDiscord.CHANNEL_ID
USER = FakeDiscord.USER_ID
OTHER = 1400000000000000009  # another member, no special permissions
EXTENSIONS = ("cogs.generate", "cogs.jobs", "cogs.actions")


@pytest.fixture
async def same_bot(database_url: str, fake: FakeDiscord, kie: FakeKieVendor) -> AsyncIterator[BotFactory]:
    """Every bot made here uses one database: the second is the first one restarted."""
    async with harness_factory(database_url, fake, kie, EXTENSIONS, Harness) as factory:
        yield factory


async def finished_job(h: Harness, prompt: str = "a fox in the snow") -> tuple[int, int]:
    """A /veo job on kie.ai that the vendor finished and whose result was posted: (thread id, result id)."""
    await h.command("veo", {"prompt": prompt, "model": "veo-fast-kie", "seed": 12345})
    job = await h.job_row(1)
    await h.bot.services.db.execute(
        "UPDATE jobs SET status = 'succeeded', provider_task_id = 'kie-task-1', submitted_at = created_at,"
        " finished_at = created_at + 60, vendor_done_at = created_at + 60, next_due_at = 0,"
        " video_url = 'http://127.0.0.1:9/video.mp4' WHERE id = 1")
    await h.bot.services.poller.run_once()  # posts the result in the thread, buttons under it
    forgive_cooldowns(h)
    [result] = [m for m in h.fake.messages_in(job.thread_id) if m.via == "channel"]
    return job.thread_id, result.id


async def test_result_buttons_are_persistent_and_again_makes_a_new_job_once_per_click(
        same_bot: BotFactory) -> None:
    first = await same_bot()
    _thread, result_id = await finished_job(first)
    result = first.fake.messages[result_id]
    assert result.custom_ids == ["fc:again:1", "fc:remix:1", "fc:extend:1", "fc:1080p:1", "fc:4k:1"]
    assert [c["label"] for row in result.components for c in row["components"]] == [
        "Again", "Remix", "Extend", "1080p", "4K"]
    await first.bot.close()  # a restart: nothing about the message is in memory any more

    h = await same_bot()
    click = h.fake.button_click(result_id, "fc:again:1")
    callback = await h.dispatch(click)
    assert callback == {"type": 5, "data": {"flags": 64}}  # deferred privately within 3 s
    again = await h.job_row(2)
    assert again is not None and again.parent_job_id == 1 and again.follow_up == "again"
    assert again.prompt == "a fox in the snow" and again.user_id == USER
    assert again.spec.params["seed"] != 12345 or again.spec.params == (await h.job_row(1)).spec.params
    cards = [m for m in h.public_messages(CHANNEL) if m.embeds]
    assert len(cards) == 2 and cards[-1].custom_ids == ["fc:cancel:2"] and "Job #2" in cards[-1].embed_text
    assert h.answer(click).startswith("Job #2 accepted: [see its card](")

    # Discord delivers the same click again: still one job, one vendor request to come.
    h.fake.interaction_callbacks.pop(int(click["id"]))
    await h.dispatch(click)
    assert await h.count("jobs") == 2

    # Another member clicks Again too: a job of their own.
    other = h.fake.button_click(result_id, "fc:again:1", user_id=OTHER)
    await h.dispatch(other)
    third = await h.job_row(3)
    assert third is not None and third.user_id == OTHER and third.parent_job_id == 1
    assert await h.count("credit_ledger WHERE kind = 'hold'") == 3


async def test_remix_opens_a_prefilled_modal_and_uses_the_edited_prompt(harness: Harness) -> None:
    _thread, result_id = await finished_job(harness)
    click = harness.fake.button_click(result_id, "fc:remix:1")
    callback = await harness.dispatch(click)
    assert callback["type"] == 9, callback
    modal = callback["data"]
    assert len(modal["title"]) <= 45 and modal["title"] == "Remix job #1"
    [row] = modal["components"]
    field = row["components"][0] if row["type"] == 1 else row["component"]
    assert field["value"] == "a fox in the snow" and field["max_length"] <= 4000

    submit = harness.fake.modal_submit(modal, {field["custom_id"]: "a fox in the snow, at night"})
    await harness.dispatch(submit)
    remix = await harness.job_row(2)
    assert remix is not None and remix.prompt == "a fox in the snow, at night" and remix.follow_up == "remix"
    assert harness.answer(submit).startswith("Job #2 accepted")
    assert await harness.count("jobs") == 2  # answered once: discord.py keeps no copy of the form


async def test_a_remix_form_submitted_after_a_restart_still_works(same_bot: BotFactory) -> None:
    first = await same_bot()
    _thread, result_id = await finished_job(first)
    callback = await first.dispatch(first.fake.button_click(result_id, "fc:remix:1"))
    modal = callback["data"]
    await first.bot.close()  # the member is still typing; the bot restarts

    h = await same_bot()
    [row] = modal["components"]
    field = row["components"][0] if row["type"] == 1 else row["component"]
    submit = h.fake.modal_submit(modal, {field["custom_id"]: "a fox in the snow, in spring"})
    await h.dispatch(submit)
    remix = await h.job_row(2)
    assert remix is not None and remix.prompt == "a fox in the snow, in spring" and remix.parent_job_id == 1
    assert h.answer(submit).startswith("Job #2 accepted")


async def test_upscale_runs_as_a_follow_up_delivered_in_the_source_thread(harness: Harness) -> None:
    thread_id, result_id = await finished_job(harness)
    await harness.dispatch(harness.fake.button_click(result_id, "fc:1080p:1"))
    upscale = await harness.job_row(2)
    assert upscale is not None and upscale.mode.value == "upscale_1080p"
    assert upscale.spec.params["source_task_id"] == "kie-task-1"
    assert upscale.thread_id == thread_id  # the sharper copy lands beside the original
    assert next(m for m in harness.fake.messages_in(thread_id) if m.embeds).custom_ids == ["fc:cancel:2"]


async def test_cancel_on_the_card_is_for_the_requester_and_moderators(harness: Harness) -> None:
    await harness.command("veo", {"prompt": "a slow sunrise"})
    [card] = [m for m in harness.public_messages(CHANNEL) if m.embeds]

    stranger = harness.fake.button_click(card.id, "fc:cancel:1", user_id=OTHER)
    await harness.dispatch(stranger)
    assert "Only the member who asked for job #1 or a moderator" in harness.answer(stranger)
    assert (await harness.job_row(1)).status.value == "queued"

    mine = harness.fake.button_click(card.id, "fc:cancel:1")
    await harness.dispatch(mine)
    assert harness.answer(mine) == "Job #1 cancelled; its credits are released."
    job = await harness.job_row(1)
    assert job.status.value == "cancelled" and job.cancelled_by == USER
    assert await harness.count("credit_ledger WHERE kind = 'release'") == 1
    await harness.bot.services.poller.run_once()  # delivers the cancellation notice
    await harness.bot.services.cards.run_once()
    assert "Cancelled by <@" in card.embed_text and card.custom_ids == [] and card.edits >= 1

    again = harness.fake.button_click(card.id, "fc:cancel:1", permissions=MANAGE_GUILD, user_id=OTHER)
    await harness.dispatch(again)
    assert "already finished" in harness.answer(again)


@pytest.mark.parametrize(("custom_id", "expected"), [
    ("fc:again:999", "Job #999 no longer exists in this server."),
    ("fc:extend:1", "has no finished video to work from"),
])
async def test_a_click_that_cannot_apply_gets_a_clear_private_answer(
        harness: Harness, custom_id: str, expected: str) -> None:
    await harness.command("veo", {"prompt": "waves", "model": "veo-fast-kie"})
    [card] = [m for m in harness.public_messages(CHANNEL) if m.embeds]
    click = harness.fake.button_click(card.id, custom_id)
    callback = await harness.dispatch(click)
    reply = harness.reply_to(click)
    assert expected in reply.content and reply.ephemeral, (callback, reply.content)
    assert await harness.count("jobs") == 1


async def test_a_click_goes_through_the_commands_checks(harness: Harness) -> None:
    _thread, result_id = await finished_job(harness)
    await harness.bot.services.guild_settings.update(GUILD, {"paused": True}, now=1.0)
    click = harness.fake.button_click(result_id, "fc:again:1", user_id=OTHER)
    await harness.dispatch(click)
    assert "paused" in harness.answer(click)
    assert await harness.count("jobs") == 1


async def test_make_a_video_from_a_message_image(harness: Harness, kie: FakeKieVendor) -> None:
    fake = harness.fake
    names = {c["name"]: c for c in fake.commands[GUILD]}
    assert names["Make a video"]["type"] == 3 and "help" in names

    image = fake.add_attachment(PNG, "cat.png", "image/png")
    target = fake.user_message(CHANNEL, "look at my cat", [image])
    callback = await harness.dispatch(fake.message_command("Make a video", target))
    assert callback["type"] == 9
    modal = callback["data"]
    assert len(modal["title"]) <= 45
    labels = [row for row in modal["components"] if row["type"] == 18]
    text = next(r["component"] for r in labels if r["component"]["type"] == 4)
    select = next(r["component"] for r in labels if r["component"]["type"] == 3)
    keys = [o["value"] for o in select["options"]]
    assert "veo-fast-kie" in keys and "sora-2" in keys and len(keys) <= 25

    submit = fake.modal_submit(modal, {text["custom_id"]: "the cat starts dancing",
                                       select["custom_id"]: ["veo-fast-kie"]})
    await harness.dispatch(submit)
    job = await harness.job_row(1)
    assert job is not None and job.model_key == "veo-fast-kie" and job.mode.value == "frames"
    assert job.spec.images[0].url.startswith(kie.base_url) and kie.uploads[0].data == PNG
    assert harness.answer(submit).startswith("Job #1 accepted")


async def test_a_make_a_video_form_submitted_after_a_restart_reads_the_image_again(
        same_bot: BotFactory, kie: FakeKieVendor) -> None:
    first = await same_bot()
    target = first.fake.user_message(CHANNEL, "my dog", [first.fake.add_attachment(PNG, "dog.png", "image/png")])
    modal = (await first.dispatch(first.fake.message_command("Make a video", target)))["data"]
    await first.bot.close()  # the member is still typing; the bot restarts

    h = await same_bot()
    fields = {row["component"]["type"]: row["component"]["custom_id"] for row in modal["components"]}
    submit = h.fake.modal_submit(modal, {fields[4]: "the dog wags its tail", fields[3]: ["veo-fast-kie"]})
    await h.dispatch(submit)
    job = await h.job_row(1)
    assert job is not None and job.prompt == "the dog wags its tail" and job.mode.value == "frames"
    assert kie.uploads[-1].data == PNG
    assert h.answer(submit).startswith("Job #1 accepted")


async def test_a_make_a_video_form_whose_message_was_deleted_costs_nothing(harness: Harness) -> None:
    fake = harness.fake
    target = fake.user_message(CHANNEL, "my dog", [fake.add_attachment(PNG, "dog.png", "image/png")])
    modal = (await harness.dispatch(fake.message_command("Make a video", target)))["data"]
    fake.deleted_messages.add(int(target["id"]))
    fields = {row["component"]["type"]: row["component"]["custom_id"] for row in modal["components"]}
    submit = fake.modal_submit(modal, {fields[4]: "the dog wags its tail", fields[3]: ["veo-fast-kie"]})
    await harness.dispatch(submit)
    assert "The message with the image is gone" in harness.answer(submit)
    assert await harness.count("jobs") == 0 and await harness.count("credit_ledger") == 0


async def test_make_a_video_on_a_message_without_an_image_explains(harness: Harness) -> None:
    fake = harness.fake
    doc = fake.add_attachment(b"%PDF-1.7", "notes.pdf", "application/pdf")
    payload = fake.message_command("Make a video", fake.user_message(CHANNEL, "no picture", [doc]))
    await harness.dispatch(payload)
    reply = harness.reply_to(payload)
    assert reply.ephemeral and "no PNG, JPEG or WebP image" in reply.content
    assert await harness.count("jobs") == 0


async def test_help_says_what_each_family_costs_and_the_members_limits(harness: Harness) -> None:
    await harness.bot.services.guild_settings.set_cost(GUILD, "sora-2", 7)
    payload = harness.fake.slash_command("help")
    await harness.dispatch(payload)
    reply = harness.reply_to(payload)
    assert reply.ephemeral and len(reply.content) <= 2000
    assert "`/veo`" in reply.content and "Sora 2: 7 credits" in reply.content
    assert "**Your credits:** 100 of 100 left today." in reply.content
    assert "**Videos in progress:** 0 of 10" in reply.content and "**Again**" in reply.content


async def test_job_autocomplete_lists_the_members_recent_jobs(harness: Harness) -> None:
    for prompt in ("first video of a long day by the sea " * 5, "second", "third"):
        await harness.command("veo", {"prompt": prompt})
        forgive_cooldowns(harness)
    payload = harness.fake.interaction(4, {
        "id": str(harness.fake.command_id("job", GUILD)), "name": "job", "type": 1, "guild_id": str(GUILD),
        "options": [{"name": "id", "type": 4, "value": "", "focused": True}]})
    callback = await harness.dispatch(payload)
    assert callback["type"] == 8
    choices = callback["data"]["choices"]
    assert [c["value"] for c in choices] == [3, 2, 1]
    assert choices[2]["name"].startswith("#1 · ⏳ queued · first video") and all(len(c["name"]) <= 100 for c in choices)

    payload["data"]["options"][0]["value"] = "2"
    payload["id"], payload["token"] = str(harness.fake.next_id()), "autocomplete-2"
    callback = await harness.dispatch(payload)
    assert [c["value"] for c in callback["data"]["choices"]] == [2]


async def test_clicks_share_the_commands_cooldown(harness: Harness) -> None:
    _thread, result_id = await finished_job(harness)
    first = harness.fake.button_click(result_id, "fc:again:1", user_id=OTHER)
    await harness.dispatch(first)
    second = harness.fake.button_click(result_id, "fc:again:1", user_id=OTHER)
    await harness.dispatch(second)
    assert harness.answer(second).startswith("Slow down")
    assert await harness.count("jobs") == 2


def forgive_cooldowns(h: Harness) -> None:
    """Tests send commands faster than a member may: give the member's slot back."""
    for bucket in h.bot.get_cog("GenerateCog").cooldowns._buckets.values():  # type: ignore[union-attr]
        bucket.reset()
