"""Dates in a party's table: ISO 8601 text, and the number a date becomes.

**The unit.** A date or a timestamp is the number of days since 1970-01-01 00:00 UTC, as a
float64: ``'1970-01-02'`` is 1.0, ``'2024-01-01'`` is 19723.0, ``'2024-01-01T12:00:00'`` is
19723.5. This is the value a date column has when a statistic uses it (a mean of visit dates is
a day count; add it to 1970-01-01 to read it as a date) and the value filters compare. Its
resolution is below a microsecond for dates between 1900 and 2200 (float64 has 52 bits of
mantissa; 10^5 days * 2^-52 < 3e-11 day).

**The text accepted** (CSV cells and filter literals), strictly: ``YYYY-MM-DD``, optionally
followed by ``T`` or a space and ``hh:mm``, ``hh:mm:ss`` or ``hh:mm:ss.ffffff`` (1 to 6 digits),
optionally followed by ``Z`` or an offset ``+hh:mm`` / ``-hh:mm`` / ``+hhmm``. A time without an
offset is taken as UTC; one with an offset is converted to UTC. A date alone is its midnight.
Anything else (``01/02/2024``, ``2024-1-2``, a year alone) is not a date -- day/month order
cannot be told from the text, so it is never guessed.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["DATE_PATTERN", "days_since_epoch", "looks_like_date"]

DATE_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DAY = 86400.0


def looks_like_date(text: str) -> bool:
    """True when ``text`` has the shape of an accepted date (it may still be invalid, e.g.
    month 13)."""
    return DATE_PATTERN.fullmatch(text) is not None


def days_since_epoch(text: str) -> float | None:
    """The days since 1970-01-01 00:00 UTC of an accepted ISO 8601 date or timestamp, or
    ``None`` when ``text`` is not one (wrong shape or impossible date)."""
    if DATE_PATTERN.fullmatch(text) is None:
        return None
    try:
        if len(text) == 10:
            d = dt.date.fromisoformat(text)
            return float((d - _EPOCH.date()).days)
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    delta = when - _EPOCH
    # integer microseconds first, one rounding at the end
    micro = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micro / (_DAY * 1_000_000)
