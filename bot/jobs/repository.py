"""The job repository lives in storage/ (all SQL does); this name stays for existing imports."""

from storage.jobs import JobRepository

__all__ = ["JobRepository"]
