"""`/help`'s text: what each family makes, what it costs here, the member's own limits, the buttons.

Discord-agnostic: the cog gathers prices and the member's balance, this writes the sentences (marked
for translation) and keeps the whole under Discord's 2,000 characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.catalog import Family, ModelSpec
from bot.i18n import _, _n, translate

MESSAGE_MAX = 2000

FAMILY_BLURBS = {
    Family.VEO: _("`/veo`: Google Veo 3.1, video with sound from a prompt, start/end frames or reference images."),
    Family.SORA: _("`/sora`: OpenAI Sora 2, 10-15 s videos from a prompt or a first frame."),
    Family.KLING: _("`/kling`: Kling v3, 3-15 s videos, optional audio, multi-shot prompts."),
}


def help_text(models: Sequence[ModelSpec], costs: Mapping[str, int], *, remaining: int | None,
              budget: int | None, active: int, max_active: int, locale: str | None) -> str:
    """The member's private help, in their language."""
    lines = [translate(_("**Framecast makes videos.** What you can use here:"), locale)]
    for family in Family:
        family_models = [m for m in models if m.family is family]
        if not family_models:
            continue
        lines.append(translate(FAMILY_BLURBS[family], locale))
        prices = ", ".join(f"{m.label}: {translate(_n('{n} credit', '{n} credits', n=costs.get(m.key, m.default_cost)), locale)}"
                           for m in family_models)
        lines.append(f"  {prices}")
    if budget is None:
        lines.append(translate(_("**Your credits:** unlimited in this server.", ), locale))
    else:
        lines.append(translate(_("**Your credits:** {remaining} of {budget} left today.",
                                 remaining=remaining if remaining is not None else budget, budget=budget), locale))
    lines.append(translate(_("**Videos in progress:** {active} of {limit} at a time.", active=active,
                             limit=max_active), locale))
    lines += [
        translate(_("**Buttons:** each job gets a card that shows its status; **Cancel** on it stops the job "
                    "(yours, or any for moderators) and gives the credits back."), locale),
        translate(_("Under a finished video: **Again** makes it again with a new seed, **Remix** lets you edit "
                    "the prompt first, **Extend** continues the clip, **1080p** and **4K** make a sharper copy "
                    "in the same thread. Each costs credits like a new video, charged to whoever clicks."), locale),
        translate(_("**Make a video** (right-click a message with an image > Apps) starts a video from that "
                    "image. `/jobs` lists your jobs; `/job id:` shows one; `/quota` shows your credits."), locale),
    ]
    text = "\n".join(lines)
    return text if len(text) <= MESSAGE_MAX else text[: MESSAGE_MAX - 1] + "\u2026"
