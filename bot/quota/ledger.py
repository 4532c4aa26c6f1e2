"""The credit ledger's SQL lives in storage/ledger.py (all SQL does); this name stays for existing imports."""

from storage.ledger import (
    ACTIVE_JOB_STATUSES, WINDOW_SECONDS, LedgerEntry, Usage, WindowRow, insert_hold, insert_moderator_row,
    recent_entries, settle, usage_and_active, window_rows,
)

__all__ = [
    "ACTIVE_JOB_STATUSES", "WINDOW_SECONDS", "LedgerEntry", "Usage", "WindowRow", "insert_hold",
    "insert_moderator_row", "recent_entries", "settle", "usage_and_active", "window_rows",
]
