"""What a party may say about a failure: errors lose the values and cells they carry.

Range errors name the offending value or aggregate (a party's own sum, its largest feature,
its model's weight norm) and data errors quote cells and file paths.  Before any such error
leaves the party -- to the coordinator, a peer or the audit log -- :func:`redact` replaces it
with the kind of problem and the remedy.  The party's log records only that it happened.
"""

from __future__ import annotations

import logging

from parties.data.sources import DataSourceError
from smpc.encoding import EncodingRangeError
from smpc.errors import InputError

__all__ = ["redact"]

log = logging.getLogger("smpc.party")


def redact(exc: BaseException, me: str) -> BaseException:
    """The error a party may send out for ``exc`` (other errors pass unchanged)."""
    if isinstance(exc, EncodingRangeError):
        log.info("%s: refused a value outside the encodable range (value not logged)", me)
        return InputError(
            f"{me} refuses: one of its values or aggregates is outside the range this "
            "computation can encode (raise the declared feature bound, scale the column or "
            "lower the fractional bits); the value is not disclosed")
    if isinstance(exc, DataSourceError):
        log.info("%s: refused on a data problem (%s; cells not logged)", me,
                 type(exc).__name__)
        text = str(exc)
        what = ("some selected rows have missing values" if "missing" in text
                else "a value is not a number" if "non-numeric" in text
                else "a value is infinite" if "infinite" in text
                else "its data file cannot be read")
        return InputError(f"{me} cannot use the requested columns: {what} "
                          "(details in its log)")
    return exc
