"""The audit log takes metadata only, within stated limits, and parses exported heads strictly.

:class:`AuditEvent` is the guarantee that nothing but bounded metadata can be logged: bounded
strings, tuples of short column names and finite non-negative numbers.  These tests pin every
limit at its exact edge (the limit is accepted, one more is refused with the documented
sentence) and the shapes that must be refused.  :meth:`Head.from_json` reads a head that came
back from off the host: anything but a well-formed head must be refused, never trusted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from parties.privacy.audit import AuditError, AuditEvent, Head

TEXT_LIMITS = {"caller": 512, "analyst": 256, "session_id": 128, "computation": 128,
               "backend": 32, "filter": 4096, "recipient": 256, "reason": 1000}
REQUIRED = ("caller", "analyst", "session_id", "computation")
HASH = "0f" * 32


def event(**kw: Any) -> AuditEvent:
    base: dict[str, Any] = dict(caller="smpc://fed/coordinator/coord", analyst="ann",
                                session_id="s1", computation="mean", outcome="accepted")
    base.update(kw)
    return AuditEvent(**base)


# ------------------------------------------------------------------------------ text fields


@pytest.mark.parametrize("name", sorted(TEXT_LIMITS))
def test_text_fields_are_bounded_at_exactly_their_limit(name: str) -> None:
    """Each text field holds up to its documented number of characters and not one more, and
    the refusal names the field and its limit. Catches a limit that is off by one or not
    enforced for one field."""
    limit = TEXT_LIMITS[name]
    assert getattr(event(**{name: "x" * limit}), name) == "x" * limit
    with pytest.raises(AuditError) as ei:
        event(**{name: "x" * (limit + 1)})
    assert str(ei.value) == (f"audit field {name!r} must be a string of at most {limit} "
                             f"characters, got a string of length {limit + 1}.")


@pytest.mark.parametrize("name", REQUIRED)
def test_required_text_fields_cannot_be_left_out(name: str) -> None:
    """Who called, for whom, which session and which computation are not optional: None is
    refused (an audit record that does not say who asked is no record). Catches required
    fields checked as optional."""
    with pytest.raises(AuditError) as ei:
        event(**{name: None})
    assert str(ei.value) == (f"audit field {name!r} must be a string of at most "
                             f"{TEXT_LIMITS[name]} characters, got NoneType.")


def test_optional_text_fields_may_be_left_out() -> None:
    e = event(backend=None, filter=None, recipient=None, caller_fingerprint=None)
    assert (e.backend, e.filter, e.recipient, e.caller_fingerprint) == (None, None, None, None)


# ------------------------------------------------------------------------------ columns


def test_columns_hold_up_to_1000_names_of_1_to_256_characters() -> None:
    """1000 columns, a one-character name and a 256-character name are accepted; 1001 columns,
    an empty name and a 257-character name are refused with the documented sentence. Catches
    each bound off by one."""
    sentence = ("audit field 'columns' must hold at most 1000 non-empty names of at most 256 "
                "characters.")
    many = tuple(f"c{i}" for i in range(1000))
    assert event(columns=many).columns == many
    assert event(columns=("x", "y" * 256)).columns == ("x", "y" * 256)
    for bad in (tuple(f"c{i}" for i in range(1001)), ("age", ""), ("z" * 257,)):
        with pytest.raises(AuditError) as ei:
            event(columns=bad)
        assert str(ei.value) == sentence


@pytest.mark.parametrize("bad", [{"age"}, None, {"age": 1}, 3, b"age", "age"],
                         ids=["set", "none", "dict", "int", "bytes", "str"])
def test_columns_must_be_a_sequence_of_names(bad: object) -> None:
    """Only a tuple (or list) of names is a column list: a set, a dict, None, a number, bytes or
    one string are refused as such, naming the type. Catches a check that lets any sized
    iterable through."""
    with pytest.raises(AuditError) as ei:
        event(columns=bad)
    assert str(ei.value) == (f"audit field 'columns' must be a tuple of column names, got "
                             f"{type(bad).__name__}.")


def test_columns_are_frozen_at_construction() -> None:
    """A list of columns is copied into a tuple when the event is made: the caller changing its
    list afterwards (even to something that is not metadata) cannot change what gets logged.
    Catches an event that keeps the caller's list."""
    cols: list[Any] = ["age", "bmi"]
    e = event(columns=cols)
    cols.append(b"\x00raw share bytes")
    assert e.columns == ("age", "bmi") and isinstance(e.columns, tuple)
    assert e.to_dict()["columns"] == ["age", "bmi"]


# ------------------------------------------------------------------------------ costs


@pytest.mark.parametrize("name", ["rho", "epsilon", "delta"])
def test_a_zero_cost_is_metadata_and_a_negative_one_is_not(name: str) -> None:
    """0 is a finite non-negative cost (accepted, stored as 0.0); the smallest negative double
    is refused with the documented sentence. Catches a cost check that refuses 0."""
    assert getattr(event(**{name: 0}), name) == 0.0
    with pytest.raises(AuditError) as ei:
        event(**{name: -5e-324})
    assert str(ei.value) == (f"audit field {name!r} must be finite and non-negative, "
                             f"got -5e-324.")


# ------------------------------------------------------------------------------ exported heads


def test_an_exported_head_round_trips() -> None:
    head = Head("ab" * 16, 7, HASH, "2025-01-31T12:00:00.000000+00:00")
    assert Head.from_json(head.to_json()) == head
    assert Head.from_json(Head("ab" * 16, 0, HASH, "t").to_json()).seq == 0


@pytest.mark.parametrize("text", [
    "not json", "", "[1, 2]", json.dumps({"log_id": "a", "seq": 1, "hash": HASH}),
    json.dumps({"log_id": "a", "seq": "one", "hash": HASH, "exported_at": "t"}),
], ids=["not-json", "empty", "a-list", "no-exported_at", "seq-not-a-number"])
def test_a_head_that_is_not_head_json_is_refused(text: str) -> None:
    """Catches a parser that lets a malformed head through (to be used as an anchor)."""
    with pytest.raises(AuditError) as ei:
        Head.from_json(text)
    assert str(ei.value) == "the exported audit head is not valid head JSON."


@pytest.mark.parametrize(("seq", "hash_"), [
    (-1, HASH), (3, HASH[:-1]), (3, HASH.upper()), (3, HASH + "0"), (3, "g" * 64),
], ids=["negative-seq", "63-digits", "uppercase", "65-digits", "not-hex"])
def test_a_head_with_an_invalid_seq_or_hash_is_refused(seq: int, hash_: str) -> None:
    """A negative seq or a hash that is not 64 lowercase hex digits is refused, each on its own
    (the other field valid). Catches a check that needs both to be wrong."""
    text = json.dumps({"log_id": "a", "seq": seq, "hash": hash_, "exported_at": "t"})
    with pytest.raises(AuditError) as ei:
        Head.from_json(text)
    assert str(ei.value) == "the exported audit head has an invalid seq or hash."


# ------------------------------------------------------------------------------ who, and what


@pytest.mark.parametrize("name", ["caller_fingerprint", "request_hash"])
def test_hashes_are_exactly_64_lowercase_hex_digits(name: str) -> None:
    """The caller's certificate fingerprint and the signed request's hash are logged only as
    64 lowercase hex digits (what an auditor matches against a certificate or an envelope):
    63 or 65 digits, uppercase, a trailing newline or other text is refused with the documented
    sentence. Catches the check dropped, or one that accepts a prefix match."""
    assert getattr(event(**{name: HASH}), name) == HASH
    assert getattr(event(**{name: None}), name) is None
    for bad in (HASH[:-1], HASH + "0", HASH.upper(), HASH + "\n", "g" * 64):
        with pytest.raises(AuditError) as ei:
            event(**{name: bad})
        assert str(ei.value) in (
            f"audit field {name!r} must be 64 lowercase hex digits.",
            f"audit field {name!r} must be a string of at most 64 characters, got a string of "
            f"length {len(bad)}.")
    assert event(request_hash=HASH).to_dict()["request_hash"] == HASH
    assert "request_hash" not in event().to_dict()


def test_an_outcome_outside_the_four_is_refused() -> None:
    """accepted, refused, failed, released and nothing else (an auditor counts by outcome)."""
    for outcome in ("accepted", "refused", "failed", "released"):
        assert event(outcome=outcome).outcome == outcome
    with pytest.raises(AuditError) as ei:
        event(outcome="ok")
    assert str(ei.value) == ("audit field 'outcome' must be one of accepted, refused, failed, "
                             "released, got 'ok'.")


def test_members_hold_up_to_1000_node_names_of_1_to_256_characters() -> None:
    """The session's members (who could see its messages) are a tuple of node names: 1000
    names, a one-character and a 256-character name are accepted; 1001 names, an empty name,
    a 257-character name, a non-text member, one string, a set or None are refused. A list is
    frozen into a tuple at construction. Catches each bound off by one and a members list the
    caller can still change after logging."""
    many = tuple(f"n{i}" for i in range(1000))
    assert event(members=many).members == many
    names: list[Any] = ["a", "b" * 256]
    e = event(members=names)
    names.append("")
    assert e.members == ("a", "b" * 256) and isinstance(e.members, tuple)
    assert e.to_dict()["members"] == ["a", "b" * 256]
    assert "members" not in event().to_dict()
    for bad in (tuple(f"n{i}" for i in range(1001)), ("a", ""), ("c" * 257,), ("a", 3),
                "org-a", {"org-a"}, None):
        with pytest.raises(AuditError) as ei:
            event(members=bad)
        assert str(ei.value) == "audit field 'members' must be a tuple of node names."
