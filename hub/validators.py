"""Voluptuous validators every plugin's schemas share, so one input reads the same everywhere.

(The core's own config validators live with what they validate; these are for plugin schemas.)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import voluptuous as vol

_EXAMPLE = "like 2027-01-01T00:00:00+01:00"


def aware_datetime(value: Any) -> datetime:
    """A point in time with its UTC offset (ISO 8601 text or a datetime), as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise vol.Invalid(f"not an ISO 8601 date and time {_EXAMPLE}") from None
    if not isinstance(value, datetime):
        what = "a date without a time" if isinstance(value, date) else type(value).__name__
        raise vol.Invalid(f"expected a date and time with a UTC offset {_EXAMPLE}, got {what}")
    if value.utcoffset() is None:
        raise vol.Invalid(f"needs a UTC offset ({_EXAMPLE} or ...Z)")
    return value.astimezone(UTC)
