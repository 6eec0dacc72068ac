"""A key holder's CKKS key pairs, kept for a bounded time and number of uses per scope.

Making a CKKS key pair (and its symmetric twin and serialized public context) costs 40-250 ms at
N=8192, more than the whole rest of a 4096 x 30 inference.  A data owner therefore keeps one
:class:`~smpc.ckks.KeyHolder` per *scope* -- (analyst, model owner, preset) for inference --
and reuses it for the following requests of that scope.

Lifetime and rotation
    A key pair lives in the memory of the process that made it and is never written anywhere.
    It is replaced by a fresh one after ``max_uses`` requests (default 256) or ``max_age``
    seconds (default 3600) since it was made, whichever comes first, and dies with the process.
    Different scopes never share a key: another analyst, another model owner or another preset
    gets its own.

Security argument (what reusing one key across requests reveals)
    * The secret key never leaves its :class:`~smpc.ckks.KeyHolder` (only
      :meth:`~smpc.ckks.KeyHolder.public_context` is sent), exactly as with a key per request.
    * The peer of the scope (the model owner) sees, across the requests of one key, the same
      public context and fresh encryptions under it.  CKKS is IND-CPA under RLWE for any
      number of messages under one key, so those ciphertexts reveal nothing more than fresh
      keys would, beyond *linking* the requests to one key -- which the peer knows anyway
      (each request names the data owner and is signed by the analyst it verifies).
      A different analyst or peer gets another key, so no link is added across scopes.
    * Decryptions are what endanger a CKKS key: raw decryptions carry the encryption error, from
      which the key can be recovered (Li & Micciancio, EUROCRYPT 2021, eprint 2020/1533), and a
      peer that crafted the ciphertext it returned needs only a few such decryptions.  With a
      key per request a leak exposes one request; with a cached key it would expose every
      request of the key's lifetime.  So every decryption under a cached key goes through
      :meth:`~smpc.ckks.KeyHolder.release` (:func:`smpc.linear.run_data_owner_ckks`): flooded
      with the key holder's *own* CSPRNG noise (``2^DEFAULT_FLOOD_BITS`` times the preset's
      release error bound) and rounded, never trusting the peer's flood (the peer is the
      attacker here).  A flooded decryption is an RLWE sample with error ``2^16`` times
      larger than a fresh ciphertext's, which is no easier to solve for the key.
    * ``max_uses`` and ``max_age`` bound what one key protects and for how long, should the key
      holder's memory be compromised later.

Thread safety: :meth:`KeyCache.get` may be called from several sessions at once; a
:class:`~smpc.ckks.KeyHolder` is used concurrently only for encryption and decryption, which
TenSEAL runs on const SEAL objects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from smpc.ckks.keyholder import KeyHolder
from smpc.ckks.presets import get_preset
from smpc.errors import InputError

__all__ = ["DEFAULT_KEY_MAX_AGE", "DEFAULT_KEY_MAX_USES", "KeyCache"]

DEFAULT_KEY_MAX_USES = 256
"""Requests served by one cached key pair before a fresh one is made."""

DEFAULT_KEY_MAX_AGE = 3600.0
"""Seconds a cached key pair is used for, from when it was made."""

#: How many scopes are kept at most (the oldest is dropped first).
MAX_SCOPES = 64


@dataclass
class _Entry:
    holder: KeyHolder
    made: float
    uses: int = 0


class KeyCache:
    """Key holders by scope, each used at most ``max_uses`` times and for ``max_age`` seconds.

    ``clock`` (default :func:`time.monotonic`) is for tests of the age limit.
    """

    def __init__(self, *, max_uses: int = DEFAULT_KEY_MAX_USES,
                 max_age: float = DEFAULT_KEY_MAX_AGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(max_uses, bool) or not isinstance(max_uses, int) or max_uses < 1:
            raise InputError(f"max_uses must be a positive integer, got {max_uses!r}")
        if not max_age > 0:
            raise InputError(f"max_age must be positive, got {max_age!r}")
        self.max_uses = max_uses
        self.max_age = float(max_age)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[tuple[Hashable, str], _Entry] = {}

    def get(self, scope: Hashable, preset: str) -> KeyHolder:
        """The key holder of ``(scope, preset)``: the cached one while it is within its
        limits (counting this use), else a freshly made one that replaces it."""
        key = (scope, get_preset(preset).name)
        with self._lock:
            entry = self._entries.get(key)
            now = self._clock()
            if entry is not None and entry.uses < self.max_uses \
                    and now - entry.made < self.max_age:
                entry.uses += 1
                return entry.holder
        holder = KeyHolder(preset)  # made outside the lock: 40-250 ms
        with self._lock:
            self._entries.pop(key, None)
            while len(self._entries) >= MAX_SCOPES:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = _Entry(holder, self._clock(), uses=1)
        return holder

    def clear(self) -> None:
        """Forget every key pair (the next request of every scope makes a fresh one)."""
        with self._lock:
            self._entries.clear()
