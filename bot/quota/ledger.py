"""The credit ledger's SQL lives in storage/ledger.py (all SQL does); this name stays for existing imports."""

from storage.ledger import (
    ACTIVE_JOB_STATUSES, WINDOW_SECONDS, LedgerEntry, Usage, WindowRow, charge_of, insert_hold,
    insert_moderator_row, insert_refund, recent_entries, refund_of, settle, usage_and_active, window_rows,
)

__all__ = [
    "ACTIVE_JOB_STATUSES", "WINDOW_SECONDS", "LedgerEntry", "Usage", "WindowRow", "charge_of", "insert_hold",
    "insert_moderator_row", "insert_refund", "recent_entries", "refund_of", "settle", "usage_and_active",
    "window_rows",
]
