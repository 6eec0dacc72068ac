"""Every failure branch of :meth:`parties.privacy.audit.AuditLog.verify`, on real SQLite files.

Each test states the complete report: every seq list (``findings``) and every sentence, so a
verifier that stops reporting a finding, reports it under another name or names the wrong seq
fails here. Each docstring says which tampering (and so which broken branch) it covers.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from parties.privacy.audit import AuditLog, Head
from tests.unit.test_audit import chain_hash, event, filled, findings, rewrite_chain, row, sql

MISSING_AT_END = "missing at the end: the {} head names seq {} but the log ends at seq {} " \
    "(tail truncated)."


def test_first_record_deleted(tmp_path: Path) -> None:
    """Catches a verifier whose gap scan starts at seq 2 (the first record deleted unseen): the
    only thing wrong with this log is that record 1 is gone, and record 2 then has no
    predecessor to be checked against."""
    log = filled(tmp_path)
    sql(log, "DELETE FROM audit_records WHERE seq = 1")
    for rep in (log.verify(), AuditLog(log.path, chain_only=True).verify()):
        assert not rep.ok and rep.records == 5 and rep.head_seq == 6
        assert findings(rep) == {"deleted": (1,)}
        assert rep.problems == ("Record 1 is missing (deleted): the chain jumps from the record "
                                "before to the record after.",)


def test_first_records_deleted_are_named_as_a_range(tmp_path: Path) -> None:
    """Catches a gap scan that misses a run of records at the start, or names it wrongly."""
    log = filled(tmp_path)
    sql(log, "DELETE FROM audit_records WHERE seq <= 3")
    rep = log.verify()
    assert findings(rep) == {"deleted": (1, 2, 3)}
    assert rep.problems == ("Records 1-3 are missing (deleted): the chain jumps from the record "
                            "before to the record after.",)


def test_last_record_deleted_without_an_exported_head(tmp_path: Path) -> None:
    """The stored head still names seq 6: the tail is truncated (not 'deleted': no record after
    it), caught without any exported head."""
    log = filled(tmp_path)
    sql(log, "DELETE FROM audit_records WHERE seq = 6")
    rep = log.verify()
    assert not rep.ok and rep.records == 5 and rep.head_seq == 6
    assert findings(rep) == {"truncated": (6,)}
    assert rep.problems == ("Record 6 is " + MISSING_AT_END.format("stored", 6, 5),)


def test_last_record_deleted_with_an_exported_head(tmp_path: Path) -> None:
    """With the stored head left alone, the exported head adds no second sentence for the same
    record; with the stored head rewound as well, only the exported head catches it."""
    log = filled(tmp_path)
    exported = Head.from_json(log.head().to_json())
    _, _, h5 = row(log, 5)
    sql(log, "DELETE FROM audit_records WHERE seq = 6")
    rep = log.verify(anchor=exported)
    assert not rep.ok and rep.anchored
    assert findings(rep) == {"truncated": (6,)}
    assert rep.problems == ("Record 6 is " + MISSING_AT_END.format("stored", 6, 5),)

    sql(log, "UPDATE audit_meta SET value = '5' WHERE key = 'head_seq'")
    sql(log, "UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", args=(h5,))
    naive = log.verify()
    assert naive.ok and naive.head_seq == 5 and findings(naive) == {}
    rep = log.verify(anchor=exported)
    assert not rep.ok and findings(rep) == {"truncated": (6,)}
    assert rep.problems == ("Record 6 is " + MISSING_AT_END.format("exported", 6, 5),)


def test_a_record_stored_twice(tmp_path: Path) -> None:
    """A copy of record 3 stored again at seq 7 (padding the log with a replayed record): it is
    out of place at 7 and record 3 is stored more than once."""
    log = filled(tmp_path)
    sql(log, "INSERT INTO audit_records (seq, body, prev_hash, hash, mac) "
             "SELECT 7, body, prev_hash, hash, mac FROM audit_records WHERE seq = 3")
    for rep in (log.verify(), AuditLog(log.path, chain_only=True).verify()):
        assert not rep.ok and rep.records == 7 and rep.head_seq == 6
        assert findings(rep) == {"reordered": (7,), "duplicated": (3,)}
        assert rep.problems == (
            "Record 7 is out of place: seq 7 holds the record written as 3 (reordered or "
            "renumbered).",
            "Record 3 is stored more than once (at seqs 3, 7).",
        )


def test_records_beyond_the_stored_head(tmp_path: Path) -> None:
    """The stored head names seq 4 but records 5 and 6 exist: they were not added through the
    log (or the head was rewound); no seq list names them, the sentence does."""
    log = filled(tmp_path)
    _, _, h4 = row(log, 4)
    sql(log, "UPDATE audit_meta SET value = '4' WHERE key = 'head_seq'")
    sql(log, "UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", args=(h4,))
    rep = log.verify()
    assert not rep.ok and rep.head_seq == 4 and rep.head_hash == h4
    assert findings(rep) == {}
    assert rep.problems == (
        "Records 5 and 6 are beyond the stored head (seq 4): added outside the audit log.",
    )


def test_a_log_that_does_not_start_this_logs_chain(tmp_path: Path) -> None:
    """Record 1 must chain to this log's genesis SHA-256("smpc.audit.v1" || 0 || log_id).

    A log rebuilt from another genesis (every hash recomputed, head updated) is intact as a
    chain; the keyless check sees only its start, the keyed check every MAC. Changing the stored
    log id has the same effect on record 1 alone.
    """
    log = filled(tmp_path)
    other = hashlib.sha256(b"smpc.audit.v1\x00" + b"0" * 32).hexdigest()
    rewrite_chain(log, genesis=other)
    chain = AuditLog(log.path, chain_only=True).verify()
    assert not chain.ok and findings(chain) == {"broken": (1,)}
    assert chain.problems == (
        "Record 1 does not start this log's chain (the log was rebuilt or replaced).",
    )
    keyed = log.verify()
    assert findings(keyed) == {"edited": (1, 2, 3, 4, 5, 6)}

    (tmp_path / "b").mkdir()
    log2 = filled(tmp_path / "b")
    sql(log2, "UPDATE audit_meta SET value = ? WHERE key = 'log_id'", args=("f" * 32,))
    rep = AuditLog(log2.path).verify()
    assert findings(rep) == {"broken": (1,)}
    assert rep.problems == chain.problems


def test_stored_head_that_does_not_match_the_last_record(tmp_path: Path) -> None:
    """Stored head seq 6 with another record's hash: named, unless record 6 is itself reported
    edited (one finding, not two)."""
    log = filled(tmp_path)
    _, _, h5 = row(log, 5)
    sql(log, "UPDATE audit_meta SET value = ? WHERE key = 'head_hash'", args=(h5,))
    rep = log.verify()
    assert not rep.ok and findings(rep) == {}
    assert rep.problems == ("Record 6 does not match the stored head of the log.",)

    sql(log, "UPDATE audit_records SET body = replace(body, '\"ann\"', '\"eve\"') "
             "WHERE seq = 6")
    rep = log.verify()
    assert findings(rep) == {"edited": (6,)}
    assert rep.problems == (
        "Record 6 was edited (its content no longer matches its hash).",
    )


@pytest.mark.parametrize(
    "damage",
    [
        "DELETE FROM audit_meta WHERE key = 'head_seq'",
        "DELETE FROM audit_meta WHERE key = 'head_hash'",
        "UPDATE audit_meta SET value = 'six' WHERE key = 'head_seq'",
        "UPDATE audit_meta SET value = '-1' WHERE key = 'head_seq'",
    ],
    ids=["head-seq-deleted", "head-hash-deleted", "head-seq-not-a-number", "head-seq-negative"],
)
def test_stored_head_missing_or_malformed(tmp_path: Path, damage: str) -> None:
    """Reported as such; the report then shows the last stored record as the head."""
    log = filled(tmp_path)
    _, _, h6 = row(log, 6)
    sql(log, damage)
    rep = log.verify()
    assert not rep.ok and findings(rep) == {}
    assert rep.problems == ("The stored head of the log is missing or malformed.",)
    assert (rep.head_seq, rep.head_hash) == (6, h6)


def test_stored_head_missing_on_an_empty_log(tmp_path: Path) -> None:
    """An empty log without a stored head reports it and shows the genesis as its head."""
    log = AuditLog(tmp_path / "party.sqlite")
    genesis = hashlib.sha256(b"smpc.audit.v1\x00" + log.log_id.encode()).hexdigest()
    assert log.head().hash == genesis and log.verify().ok
    sql(log, "DELETE FROM audit_meta WHERE key IN ('head_seq', 'head_hash')")
    rep = log.verify()
    assert rep.problems == ("The stored head of the log is missing or malformed.",)
    assert (rep.records, rep.head_seq, rep.head_hash) == (0, 0, genesis)


@pytest.mark.parametrize(
    "body", ["not json", "[3]", '{"v":1}', '{"seq":true}', '{"seq":"3"}'],
    ids=["not-json", "not-an-object", "no-seq", "seq-bool", "seq-text"],
)
def test_a_record_with_a_valid_hash_but_no_seq_is_edited(tmp_path: Path, body: str) -> None:
    """A body that hashes correctly but is not an audit record (no integer seq) is an edit, for
    the keyless check too; the next record is not also reported as unchained."""
    log = filled(tmp_path)
    _, prev, _ = row(log, 3)
    sql(log, "UPDATE audit_records SET body = ?, hash = ? WHERE seq = 3",
        args=(body, chain_hash(prev, body)))
    for rep in (log.verify(), AuditLog(log.path, chain_only=True).verify()):
        assert findings(rep) == {"edited": (3,)}
        assert rep.problems == (
            "Record 3 was edited (its content is not a valid audit record).",
        )


@pytest.mark.parametrize(("column", "value"), [
    ("prev_hash", "zz" * 32), ("prev_hash", "0f" * 31), ("prev_hash", b"\x0f" * 32),
    ("hash", b"\x0f" * 32), ("body", b'{"seq":3}'),
], ids=["prev-not-hex", "prev-too-short", "prev-blob", "hash-blob", "body-blob"])
def test_a_record_whose_stored_values_have_the_wrong_shape_is_edited(
    tmp_path: Path, column: str, value: object,
) -> None:
    """SQLite stores whatever it is given: a prev_hash that is not 64 hex digits, or a hash or
    body stored as a blob. The verifier reports record 3 as edited -- with and without the key
    -- instead of failing on it (it never raises on tampering). Catches a shape check that
    lets any one of these through to the hash computation."""
    log = filled(tmp_path)
    sql(log, f"UPDATE audit_records SET {column} = ? WHERE seq = 3", args=(value,))
    for rep in (log.verify(), AuditLog(log.path, chain_only=True).verify()):
        assert findings(rep) == {"edited": (3,)}
        assert rep.problems == ("Record 3 was edited (its content no longer matches its hash).",)


# ---- the exported head (anchor)


def test_anchor_of_another_log(tmp_path: Path) -> None:
    """A head exported from another log proves nothing about this one: refused, naming both
    log ids (catches a verifier that skips the log-id comparison)."""
    log = filled(tmp_path, 3)
    other = AuditLog(tmp_path / "other.sqlite")
    rep = log.verify(anchor=other.head())
    assert not rep.ok and rep.anchored and findings(rep) == {}
    assert rep.problems == (
        f"The exported head belongs to audit log {other.log_id}, not to this log "
        f"({log.log_id}).",
    )


def test_anchor_beyond_the_end_of_an_intact_log(tmp_path: Path) -> None:
    """An exported head at seq 9 of a log that now ends at 6 with a consistent stored head
    (the log was rolled back to an earlier state): records 7-9 are missing."""
    log = filled(tmp_path)
    head = log.head()
    later = Head(log.log_id, 9, head.hash, head.exported_at)
    assert log.verify().ok
    rep = log.verify(anchor=later)
    assert findings(rep) == {"truncated": (7, 8, 9)}
    assert rep.problems == ("Records 7-9 are " + MISSING_AT_END.format("exported", 9, 6),)


def test_anchor_at_seq_0_is_checked_against_the_genesis(tmp_path: Path) -> None:
    """The head of an empty log (seq 0, the genesis) verifies any later state of that log; a
    seq-0 head with another hash does not."""
    log = AuditLog(tmp_path / "party.sqlite")
    empty = Head.from_json(log.head().to_json())
    assert empty.seq == 0
    for i in range(1, 4):
        log.append(event(i))
    rep = log.verify(anchor=empty)
    assert rep.ok and rep.anchored and "matches the exported head" in rep.message
    forged = Head(log.log_id, 0, "0" * 64, empty.exported_at)
    rep = log.verify(anchor=forged)
    assert not rep.ok and findings(rep) == {}
    assert rep.problems == ("The exported head does not match this log's genesis.",)


def test_anchor_catches_a_whole_chain_rewritten_without_the_key(tmp_path: Path) -> None:
    """Record 3 exported, then edited and every later hash and the stored head recomputed: the
    keyless check finds nothing, the exported head finds record 3."""
    log = filled(tmp_path)
    at3 = Head(log.log_id, 3, row(log, 3)[2], "2025-01-01T00:00:00+00:00")
    assert log.verify(anchor=at3).ok  # an intact log matches a head exported mid-way
    rewrite_chain(log, edit_seq=3)
    chain = AuditLog(log.path, chain_only=True)
    assert chain.verify().ok
    rep = chain.verify(anchor=at3)
    assert not rep.ok and findings(rep) == {}
    assert rep.problems == (
        "Record 3 differs from the exported head: it, or an earlier record, was rewritten "
        "after the head was exported.",
    )
    # with the key, the rewritten records' MACs fail as well
    assert findings(log.verify(anchor=at3)) == {"edited": (3, 4, 5, 6)}
