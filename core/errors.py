"""Domain errors: what the user sees through, and what a store raises when it cannot work.

`UserError` carries a message that is safe to show in Discord as-is (it names the problem and how to
fix it). Everything else is internal: the user gets a short apology and the log gets the job id.
"""

from __future__ import annotations

from datetime import datetime


class UserError(Exception):
    """Bad input or a refusal: shown privately to the user, costs nothing."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QuotaExceeded(UserError):
    """A limit would be exceeded; the message names the limit, `resets_at` says when it resets.

    Raised by the reservation check inside the store's transaction, so nothing is written."""

    def __init__(self, message: str, *, limit: str, resets_at: datetime | None) -> None:
        super().__init__(message)
        self.limit = limit
        self.resets_at = resets_at


class StorageError(Exception):
    """The job store could not do what was asked (locked, disk full, corrupt). Never shown as-is."""
