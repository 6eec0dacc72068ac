"""Record every message of a simulated protocol run and search it for secret values.

:func:`record` runs protocol roles with :func:`smpc.simulator.run`, each role
behind a :class:`RecordingTransport` that keeps a copy of every payload the
node sends (sender, recipient, tag, bytes) before handing it to the
simulator's transport -- the same payloads the gRPC runtime would serialize.

:func:`patterns` turns reference values (computed by a test from the raw data)
into the byte strings a leak would put on the wire, and :func:`scan` finds
them at any byte offset of any message:

* per element, 8-byte words: float64 (little and big endian, and the
  neighbours within 4 ulps), and signed fixed point ``round(v * 2^f)`` (+-1)
  as int64 -- which *is* the raw ring element (``uint64``) -- little and big
  endian, for every ``f`` asked for.  A
  fixed-point word is searched only when ``|round(v * 2^f)| >= 2^24`` (at
  least four significant bytes) and a float64 word only when ``v`` is not a
  whole number below 256: shorter words occur by chance in binary streams
  (lengths, small counters), longer ones do not (a given 8-byte word turns up
  at a given offset of uniform bytes with probability 2^-64);
* per vector, the whole vector in each of those encodings as one contiguous
  byte string (catches a leak of the vector even where single elements are
  too short to search);
* per element, ``repr(v)`` as text (JSON carries floats as their repr), for
  non-integers whose repr has at least 8 characters.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from smpc import simulator
from smpc.transport import Payload, Transport

FIXED_MIN = 2**24


@dataclass(frozen=True)
class Message:
    """One payload as it left its sender."""

    sender: str
    to: str
    tag: str
    payload: Payload

    @property
    def raw(self) -> bytes:
        """The bytes on the wire (an array's buffer, in its own dtype)."""
        p = self.payload
        return p.tobytes() if isinstance(p, np.ndarray) else bytes(p)


class RecordingTransport(Transport):
    """A node's simulator transport that keeps a copy of everything the node sends."""

    def __init__(self, inner: Transport, log: list[Message], lock: threading.Lock) -> None:
        super().__init__(inner.me)
        self._inner = inner
        self._log = log
        self._lock = lock

    def _send(self, to: str, tag: str, payload: Payload) -> None:
        copy = payload.copy() if isinstance(payload, np.ndarray) else bytes(payload)
        with self._lock:
            self._log.append(Message(self.me, to, tag, copy))
        self._inner._send(to, tag, payload)

    def _recv(self, sender: str, tag: str) -> Payload:
        return self._inner._recv(sender, tag)


def record(roles: Mapping[str, Callable[[Transport], Any]]
           ) -> tuple[simulator.SimulationResult, list[Message]]:
    """Run ``roles`` in the simulator; returns the result and every message sent, in order."""
    log: list[Message] = []
    lock = threading.Lock()
    wrapped = {name: (lambda t, fn=fn: fn(RecordingTransport(t, log, lock)))
               for name, fn in roles.items()}
    return simulator.run(wrapped, timeout=120.0), log


def select(messages: Iterable[Message], *, sender: str | None = None, to: str | None = None,
           suffix: str | None = None) -> list[Message]:
    """The messages matching every given criterion (``suffix``: the tag's end)."""
    return [m for m in messages
            if (sender is None or m.sender == sender) and (to is None or m.to == to)
            and (suffix is None or m.tag.endswith(suffix))]


# ---------------------------------------------------------------------------- patterns


ULPS = 4  # float64 neighbours searched on each side (another summation order)


def _float_words(v: float) -> list[float]:
    out, lo, hi = [v], v, v
    for _ in range(ULPS):
        lo, hi = float(np.nextafter(lo, -np.inf)), float(np.nextafter(hi, np.inf))
        out += [lo, hi]
    return out


def element_patterns(values: np.ndarray, label: str, frac_bits: Iterable[int]
                     ) -> dict[bytes, str]:
    """Searchable 8-byte encodings of each distinctive element (see the module docstring).

    A float64 is searched with its neighbours up to :data:`ULPS` units in the
    last place, and a fixed-point integer with its neighbours +-1 (truncation
    instead of rounding), so that a value the sender computed in another
    order, or encoded another way, is still found.
    """
    out: dict[bytes, str] = {}
    bits_list = tuple(frac_bits)
    for k, v in enumerate(np.asarray(values, dtype=np.float64).ravel()):
        v = float(v)
        name = f"{label}[{k}]={v!r}"
        if not (v == round(v) and abs(v) < 256):
            for near in _float_words(v):
                f = np.float64(near).tobytes()
                out[f] = f"float64-le {name}"
                out[f[::-1]] = f"float64-be {name}"
        for bits in bits_list:
            i = round(v * 2**bits)
            if FIXED_MIN <= abs(i) < 2**63 - 1:
                for near in (i - 1, i, i + 1):
                    le = np.int64(near).tobytes()
                    out[le] = f"fixed{bits}-le {name}"
                    out[le[::-1]] = f"fixed{bits}-be {name}"
    return out


def vector_patterns(values: np.ndarray, label: str, frac_bits: Iterable[int]
                    ) -> dict[bytes, str]:
    """The whole vector, contiguous, in float64 and each fixed-point encoding (le and be)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    out = {arr.astype("<f8").tobytes(): f"float64-le vector {label}",
           arr.astype(">f8").tobytes(): f"float64-be vector {label}"}
    for bits in frac_bits:
        ints = np.array([round(float(v) * 2**bits) for v in arr], dtype=np.int64)
        out[ints.astype("<i8").tobytes()] = f"fixed{bits}-le vector {label}"
        out[ints.astype(">i8").tobytes()] = f"fixed{bits}-be vector {label}"
    return out


def text_patterns(values: np.ndarray, label: str) -> dict[bytes, str]:
    """``repr`` of every non-integer element with at least 8 characters (JSON writes a float so)."""
    out = {}
    for v in np.asarray(values, dtype=np.float64).ravel():
        text = repr(float(v))
        if float(v) != round(float(v)) and len(text) >= 8:
            out[text.encode()] = f"text {label}={text}"
    return out


def patterns(values: np.ndarray, label: str, frac_bits: Iterable[int]) -> dict[bytes, str]:
    """All of the above for one reference vector."""
    bits = tuple(frac_bits)
    return {**element_patterns(values, label, bits), **vector_patterns(values, label, bits),
            **text_patterns(values, label)}


def searched_elements(values: np.ndarray, frac_bits: Iterable[int]) -> int:
    """How many elements of ``values`` have at least one element-wise pattern."""
    bits = tuple(frac_bits)
    return sum(1 for v in np.asarray(values, dtype=np.float64).ravel()
               if not (v == round(v) and abs(v) < 256)
               or any(abs(round(float(v) * 2**b)) >= FIXED_MIN for b in bits))


# ---------------------------------------------------------------------------- scanning


_LOW24 = np.uint64(0xFFFFFF)


class Compiled:
    """Patterns split by how they are searched (built once per scan)."""

    def __init__(self, wanted: Mapping[bytes, str]) -> None:
        self.texts = {p: lab for p, lab in wanted.items() if lab.startswith("text ")}
        words = {int.from_bytes(p, "little"): lab for p, lab in wanted.items()
                 if len(p) == 8 and p not in self.texts}
        self.keys = np.array(sorted(words), dtype=np.uint64)
        self.labels = [words[int(k)] for k in self.keys]
        # prefilter: which low-24-bit values any key has (a 16 MiB lookup table)
        self.table = np.zeros(1 << 24, dtype=bool)
        self.table[(self.keys & _LOW24).astype(np.intp)] = True
        self.long = {p: lab for p, lab in wanted.items() if len(p) != 8 and p not in self.texts}


def find(blob: bytes, wanted: Mapping[bytes, str] | Compiled) -> list[str]:
    """Labels of every pattern occurring in ``blob`` at any byte offset.

    8-byte words are matched with numpy over the 8 alignments; text patterns
    inside every run of number characters (a float's repr is such a run);
    whole vectors with ``bytes.find``.
    """
    c = wanted if isinstance(wanted, Compiled) else Compiled(wanted)
    found: list[str] = []
    if c.keys.size:
        arr = np.frombuffer(blob, dtype=np.uint8)
        for offset in range(8):
            n = (len(arr) - offset) // 8
            if n <= 0:
                continue
            view = arr[offset:offset + 8 * n].view("<u8")
            view = view[c.table[(view & _LOW24).astype(np.intp)]]
            idx = np.minimum(np.searchsorted(c.keys, view), c.keys.size - 1)
            found += [c.labels[i] for i in np.unique(idx[c.keys[idx] == view])]
    if c.texts:
        runs = set(re.findall(rb"[0-9.eE+-]{8,}", blob))
        found += [lab for p, lab in c.texts.items() if any(p in run for run in runs)]
    found += [lab for p, lab in c.long.items() if blob.find(p) >= 0]
    return found


def scan(messages: Iterable[Message], wanted: Mapping[bytes, str]) -> list[str]:
    """``sender->to tag: label`` for every pattern found in any message (each scanned alone)."""
    compiled = Compiled(wanted)
    return [f"{m.sender}->{m.to} {m.tag}: {lab}"
            for m in messages for lab in find(m.raw, compiled)]


# ---------------------------------------------------------------------------- roles

PARTIES = ("p0", "p1", "p2")
RECIPIENT = "coordinator"
ANALYST = "analyst"
STAT_TAG = "stat"
INF_TAG = "inf"


def stat_roles(spec: Any, tables: Iterable[np.ndarray], keyholder: Any = None
               ) -> dict[str, Callable[[Transport], Any]]:
    """The roles of one joint statistic among :data:`PARTIES`, as in ``smpc.stats.simulate``.

    On ``ss`` the coordinator reconstructs; on ``ckks`` it aggregates and the
    analyst holds ``keyholder`` (a :class:`smpc.ckks.KeyHolder` the caller may
    reuse across sessions).  The tag is the same in every session, as in the
    runtime (``parties.coordinator.STAT_TAG``).
    """
    from smpc import ckks, stats

    parties = list(PARTIES)
    roles: dict[str, Callable[[Transport], Any]] = {}
    if spec.backend == "ss":
        for name, rows in zip(parties, tables, strict=True):
            roles[name] = lambda t, rows=rows: stats.run_party(
                t, spec, rows, parties=parties, recipient=RECIPIENT, tag=STAT_TAG)
        roles[RECIPIENT] = lambda t: stats.run_recipient_ss(t, spec, parties=parties,
                                                            tag=STAT_TAG)
        return roles
    public = ckks.load_context(keyholder.public_context())
    for name, rows in zip(parties, tables, strict=True):
        roles[name] = lambda t, rows=rows: stats.run_party(
            t, spec, rows, parties=parties, recipient=RECIPIENT, tag=STAT_TAG,
            public_context=public)
    roles[RECIPIENT] = lambda t: stats.run_aggregator_ckks(
        t, spec, parties=parties, keyholder=ANALYST, tag=STAT_TAG, public_context=public)
    roles[ANALYST] = lambda t: stats.run_keyholder_ckks(
        t, spec, aggregator=RECIPIENT, keyholder=keyholder, tag=STAT_TAG)
    return roles


def inference_roles(spec: Any, X: np.ndarray, model: Any
                    ) -> dict[str, Callable[[Transport], Any]]:
    """Data owner ``data``, model owner ``model`` and (``ss``) dealer ``dealer``."""
    from smpc import linear

    dealer = "dealer" if spec.backend == "ss" else None
    roles: dict[str, Callable[[Transport], Any]] = {
        "data": lambda t: linear.run_data_owner(t, spec, X, model_owner="model",
                                                dealer=dealer, tag=INF_TAG),
        "model": lambda t: linear.run_model_owner(t, spec, model, data_owner="data",
                                                  dealer=dealer, tag=INF_TAG),
    }
    if dealer is not None:
        roles[dealer] = lambda t: linear.run_dealer(t, spec, data_owner="data",
                                                    model_owner="model", tag=INF_TAG)
    return roles
