"""Proceeding without the parties that decline a statistic (issue 13, item 6).

A party *declines* when its own policy refuses a request at Prepare -- too small a cohort in
exact mode, a column it does not allow or have, the analyst's budget, a limit
(:data:`parties.errors.DECLINE_CODES`).  The coordinator then reports every decliner with its
public one-sentence reason (``declines`` of the error) and aborts the session everywhere, so
the parties that had accepted release their reservations (nothing ran, nothing is charged).

Zero trust: each party checks that the analyst signed the exact set of parties of the
session, so the coordinator cannot drop a party on its own.  Only the analyst can ask again:
:func:`proceed_without_decliners` calls ``attempt`` (which signs a fresh request -- a new
nonce -- for the parties it is given) with the remaining parties, until the statistic is
answered or fewer than two parties remain.  Each party's ``min_parties`` still applies (a
party refusing the smaller set is one more decliner).  A *failure* -- a party unreachable, a
deadline, an internal or storage error -- is never skipped: it ends the computation as before.

What proceeding reveals beyond a plain refusal: nothing the analyst did not already see (each
decline is the refusal it would get by asking each party alone); the answer names who took
part (``details["parties"]``) and who declined with their reasons (``details["declined"]``).
See SECURITY.md, "Proceeding without declining parties".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from parties.errors import NodeBlamed, PermissionDenied, RemoteError
from smpc.stats import StatResult

__all__ = ["MIN_PARTIES", "annotate", "proceed_without_decliners"]

#: A statistic needs at least two data parties (every party's policy enforces it too).
MIN_PARTIES = 2


def annotate(result: StatResult, parties: Sequence[str], declined: dict[str, str]
             ) -> StatResult:
    """``result`` with ``details["parties"]`` (who took part, in the order asked) and
    ``details["declined"]`` (``{party: public reason}``; empty when nobody declined)."""
    return replace(result, details={**result.details, "parties": list(parties),
                                    "declined": dict(declined)})


def proceed_without_decliners(
    attempt: Callable[[list[str]], StatResult], parties: Sequence[str], *, allow: bool,
) -> StatResult:
    """Run ``attempt(parties)``; with ``allow``, while it fails only because parties declined,
    run it again without them (each attempt signs its own request).

    Raises the attempt's error when ``allow`` is False, when the failure is not only declines
    (an unreachable party is never skipped), or a :class:`PermissionDenied` naming every
    decliner when fewer than :data:`MIN_PARTIES` parties would remain.
    """
    remaining = list(parties)
    declined: dict[str, str] = {}
    while True:
        try:
            result = attempt(list(remaining))
        except (RemoteError, NodeBlamed) as exc:
            declines = dict(getattr(exc, "declines", None) or {})
            if not allow or not declines or not set(declines) <= set(remaining):
                raise
            declined.update(declines)
            remaining = [p for p in remaining if p not in declines]
            if len(remaining) < MIN_PARTIES:
                left = ", ".join(remaining) or "none"
                raise PermissionDenied(
                    f"too few parties remain without those that declined (left: {left}; a "
                    f"statistic needs at least {MIN_PARTIES}): "
                    + "; ".join(declined.values()),
                    "PERMISSION_DENIED", None, declined) from None
            continue
        return annotate(result, remaining, declined)
