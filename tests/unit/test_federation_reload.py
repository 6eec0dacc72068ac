"""Revocations and pins in the federation config, and a running node's reload of it.

Real files and certificates; the reload is driven with ``refresh(force=True)`` (the rate limit
is tested on its own, with an interval no test run can reach), so nothing depends on timing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from parties import config as C
from parties.config.pins import pin_certificate, revoke_certificate
from parties.config.watch import FederationWatch
from parties.pki.certs import (
    create_ca,
    issue_node_certificate,
    load_ca,
    save_ca,
    save_node_credentials,
)
from parties.pki.files import write_certificate
from parties.pki.identity import Identity, PKIError, fingerprint

FP = {k: k * 64 for k in "abcdef"}


@pytest.fixture
def fed_file(tmp_path: Path) -> Path:
    ca = create_ca("demo")
    save_ca(ca, tmp_path / "ca.pem", tmp_path / "ca.key")
    doc = {"kind": "federation", "name": "demo", "ca_cert": "ca.pem",
           "nodes": [{"name": "coord", "role": "coordinator", "host": "127.0.0.1",
                      "port": 50050, "fingerprint": FP["a"]},
                     {"name": "org-a", "role": "party", "host": "127.0.0.1", "port": 50051}],
           "analysts": [{"name": "alice", "fingerprint": FP["b"]}, "eve"]}
    (tmp_path / "federation.json").write_text(json.dumps(doc))
    return tmp_path / "federation.json"


def edit(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_revocations_load_save_and_refuse_bad_fingerprints(fed_file: Path) -> None:
    """``revoked`` round-trips (normalised: a ``sha256:`` prefix and colons are dropped) and a
    malformed or repeated entry is a one-sentence error naming the field (catches a typo that
    would silently revoke nothing)."""
    colons = ":".join(FP["c"][i:i + 2] for i in range(0, 64, 2))
    edit(fed_file, revoked=[f"sha256:{colons.upper()}"])
    fed = C.load_federation(fed_file)
    assert fed.revoked == [FP["c"]] and fed.is_revoked(FP["c"])
    C.save_config(fed, fed_file)
    assert json.loads(fed_file.read_text())["revoked"] == [FP["c"]]
    edit(fed_file, revoked=[FP["c"], "nope"])
    with pytest.raises(C.ConfigError, match=r"field 'revoked\[1\]' must be a SHA-256"):
        C.load_federation(fed_file)
    edit(fed_file, revoked=[FP["c"], FP["c"]])
    with pytest.raises(C.ConfigError, match=r"field 'revoked\[1\]' repeats"):
        C.load_federation(fed_file)


def test_a_revoked_caller_is_refused_even_where_nothing_is_pinned(fed_file: Path) -> None:
    """``org-a`` and ``eve`` are unpinned: only the revocation list stops them (catches a guard
    that checks revocations only through pins).  The reasons name the caller."""
    edit(fed_file, revoked=[FP["d"], FP["a"]])
    fed = C.load_federation(fed_file)
    for ident, roles in ((Identity("org-a", "party", "demo", FP["d"]), ("party",)),
                         (Identity("eve", "analyst", "demo", FP["d"]), ("analyst",)),
                         (Identity("coord", "coordinator", "demo", FP["a"]), ("coordinator",))):
        entry, reason = fed.check_caller(ident, roles)
        assert entry is None and reason.startswith(f"{ident.name} presented a revoked cert")
    assert fed.authorize(Identity("org-a", "party", "demo", FP["e"]), ("party",)) is not None
    entry, reason = fed.check_caller(Identity("alice", "analyst", "demo", FP["e"]),
                                     ("analyst",))
    assert entry is None
    assert reason.startswith("alice presented a certificate that is not the one pinned for alice")


def test_a_changed_file_is_reloaded_into_the_running_config(fed_file: Path) -> None:
    """Every holder of the loaded object sees the new pins, revocations, nodes and analysts,
    and ``generation`` moves (catches a reload that builds a new object nobody holds, or a
    node that never looks again)."""
    fed = C.load_federation(fed_file)
    holder = fed  # what the guard and the channels keep
    assert not fed.refresh(force=True)  # nothing changed yet
    edit(fed_file, revoked=[FP["d"]], analysts=[{"name": "alice", "fingerprint": FP["e"]}])
    assert fed.refresh(force=True)
    assert holder.revoked == [FP["d"]] and holder.analysts == [C.AnalystEntry("alice", FP["e"])]
    assert holder.generation == 1
    assert not fed.refresh(force=True) and holder.generation == 1


def test_a_party_file_with_an_embedded_federation_reloads_it(fed_file: Path, tmp_path: Path
                                                              ) -> None:
    """A node whose config embeds the federation watches its own file."""
    issue_dir = tmp_path / "c"
    issue_dir.mkdir()
    cfg = {"kind": "dealer", "name": "d1",
           "tls": {"cert": "c/d1.pem", "key": "c/d1.key", "ca": "ca.pem"},
           "federation": {"name": "demo", "ca_cert": "ca.pem", "nodes": [
               {"name": "d1", "role": "dealer", "host": "127.0.0.1", "port": 50059}]}}
    ca = load_ca(tmp_path / "ca.pem", tmp_path / "ca.key")
    cert, key = issue_node_certificate(ca, "d1", "dealer")
    save_node_credentials(cert, key, issue_dir / "d1.pem", issue_dir / "d1.key")
    path = tmp_path / "dealer.json"
    path.write_text(json.dumps(cfg))
    dealer = C.load_config(path)
    cfg["federation"]["revoked"] = [FP["f"]]
    path.write_text(json.dumps(cfg))
    assert dealer.federation.refresh(force=True) and dealer.federation.revoked == [FP["f"]]


def test_a_file_that_does_not_load_or_changes_the_federation_is_not_taken(
        fed_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A half-edited file, or one naming another federation, leaves the running config as it
    was, with a warning (catches a reload that empties the allow-list or swaps the CA)."""
    fed = C.load_federation(fed_file)
    before = (list(fed.nodes), list(fed.analysts), list(fed.revoked))
    with caplog.at_level(logging.WARNING, logger="smpc.config"):
        fed_file.write_text('{"kind": "federation", "name": "demo", "nodes": [')
        assert not fed.refresh(force=True)
        edit_doc = {"kind": "federation", "name": "other", "ca_cert": "ca.pem", "nodes": []}
        fed_file.write_text(json.dumps(edit_doc))
        assert not fed.refresh(force=True)
    assert (fed.nodes, fed.analysts, fed.revoked) == before and fed.generation == 0
    warnings = [r.getMessage() for r in caplog.records]
    assert any("invalid JSON" in w for w in warnings)
    assert any("changes the federation's name or CA" in w for w in warnings)


def test_the_file_is_looked_at_no_more_than_once_per_interval(fed_file: Path) -> None:
    """Bounded frequency: within the interval a changed file is not even read (catches a
    guard that stats and parses the file on every call)."""
    reads: list[int] = []

    def load() -> C.FederationConfig:
        reads.append(1)
        return C.load_federation(fed_file)

    watch = FederationWatch(fed_file, load, interval=3600.0)
    assert watch.poll() is None and reads == []     # the first look is an interval away
    assert watch.poll(force=True) is not None        # forced: read (the first content seen)
    edit(fed_file, revoked=[FP["c"]])
    assert watch.poll() is None and len(reads) == 1  # changed, but not looked at again
    new = watch.poll(force=True)
    assert new is not None and new.revoked == [FP["c"]] and len(reads) == 2


def test_pinning_a_rotated_certificate_revokes_the_previous_one(fed_file: Path,
                                                                tmp_path: Path) -> None:
    """``pin_certificate`` (``smpc federation pin``): replaces the pin of the node the
    certificate names and, with ``revoke_previous``, revokes the old pin; adds a node only with
    its address; refuses a certificate of another CA, of another role, or already revoked."""
    ca = load_ca(tmp_path / "ca.pem", tmp_path / "ca.key")
    coord, _k = issue_node_certificate(ca, "coord", "coordinator")
    write_certificate(tmp_path / "coord.pem", coord)
    p = pin_certificate(fed_file, coord, revoke_previous=True)
    fed = C.load_federation(fed_file)
    assert (p.previous, p.revoked_previous) == (FP["a"], True)
    assert fed.node("coord").fingerprint == fingerprint(coord) and fed.revoked == [FP["a"]]

    org_b, _k = issue_node_certificate(ca, "org-b", "party")
    with pytest.raises(C.ConfigError, match="give its host and port"):
        pin_certificate(fed_file, org_b)
    assert pin_certificate(fed_file, org_b, host="10.0.0.2", port=5000).added
    assert C.load_federation(fed_file).node("org-b").address == "10.0.0.2:5000"

    wrong_role, _k = issue_node_certificate(ca, "org-a", "dealer")
    with pytest.raises(C.ConfigError, match="listed as party"):
        pin_certificate(fed_file, wrong_role)
    foreign, _k = issue_node_certificate(create_ca("demo"), "org-a", "party")
    with pytest.raises(PKIError, match="does not verify against the federation CA"):
        pin_certificate(fed_file, foreign)
    assert revoke_certificate(fed_file, fingerprint(org_b))
    assert not revoke_certificate(fed_file, fingerprint(org_b))
    with pytest.raises(C.ConfigError, match="is revoked"):
        pin_certificate(fed_file, org_b)
