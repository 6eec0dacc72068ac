"""Reloading a running node's federation config when its file changes.

A node loads the federation config once at start; :class:`FederationWatch` lets it pick up new
pins, revocations, nodes and analysts without a restart
(:meth:`parties.config.FederationConfig.refresh`, called by the access guard on every call and
by the channels before every use):

* **bounded frequency** -- the file is looked at no more than once per ``interval`` seconds
  (:data:`RELOAD_INTERVAL`), whoever asks; concurrent callers do not wait for a check in
  progress (they go on with the config they have);
* **change detection** -- a ``stat`` (inode, size, mtime, ctime in nanoseconds) first; only when
  it moved is the file read and its SHA-256 compared with the last one seen;
* **all or nothing** -- a changed file is parsed with every check of the loader; a file that
  does not load (a half-edited file, a bad fingerprint) is refused with one warning per
  content, and the node keeps the config it has.

Writers should replace the file atomically (``smpc federation pin``/``revoke`` and
:func:`parties.config.save_config` do); a file edited in place is still reloaded once its
content parses.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from parties.config.model import FederationConfig

__all__ = ["RELOAD_INTERVAL", "FederationWatch"]

log = logging.getLogger("smpc.config")

#: Seconds between two looks at the federation file (an upper bound on how long a new pin or
#: revocation takes to reach a running node that is being called).
RELOAD_INTERVAL = 1.0

_Stamp = tuple[int, int, int, int]


def _stamp(path: Path) -> _Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class FederationWatch:
    """Watches the file a federation config came from (see the module docstring).

    ``load`` parses the file again (the loader's own parser, with file checks) and returns the
    new :class:`~parties.config.FederationConfig`.
    """

    def __init__(self, path: Path, load: Callable[[], FederationConfig], *,
                 interval: float = RELOAD_INTERVAL) -> None:
        self.path = path
        self.load = load
        self.interval = float(interval)
        self._lock = threading.Lock()
        self._next = time.monotonic() + self.interval
        # None: the first look reads and compares, so a change between the load that made the
        # config and this watch is never missed (reloading an unchanged file changes nothing)
        self._stamp: _Stamp | None = None
        self._digest: bytes | None = None

    def poll(self, *, force: bool = False) -> FederationConfig | None:
        """The config parsed from the file if its content changed since the last look, else
        None (also when it was looked at less than ``interval`` ago, unless ``force``)."""
        now = time.monotonic()
        if not force and now < self._next:
            return None
        if not self._lock.acquire(blocking=force):
            return None
        try:
            self._next = now + self.interval
            stamp = _stamp(self.path)
            if stamp is None or (stamp == self._stamp and not force):
                return None
            self._stamp = stamp
            try:
                digest = hashlib.sha256(self.path.read_bytes()).digest()
            except OSError:
                return None
            if digest == self._digest:
                return None
            self._digest = digest
            try:
                return self.load()
            except Exception as exc:  # any problem of the new file: keep the old config
                self.refuse(" ".join(str(exc).split()) or type(exc).__name__)
                return None
        finally:
            self._lock.release()

    def refuse(self, reason: str) -> None:
        """Log that the file's new content was not taken, and why."""
        log.warning("federation config %s changed but was not reloaded: %s", self.path, reason)

    def reloaded(self, fed: FederationConfig) -> None:
        """Log what the running node now enforces."""
        log.info("federation config %s reloaded: %d nodes, %d analysts, %d revoked "
                 "certificates", self.path, len(fed.nodes), len(fed.analysts), len(fed.revoked))
