"""What a party may say about a failure: errors lose the values, cells and paths they carry.

Range errors name the offending value or aggregate (a party's own sum, its largest feature,
its model's weight norm); a table's errors about its file name the file's path; the messages of
unexpected exceptions (numpy, TenSEAL, sqlite) may quote anything.  Before any such error leaves
the party -- to the coordinator, a peer, the analyst or the audit log -- :func:`redact` replaces
it with a fixed sentence: the kind of problem, at most a column and a row number, and the remedy.
The party's own log records the same (and, for a data problem, the CSV line), never the cell.

What passes unchanged is what the runtime writes for the analyst: policy refusals, limits,
filter errors (which quote only the analyst's own expression, or a column and a row), session
and protocol errors.
"""

from __future__ import annotations

import logging

from parties.data.sources import DataSourceError
from parties.errors import STATUS_TABLE, InternalFailure
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError

__all__ = ["redact"]

log = logging.getLogger("smpc.party")

#: Exceptions :func:`parties.errors.status_of` maps to a status with their own sentence.
_WRITTEN_FOR_CALLERS = tuple(cls for cls, _code, _blame in STATUS_TABLE)


def redact(exc: BaseException, me: str) -> BaseException:
    """The error a party may send out (or audit) for ``exc``; errors written for callers pass
    unchanged."""
    if isinstance(exc, EncodingRangeError):
        log.info("%s: refused a value outside the encodable range (value not logged)", me)
        if exc.public:  # the same problem in a sentence without the value
            return InputError(f"{me} refuses: {exc.public} (the value is not disclosed)")
        return InputError(
            f"{me} refuses: one of its values or aggregates is outside the range this "
            "computation can encode (raise the declared feature bound, scale the column or "
            "lower the fractional bits); the value is not disclosed")
    if isinstance(exc, DataSourceError):
        log.info("%s: refused on a data problem: %s", me, exc.log_text)
        return InputError(f"{me} cannot use the requested columns: {exc.public}")
    if not isinstance(exc, _WRITTEN_FOR_CALLERS):  # its message may quote a value
        return InternalFailure(me, exc)
    return exc
