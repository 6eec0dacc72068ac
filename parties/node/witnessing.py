"""Sending this party's signed audit head to its peers (``Node.Witness``), coalesced.

After a session, the party's audit head must reach the session's other parties, so that its
operator cannot rewrite the records it covers (:mod:`parties.privacy.witness`).  Signing a
head, sending it, and -- at the peer -- verifying its certificate and signature and storing it
cost about 4 ms of CPU per peer: sent after every session they were a third of a party's CPU
time for a small statistic (issue 14's profile).  So heads are coalesced per peer: a peer owed
a head gets the party's *current* head -- which covers every earlier record, the log being a
hash chain -- at once if it got none in the last :data:`WITNESS_INTERVAL_SECONDS`, else when
that interval has passed.  Many sessions in a second cost one head per peer.

What it changes (SECURITY.md, "Zero trust"): the window in which an operator could drop a
session's records before any head covering them went out grows from the session's end to at
most :data:`WITNESS_INTERVAL_SECONDS` after it.  Best effort, as before: a head that could not
be delivered is logged (without its content) and the next one covers it; heads still owed when
the node stops are not sent (the next session's head covers them).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable

__all__ = ["WITNESS_INTERVAL_SECONDS", "HeadWitnesses"]

log = logging.getLogger("smpc.party")

#: A peer gets at most one head per interval (seconds); a head owed sooner waits for its end.
WITNESS_INTERVAL_SECONDS = 1.0


class HeadWitnesses:
    """Owed heads, per peer, sent by one background thread.

    ``sign()`` returns the party's current head, signed (called once per round of sends,
    outside any lock); ``send(peer, envelope)`` delivers it (may raise: logged, not retried --
    the next head covers it).
    """

    def __init__(self, sign: Callable[[], bytes], send: Callable[[str, bytes], None], *,
                 interval: float = WITNESS_INTERVAL_SECONDS) -> None:
        self._sign = sign
        self._send = send
        self._interval = interval
        self._cond = threading.Condition()
        self._owed: set[str] = set()
        self._last_sent: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._stopped = False

    def owe(self, peers: Iterable[str]) -> None:
        """The current head is owed to ``peers``: sent within the interval. Returns at once."""
        with self._cond:
            if self._stopped:
                return
            self._owed.update(peers)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, daemon=True,
                                                name="witness")
                self._thread.start()
            self._cond.notify_all()

    def stop(self) -> None:
        """Stop sending (heads still owed are dropped); waits briefly for a round in flight."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)

    def _next_round(self) -> list[str] | None:
        """Block until some owed peer may be sent to; those peers (None: stopped)."""
        with self._cond:
            while True:
                if self._stopped:
                    return None
                now = time.monotonic()
                ready = sorted(p for p in self._owed
                               if now - self._last_sent.get(p, -math.inf) >= self._interval)
                if ready:
                    for peer in ready:
                        self._owed.discard(peer)
                        self._last_sent[peer] = now
                    return ready
                if not self._owed:
                    self._cond.wait()
                    continue
                soonest = min(self._last_sent[p] for p in self._owed) + self._interval
                self._cond.wait(timeout=max(soonest - now, 0.0))

    def _loop(self) -> None:
        while True:
            peers = self._next_round()
            if peers is None:
                return
            try:
                envelope = self._sign()
            except Exception as exc:  # a missed witness weakens, never breaks, anything
                log.info("audit head not signed: %s", type(exc).__name__)
                continue
            for peer in peers:
                try:
                    self._send(peer, envelope)
                except Exception as exc:
                    log.info("audit head not witnessed by %s: %s", peer, type(exc).__name__)
