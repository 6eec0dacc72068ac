"""Verifying an audit log: every way a chain can be tampered with, named by seq number.

:func:`verify_records` reads the records of one log in seq order and reports, in one sentence
each, records edited (content or MAC), deleted (first, middle, last), reordered or renumbered,
stored twice, added beyond the stored head, unchained (a rewritten predecessor), a log that
does not start its own chain, and a stored head that is missing, malformed or does not match;
with an exported head (an *anchor*) also a truncated tail, a rewritten chain and a head of
another log.  It never raises on tampering.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from parties.privacy.audit import _HEX64, Head, _chain_hash, _genesis


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`AuditLog.verify`.

    ``ok`` is True when nothing was found. The lists hold seq numbers: ``edited`` (stored
    positions whose content no longer authenticates), ``deleted`` (written seqs that are absent),
    ``reordered`` (stored positions holding a record written at another seq), ``broken`` (written
    seqs that do not chain to their predecessor although neither was found edited), ``truncated``
    (seqs missing at the end, per the stored or the exported head), ``duplicated`` (written seqs
    stored more than once). ``problems`` has one sentence per finding; :attr:`message` joins them.
    """

    path: str
    ok: bool
    records: int
    head_seq: int
    head_hash: str
    keyed: bool
    anchored: bool
    edited: tuple[int, ...] = ()
    deleted: tuple[int, ...] = ()
    reordered: tuple[int, ...] = ()
    broken: tuple[int, ...] = ()
    truncated: tuple[int, ...] = ()
    duplicated: tuple[int, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """One paragraph for a person: the verdict and every finding, naming seq numbers."""
        if self.ok:
            macs = ("every MAC verifies" if self.keyed
                    else "MACs were not checked (no key: chain-only verification)")
            tail = (
                "and the log matches the exported head" if self.anchored
                else "truncation of the last records is only detectable against an exported head"
            )
            return (
                f"audit log {self.path}: {self.records} records, hash chain intact, {macs}; "
                f"head seq {self.head_seq} hash {self.head_hash[:16]}...; {tail}."
            )
        return f"audit log {self.path} has been tampered with: " + " ".join(self.problems)

    def __str__(self) -> str:
        return self.message


def _ranges(seqs: Iterable[int]) -> str:
    """'3', '3 and 4', '3-6 and 9' ..."""
    s = sorted(set(seqs))
    out: list[str] = []
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        if j - i >= 2:
            out.append(f"{s[i]}-{s[j]}")
        else:
            out.extend(str(x) for x in s[i : j + 1])
        i = j + 1
    if len(out) >= 2:
        return ", ".join(out[:-1]) + f" and {out[-1]}"
    return ", ".join(out)


def _records(seqs: Iterable[int]) -> str:
    """'Record 5', 'Records 3 and 5', 'Records 3-6, 9' (capitalised: starts a sentence)."""
    s = sorted(set(seqs))
    return ("Record " if len(s) == 1 else "Records ") + _ranges(s)


def _are(seqs: Iterable[int]) -> str:
    return "is" if len(set(seqs)) == 1 else "are"


# ------------------------------------------------------------------------------- the log




def verify_records(rows: Sequence[tuple[Any, ...]], meta: Mapping[str, str], *, log_id: str,
                   path: str, mac: Callable[[str], str] | None,
                   anchor: Head | None = None) -> VerifyReport:
    """Check stored audit records ``(seq, body, prev_hash, hash, mac)`` in seq order and the
    stored head in ``meta`` (and, with ``anchor``, an exported head); never raises on
    tampering.  ``mac`` computes a record's MAC from its hash (None: the log is unkeyed)."""
    keyed = mac is not None
    genesis = _genesis(log_id)
    problems: list[str] = []
    edited: list[int] = []
    reordered: list[tuple[int, int]] = []  # (stored at, written as)
    slots: dict[int, list[tuple[int, str, str]]] = {}  # written seq -> [(stored, prev, hash)]
    for seq, body, prev, h, stored in rows:
        claimed: int | None = None
        why = ""
        if not (isinstance(prev, str) and _HEX64.match(prev) and isinstance(h, str)
                and isinstance(body, str)) or _chain_hash(prev, body) != h:
            why = "its content no longer matches its hash"
        else:
            try:
                obj = json.loads(body)
                c = obj.get("seq") if isinstance(obj, dict) else None
                claimed = c if isinstance(c, int) and not isinstance(c, bool) else None
            except ValueError:
                claimed = None
            if claimed is None:
                why = "its content is not a valid audit record"
            elif mac is not None and not (isinstance(stored, str) and hmac.compare_digest(
                stored.encode("utf-8", "replace"), mac(h).encode("ascii")
            )):
                why = "its MAC does not verify: it was rewritten without the audit key"
        if why:
            edited.append(seq)
            problems.append(f"Record {seq} was edited ({why}).")
            slot = seq
        else:
            assert claimed is not None
            slot = claimed
            if claimed != seq:
                reordered.append((seq, claimed))
        slots.setdefault(slot, []).append((seq, prev, h))

    if reordered:
        moves = ", ".join(f"seq {a} holds the record written as {b}" for a, b in reordered)
        stored = [a for a, _ in reordered]
        problems.append(
            f"{_records(stored)} {_are(stored)} out of place: {moves} "
            "(reordered or renumbered)."
        )
    duplicated = sorted(s for s, v in slots.items() if len(v) > 1)
    for s in duplicated:
        where = ", ".join(str(v[0]) for v in slots[s])
        problems.append(f"Record {s} is stored more than once (at seqs {where}).")

    top = max(slots, default=0)
    deleted = [s for s in range(1, top + 1) if s not in slots]
    if deleted:
        problems.append(
            f"{_records(deleted)} {_are(deleted)} missing (deleted): the chain jumps from "
            f"the record before to the record after."
        )

    edited_slots = {s for s, v in slots.items() if any(e in edited for e, _, _ in v)}
    broken: list[int] = []
    for s in sorted(slots):
        if s in edited_slots:
            continue
        prev = slots[s][0][1]
        if s == 1:
            expected: str | None = genesis
        elif s - 1 in slots:
            expected = slots[s - 1][0][2]
        else:
            expected = None  # predecessor deleted: already reported
        if expected is not None and prev != expected and (s - 1) not in edited_slots:
            broken.append(s)
            problems.append(
                "Record 1 does not start this log's chain (the log was rebuilt or replaced)."
                if s == 1
                else f"Record {s} does not chain to record {s - 1}: record {s - 1} (or an "
                "earlier one) was rewritten with a recomputed hash."
            )

    truncated: list[int] = []
    head_seq_s, head_hash = meta.get("head_seq"), meta.get("head_hash")
    try:
        head_seq = int(head_seq_s) if head_seq_s is not None else -1
    except ValueError:
        head_seq = -1
    if head_seq < 0 or not isinstance(head_hash, str):
        problems.append("The stored head of the log is missing or malformed.")
        head_seq, head_hash = top, (slots[top][0][2] if top else genesis)
    elif head_seq > top:
        truncated = list(range(top + 1, head_seq + 1))
        problems.append(
            f"{_records(truncated)} {_are(truncated)} missing at the end: the stored head "
            f"names seq {head_seq} but the log ends at seq {top} (tail truncated)."
        )
    elif head_seq < top:
        extra = range(head_seq + 1, top + 1)
        problems.append(
            f"{_records(extra)} {_are(extra)} beyond the stored head (seq {head_seq}): "
            "added outside the audit log."
        )
    elif top and head_hash != slots[top][0][2] and top not in edited_slots:
        problems.append(f"Record {top} does not match the stored head of the log.")

    if anchor is not None:
        if anchor.log_id != log_id:
            problems.append(
                f"The exported head belongs to audit log {anchor.log_id}, not to this log "
                f"({log_id})."
            )
        elif anchor.seq > top:
            missing = [s for s in range(top + 1, anchor.seq + 1) if s not in truncated]
            truncated += missing
            if missing:
                problems.append(
                    f"{_records(missing)} {_are(missing)} missing at the end: the exported "
                    f"head names seq {anchor.seq} but the log ends at seq {top} "
                    "(tail truncated)."
                )
        elif anchor.seq == 0:
            if anchor.hash != genesis:
                problems.append("The exported head does not match this log's genesis.")
        elif anchor.seq in slots and slots[anchor.seq][0][2] != anchor.hash:
            problems.append(
                f"Record {anchor.seq} differs from the exported head: it, or an earlier "
                "record, was rewritten after the head was exported."
            )
    ok = not problems
    return VerifyReport(
        path=path, ok=ok, records=len(rows), head_seq=head_seq,
        head_hash=head_hash or genesis, keyed=keyed, anchored=anchor is not None,
        edited=tuple(edited), deleted=tuple(deleted),
        reordered=tuple(a for a, _ in reordered), broken=tuple(broken),
        truncated=tuple(sorted(truncated)), duplicated=tuple(duplicated),
        problems=tuple(problems),
    )
