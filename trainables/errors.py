"""The one error type for a user's mistake (bad value, bad range, missing or corrupted file,
unreadable spec).

The CLI prints a `UserError` as one line and exits 2; any other exception is a bug and keeps its
traceback. It subclasses ValueError, so `except ValueError` callers and tests keep working.
"""

from __future__ import annotations


class UserError(ValueError):
    """A mistake the user can fix; the message names the bad value or file and what to do
    instead."""
