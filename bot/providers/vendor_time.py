"""Vendor timestamps, and how long a task took by the vendor's own clock.

Shared by the clients: kie.ai writes epoch milliseconds, the unified API too, the OpenAI video
object seconds, and some resellers ISO dates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def epoch_seconds(value: Any) -> float | None:
    """A vendor timestamp: epoch milliseconds (kie, the unified API), seconds, or an ISO date string."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().isdigit()):
        number = float(value)
        return number / 1000 if number > 1e11 else number
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


MAX_VENDOR_SECONDS = 6 * 3600.0  # a longer "duration" is a misread timestamp, not a video job


def vendor_duration(created: Any, finished: Any) -> float | None:
    """Seconds a task took by the vendor's own clock (its finish minus its create time), or None.

    Both ends come from the vendor, so a skewed vendor clock cancels out; the poll schedule learns
    from it instead of from when we happened to look (which is up to one poll gap late).
    """
    start, end = epoch_seconds(created), epoch_seconds(finished)
    if start is None or end is None or not 0.0 <= end - start <= MAX_VENDOR_SECONDS:
        return None
    return end - start
