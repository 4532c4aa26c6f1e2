"""/veo, /sora, /kling through the real command tree, against the Discord stand-in and a real database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot import catalog
from bot.catalog import Family, ModelSpec
from tests.cogs.conftest import JPEG, MAX_ATTACHMENT_BYTES, PDF, PNG, BotFactory, Harness
from fakes.discord_api import FakeDiscord
from fakes.vendors import FakeKieVendor

GUILD = FakeDiscord.GUILD_ID
CHANNEL = FakeDiscord.CHANNEL_ID
USER = FakeDiscord.USER_ID


def option_names(fake: FakeDiscord, command: str) -> list[str]:
    [entry] = [c for c in fake.commands[GUILD] if c["name"] == command]
    return [o["name"] for o in entry["options"]]


async def test_commands_are_registered_with_the_contracted_option_names(harness: Harness) -> None:
    fake = harness.fake
    assert option_names(fake, "veo")[0] == "prompt"
    assert set(option_names(fake, "veo")) == {
        "prompt", "first_frame", "last_frame", "reference_1", "reference_2", "reference_3", "model",
        "aspect_ratio", "enhance_prompt", "upsample", "seed"}
    assert set(option_names(fake, "sora")) == {"prompt", "first_frame", "orientation", "size", "duration", "watermark"}
    assert set(option_names(fake, "kling")) == {
        "prompt", "first_frame", "last_frame", "model", "audio", "aspect_ratio", "duration", "negative_prompt",
        "cfg_scale", "shot_type", "multi_prompt"}
    [veo] = [c for c in fake.commands[GUILD] if c["name"] == "veo"]
    model = next(o for o in veo["options"] if o["name"] == "model")
    assert {c["value"] for c in model["choices"]} == {"veo-fast-kkiai", "veo-quality-kkiai", "veo-fast-kie",
                                                      "veo-lite-kie", "veo-quality-kie"}
    # Every other choice comes from the catalog too: what the configured models offer.
    choices = {o["name"]: [c["value"] for c in o.get("choices", [])] for o in veo["options"]}
    assert choices["aspect_ratio"] == ["16:9", "9:16", "Auto"]
    assert choices["upsample"] == ["1080p", "4k"] and veo_option(veo, "upsample")["type"] == 3  # a string
    [kling] = [c for c in fake.commands[GUILD] if c["name"] == "kling"]
    assert [c["value"] for c in veo_option(kling, "model")["choices"]] == ["std", "pro"]
    assert [c["value"] for c in veo_option(kling, "aspect_ratio")["choices"]] == ["16:9", "9:16", "1:1"]
    [sora] = [c for c in fake.commands[GUILD] if c["name"] == "sora"]
    assert [(c["name"], c["value"]) for c in veo_option(sora, "duration")["choices"]] == [("10 s", 10), ("15 s", 15)]
    seed = next(o for o in veo["options"] if o["name"] == "seed")
    assert (seed["min_value"], seed["max_value"]) == (10000, 99999)
    assert [(veo_option(kling, n)["min_value"], veo_option(kling, n)["max_value"]) for n in ("duration", "cfg_scale")] \
        == [(3, 15), (0.0, 1.0)]
    assert veo.get("dm_permission") is False or veo.get("contexts") == [0]


def veo_option(command: dict[str, Any], name: str) -> dict[str, Any]:
    return next(o for o in command["options"] if o["name"] == name)


async def test_numeric_option_bounds_follow_the_catalog(make_harness: BotFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing a model's range is one catalog entry: the registered command's min/max follow it."""
    def widened(model: ModelSpec) -> ModelSpec:
        if model.family is Family.KLING:
            return model.model_copy(update={"durations": tuple(range(2, 21)), "cfg_scale_range": (0.0, 2.0)})
        if model.key == "veo-lite-kie":
            return model.model_copy(update={"seed_range": (1, 4_294_967_295)})
        return model

    monkeypatch.setattr(catalog, "MODELS", tuple(widened(m) for m in catalog.MODELS))
    fake = (await make_harness()).fake
    [veo] = [c for c in fake.commands[GUILD] if c["name"] == "veo"]
    [kling] = [c for c in fake.commands[GUILD] if c["name"] == "kling"]
    bounds = {name: (option["min_value"], option["max_value"])
              for name, option in (("seed", veo_option(veo, "seed")), ("duration", veo_option(kling, "duration")),
                                   ("cfg_scale", veo_option(kling, "cfg_scale")))}
    assert bounds == {"seed": (1, 4_294_967_295), "duration": (2, 20), "cfg_scale": (0.0, 2.0)}


async def test_only_families_with_a_provider_get_a_command(make_harness: BotFactory) -> None:
    harness = await make_harness(kkiai_api_key=None, kie_api_key=None)
    names = {c["name"] for c in harness.fake.commands[GUILD]}
    assert "kling" in names and "veo" not in names and "sora" not in names


async def test_valid_veo_creates_a_job_a_summary_and_a_thread(harness: Harness) -> None:
    reply = await harness.command("veo", {"prompt": "a cat surfing @everyone <@123>", "model": "veo-fast-kkiai",
                                          "aspect_ratio": "9:16"})

    assert reply.callbacks == [{"type": 5, "data": {"flags": 64}}]  # deferred, ephemeral
    assert reply.ephemeral
    [summary] = harness.public_messages(CHANNEL)
    assert summary.allowed_mentions == {"parse": []}
    card = summary.embed_text
    assert "Veo 3.1 Fast (unified API)" in card and f"<@{USER}>" in card
    assert "> a cat surfing" in card and "@everyone" not in card
    assert "Queued" in card and summary.embeds[0]["color"] == 0x95A5A6
    assert summary.custom_ids == ["fc:cancel:1"]  # the running card's Cancel button
    assert summary.id in harness.fake.threads  # a public thread on the card

    job = await harness.job_row(1)
    assert job is not None and job.user_id == USER and job.model_key == "veo-fast-kkiai"
    assert job.thread_id == summary.id and job.summary_message_id == summary.id and job.channel_id == CHANNEL
    assert job.spec.params["aspect_ratio"] == "9:16"
    assert reply.content == f"Job #1 accepted: [see its card](https://discord.com/channels/{GUILD}/{CHANNEL}/{summary.id})."
    assert await harness.count("credit_ledger WHERE kind = 'hold'") == 1


async def test_4k_is_an_upsample_choice_for_kie_models(harness: Harness) -> None:
    refused = await harness.command("veo", {"prompt": "a glacier", "model": "veo-fast-kkiai", "upsample": "4k"})
    assert "upsample" in refused.content and "`1080p`" in refused.content  # the unified API has no 4K
    reply = await harness.command("veo", {"prompt": "a glacier", "model": "veo-quality-kie", "upsample": "4k",
                                          "aspect_ratio": "9:16"})
    assert reply.content.startswith("Job #1 accepted")
    job = await harness.job_row(1)
    assert job is not None and job.spec.params["resolution"] == "4k" and job.spec.cost_keys == ["veo-quality-kie", "4k"]


async def test_frames_on_kie_are_rehosted(harness: Harness, kie: FakeKieVendor) -> None:
    fake = harness.fake
    first = fake.add_attachment(PNG, "start.png", "image/png")
    last = fake.add_attachment(JPEG, "end.jpg", "image/jpeg")
    reply = await harness.command("veo", {"prompt": "morph", "model": "veo-fast-kie", "seed": 12345},
                                  attachments={"first_frame": first, "last_frame": last})
    assert reply.content.startswith("Job #1 accepted")
    job = await harness.job_row(1)
    urls = {image.role.value: image.url for image in job.spec.images}
    assert urls["first_frame"].startswith(kie.base_url) and urls["last_frame"].startswith(kie.base_url)
    uploaded = [u.file_name for u in kie.uploads]
    assert len(uploaded) == 2 and uploaded[0].endswith("start.png") and uploaded[1].endswith("end.jpg")
    assert kie.uploads[0].data == PNG
    assert job.spec.params["seed"] == 12345


async def test_frames_elsewhere_keep_the_discord_url(harness: Harness, kie: FakeKieVendor) -> None:
    image = harness.fake.add_attachment(PNG, "start.png", "image/png")
    await harness.command("kling", {"prompt": "zoom", "model": "pro", "audio": True, "duration": 8},
                          attachments={"first_frame": image})
    job = await harness.job_row(1)
    assert job.model_key == "kling-v3-pro-audio" and job.spec.params["duration"] == 8
    assert job.spec.images[0].url == image["url"] and job.spec.images[0].attachment_id == int(image["id"])
    assert kie.uploads == []


async def test_sora_choices_reach_the_job(harness: Harness) -> None:
    await harness.command("sora", {"prompt": "a city", "orientation": "portrait", "size": "large",
                                   "duration": 15, "watermark": False})
    job = await harness.job_row(1)
    assert job.spec.params == {"orientation": "portrait", "size": "large", "watermark": False, "duration": 15}


def _attachment(fake: FakeDiscord, kind: str) -> dict[str, Any]:
    if kind == "pdf":
        return fake.add_attachment(PDF, "doc.pdf", "application/pdf")
    if kind == "renamed":
        return fake.add_attachment(PDF, "cat.png", "image/png")
    if kind == "oversized":
        return fake.add_attachment(PNG + b"\x00" * MAX_ATTACHMENT_BYTES, "huge.png", "image/png")
    if kind == "lying_size":
        item = fake.add_attachment(PNG + b"\x00" * MAX_ATTACHMENT_BYTES, "small.png", "image/png")
        return {**item, "size": 100}
    return fake.add_attachment(PNG, f"{kind}.png", "image/png")


BAD_INPUTS: list[tuple[str, str, dict[str, Any], dict[str, str], str]] = [
    # id, command, options, attachments (option -> kind), expected start of the message
    ("wrong-type", "veo", {"prompt": "x", "model": "veo-fast-kie"}, {"first_frame": "pdf"},
     "**doc.pdf** is not a PNG, JPEG or WebP image (accepted: PNG, JPEG, WebP up to 64 KiB)"),
    ("renamed", "veo", {"prompt": "x", "model": "veo-fast-kie"}, {"first_frame": "renamed"},
     "**cat.png** is not a PNG, JPEG or WebP image"),
    ("oversized", "sora", {"prompt": "x"}, {"first_frame": "oversized"}, "**huge.png** is"),
    ("lying-size", "kling", {"prompt": "x"}, {"first_frame": "lying_size"}, "**small.png**"),
    ("too-many-images", "veo", {"prompt": "x", "model": "veo-fast-kie"},
     {"first_frame": "a", "last_frame": "b", "reference_1": "c"}, "**reference_1**:"),
    ("last-without-first", "veo", {"prompt": "x"}, {"last_frame": "a"}, "**last_frame**: a last frame needs"),
    ("reference-unsupported", "veo", {"prompt": "x", "model": "veo-quality-kie"}, {"reference_1": "a"},
     "**reference_1**:"),
    ("seed-range", "veo", {"prompt": "x", "model": "veo-fast-kie", "seed": 5}, {},
     "**seed**: must be between 10000 and 99999"),
    ("seed-unsupported", "veo", {"prompt": "x", "model": "veo-fast-kkiai", "seed": 12345}, {}, "**seed**:"),
    ("duration-range", "kling", {"prompt": "x", "duration": 20}, {}, "**duration**:"),
    ("cfg-range", "kling", {"prompt": "x", "cfg_scale": 1.5}, {}, "**cfg_scale**:"),
    ("empty-prompt", "sora", {"prompt": "   "}, {}, "**prompt**:"),
    ("huge-prompt", "veo", {"prompt": "y" * 10_000}, {}, "**prompt**: is 10000 characters"),
]


@pytest.mark.parametrize(("command", "options", "attachments", "expected"),
                         [case[1:] for case in BAD_INPUTS], ids=[case[0] for case in BAD_INPUTS])
async def test_bad_input_gets_one_ephemeral_message_and_creates_nothing(
    harness: Harness, kie: FakeKieVendor, command: str, options: dict[str, Any], attachments: dict[str, str],
    expected: str,
) -> None:
    files = {name: _attachment(harness.fake, kind) for name, kind in attachments.items()}
    reply = await harness.command(command, options, attachments=files)

    assert reply.ephemeral and reply.content.startswith(expected), reply.content
    assert len(reply.callbacks) == 1
    assert harness.public_messages() == []
    assert [m for m in harness.fake.messages.values() if m.via == "followup"] == []
    assert await harness.count("jobs") == 0
    assert await harness.count("credit_ledger") == 0
    assert kie.uploads == []


async def test_budget_refusal_is_ephemeral_and_writes_nothing(make_harness: BotFactory) -> None:
    harness = await make_harness(quota_daily_credits=1)
    reply = await harness.command("veo", {"prompt": "x", "model": "veo-quality-kie"})
    assert reply.ephemeral and "credit" in reply.content
    assert await harness.count("jobs") == 0 and await harness.count("credit_ledger") == 0


async def test_cooldown_answers_with_the_wait(harness: Harness) -> None:
    first = await harness.command("sora", {"prompt": "one"})
    second = await harness.command("sora", {"prompt": "two"})
    assert first.content.startswith("Job #1 accepted")
    assert second.ephemeral and second.content.startswith("Slow down: try again in ")
    assert second.callbacks[0]["type"] == 4  # answered directly: the command never ran
    assert await harness.count("jobs") == 1
    # Another member is not slowed down.
    third = await harness.command("sora", {"prompt": "three"}, user_id=FakeDiscord.MODERATOR_ID)
    assert third.content.startswith("Job #2 accepted")


async def test_a_fixable_mistake_does_not_use_up_the_cooldown(harness: Harness) -> None:
    wrong = await harness.command("sora", {"prompt": "   "})
    assert wrong.ephemeral and wrong.content.startswith("**prompt**"), wrong.content
    fixed = await harness.command("sora", {"prompt": "a lighthouse at dawn"})
    assert fixed.content.startswith("Job #1 accepted"), fixed.content
    again = await harness.command("sora", {"prompt": "and another"})
    assert again.content.startswith("Slow down: try again in "), again.content


async def test_without_thread_permission_results_go_to_the_channel(harness: Harness) -> None:
    harness.fake.forbid_thread_creation()
    reply = await harness.command("sora", {"prompt": "a boat"})
    [summary] = harness.public_messages(CHANNEL)
    job = await harness.job_row(1)
    assert job.thread_id is None and job.channel_id == CHANNEL and job.summary_message_id == summary.id
    assert reply.content.startswith("Job #1 accepted") and str(summary.id) in reply.content


async def test_used_inside_a_thread_posts_there_without_a_new_thread(harness: Harness) -> None:
    fake = harness.fake
    parent_message = await harness.bot.get_partial_messageable(CHANNEL, guild_id=GUILD).send("talk")
    thread = await harness.bot.http.start_thread_with_message(CHANNEL, parent_message.id, name="chat",
                                                             auto_archive_duration=1440)
    thread_id = int(thread["id"])
    threads_before = len(fake.requests_to("POST", r"/channels/\d+/messages/\d+/threads"))
    await harness.command("sora", {"prompt": "in a thread"}, channel_id=thread_id)
    [summary] = [m for m in harness.public_messages(thread_id)]
    assert len(fake.requests_to("POST", r"/channels/\d+/messages/\d+/threads")) == threads_before
    job = await harness.job_row(1)
    assert job.channel_id == thread_id and job.thread_id is None and job.summary_message_id == summary.id


async def test_summary_that_cannot_be_posted_still_accepts_the_job(harness: Harness) -> None:
    harness.fake.forbid_sending(CHANNEL)
    reply = await harness.command("sora", {"prompt": "quiet"})
    assert reply.content.startswith("Job #1 accepted")
    job = await harness.job_row(1)
    assert job.summary_message_id is None and job.thread_id is None


async def test_request_json_keeps_prompt_verbatim(harness: Harness) -> None:
    await harness.command("kling", {"prompt": "  two shots  ", "multi_prompt": "a dog | a cat", "shot_type": "customize"})
    job = await harness.job_row(1)
    stored = json.loads(job.request_json)
    assert stored["prompt"] == "two shots" and stored["params"]["multi_prompt"] == ["a dog", "a cat"]
