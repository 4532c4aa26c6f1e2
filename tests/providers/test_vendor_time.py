"""Vendor timestamps: every documented shape, and durations that cannot be true are dropped."""

from __future__ import annotations

import pytest

from bot.providers.vendor_time import epoch_seconds, vendor_duration


@pytest.mark.parametrize(("value", "seconds"), [
    (1770350082099, 1770350082.099), ("1770350082099", 1770350082.099), (1770350082, 1770350082.0),
    ("2026-02-06T04:34:42Z", 1770352482.0), (None, None), ("", None), ("soon", None), ([], None),
])
def test_epoch_seconds(value: object, seconds: float | None) -> None:
    assert epoch_seconds(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_vendor_duration_is_finish_minus_create_by_the_vendors_clock() -> None:
    assert vendor_duration(1770350082099, 1770350328994) == pytest.approx(246.895)
    assert vendor_duration(1770350082, "1770350100") == pytest.approx(18.0)
    assert vendor_duration(1770350100, 1770350082) is None  # finished before it was made
    assert vendor_duration(1770350082, 1770350082 + 7 * 3600) is None  # a misread timestamp
    assert vendor_duration(None, 1770350082) is None and vendor_duration(1770350082, None) is None
