"""Analyst-signed requests (:mod:`parties.pki.signed`) and the replay record
(:mod:`parties.privacy.replay`), on their own.

A party trusts a request only through :func:`verify`: it decides who asked, what was asked and
until when.  Each test below feeds it one envelope that must be refused (or, at a boundary, one
that must still be accepted) and names the bug it would catch.  Real keys and certificates from a
throw-away CA; the malformed envelopes are signed with the analyst's real key, so that only the
one defect under test is wrong.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from parties.config import AnalystEntry, FederationConfig, NodeEntry
from parties.errors import PolicyError, StorageError
from parties.pki.certs import (
    CertificateAuthority,
    create_ca,
    issue_node_certificate,
)
from parties.pki.identity import fingerprint
from parties.pki.signed import (
    CLOCK_SKEW_SECONDS,
    MAX_ENVELOPE_BYTES,
    MAX_VALIDITY_SECONDS,
    SignedRequestError,
    canonical,
    sign,
    verify,
)
from parties.privacy.replay import KEEP_AFTER_EXPIRY_SECONDS, ReplayError, SeenRequests
from parties.privacy.store import Database

FED = "demo"
NOW = 1_900_000_000.0              # a fixed clock: the envelopes' windows are set against it
REQUEST = {"spec": {"statistic": "mean", "columns": ["age"]}, "where": "", "parties": ["a", "b"]}
CTX = "ab" * 32


@dataclass(frozen=True)
class Signer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class PKI:
    ca: CertificateAuthority
    ann: Signer           # the analyst
    bob: Signer           # a second analyst
    party: Signer         # a party node (not an analyst)
    stranger: Signer      # an analyst of another CA


@pytest.fixture(scope="module")
def pki() -> PKI:
    ca = create_ca(FED)
    other = create_ca(FED)
    return PKI(ca, Signer(*issue_node_certificate(ca, "ann", "analyst")),
               Signer(*issue_node_certificate(ca, "bob", "analyst")),
               Signer(*issue_node_certificate(ca, "org-a", "party")),
               Signer(*issue_node_certificate(other, "ann", "analyst")))


def signed(pki: PKI, who: str = "ann", **kw: Any) -> bytes:
    s: Signer = getattr(pki, who)
    kw.setdefault("now", NOW)
    return sign(REQUEST, kind=kw.pop("kind", "statistic"), federation=kw.pop("federation", FED),
                analyst=kw.pop("analyst", "ann"), key=s.key, cert=s.cert, **kw)


def payload_of(pki: PKI, **changes: Any) -> dict[str, Any]:
    """A good payload (as :func:`sign` makes it at NOW) with ``changes``; None deletes a key."""
    doc: dict[str, Any] = json.loads(json.loads(signed(pki))["payload"])
    for k, v in changes.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def envelope(text: str, s: Signer, **outer: Any) -> bytes:
    """An envelope of the payload ``text`` signed by ``s`` (``outer`` overrides its fields)."""
    sig = s.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
    doc = {"v": 1, "payload": text, "sig": base64.b64encode(sig).decode(),
           "cert": s.cert.public_bytes(serialization.Encoding.PEM).decode(), **outer}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def check(env: bytes | Any, *, now: float = NOW, federation: str = FED,
          allowed: Any = None, ca: x509.Certificate | None = None, pki: PKI) -> Any:
    return verify(env, ca_cert=ca or pki.ca.cert, federation=federation, allowed=allowed,
                  now=now)


def refused(pki: PKI, env: bytes | Any, message: str, **kw: Any) -> None:
    with pytest.raises(SignedRequestError) as ei:
        check(env, pki=pki, **kw)
    assert message in str(ei.value)


def allow_list(ann_pin: str | None = None) -> FederationConfig:
    return FederationConfig(name=FED, ca_cert=Path("/nonexistent/ca.pem"),
                            nodes=[NodeEntry("coord", "coordinator", "127.0.0.1", 50050),
                                   NodeEntry("org-a", "party", "127.0.0.1", 50051)],
                            analysts=[AnalystEntry("ann", ann_pin)])


# ------------------------------------------------------------------------- what verify returns


def test_a_signed_request_verifies_to_exactly_what_was_signed(pki: PKI) -> None:
    """The verified request is the analyst's: its payload, the signer's identity (name, role,
    federation, the certificate's fingerprint), the hash of the signed text, and the envelope
    itself (catches a verifier that returns a default or another signer's identity, or hashes
    something other than the signed bytes -- the audit logs record this hash)."""
    env = signed(pki, context_sha256=CTX, validity=600.0)
    s = check(env, pki=pki, allowed=allow_list(fingerprint(pki.ann.cert)))
    text = json.loads(env)["payload"]
    assert s.envelope == env
    assert s.request_hash == hashlib.sha256(text.encode()).hexdigest()
    assert (s.signer.name, s.signer.role, s.signer.federation, s.signer.fingerprint) == (
        "ann", "analyst", FED, fingerprint(pki.ann.cert))
    assert (s.kind, dict(s.request), s.context_sha256) == ("statistic", REQUEST, CTX)
    assert (s.payload["issued"], s.expires) == (NOW, NOW + 600.0)
    assert re.fullmatch("[0-9a-f]{32}", s.nonce)
    assert check(signed(pki, kind="prediction"), pki=pki).kind == "prediction"
    assert check(signed(pki), pki=pki).context_sha256 is None


def test_every_signature_carries_a_fresh_nonce(pki: PKI) -> None:
    """Two signatures of the same request differ in their nonce (and so in their hash): a
    party's replay record tells them apart (catches a constant nonce, which would make every
    second request look like a replay -- or, worse, every replay look new if it were hashed
    in)."""
    a, b = check(signed(pki), pki=pki), check(signed(pki), pki=pki)
    assert a.nonce != b.nonce and a.request_hash != b.request_hash


@pytest.mark.parametrize(("kw", "message"), [
    ({"kind": "query"}, "unknown request kind 'query'"),
    ({"validity": 0.0}, "valid for at most one day"),
    ({"validity": -1.0}, "valid for at most one day"),
    ({"validity": MAX_VALIDITY_SECONDS + 1}, "valid for at most one day"),
], ids=["kind", "zero-validity", "negative-validity", "over-a-day"])
def test_sign_refuses_what_no_party_would_accept(pki: PKI, kw: dict[str, Any],
                                                 message: str) -> None:
    """The analyst's side refuses an unknown kind or a validity outside (0, one day]."""
    with pytest.raises(SignedRequestError, match=re.escape(message)):
        signed(pki, **kw)


@pytest.mark.parametrize("validity", [0.5, 1.0, MAX_VALIDITY_SECONDS])
def test_any_window_up_to_one_day_is_signed_and_accepted(pki: PKI, validity: float) -> None:
    """The validity is any positive time up to one day: a window of a second or less (an
    analyst narrowing the time a leaked envelope could be replayed) and the longest one are
    allowed on both sides (catches the range's bounds off by one)."""
    s = check(signed(pki, validity=validity), pki=pki)
    assert s.expires - s.payload["issued"] == validity


# ------------------------------------------------------------------------------ the envelope


def test_an_envelope_of_the_largest_allowed_size_is_read(pki: PKI) -> None:
    """Exactly ``MAX_ENVELOPE_BYTES`` (a good envelope padded with JSON whitespace) verifies;
    one byte more is refused before it is parsed (catches the limit applied off by one)."""
    env = signed(pki)
    padded = env + b" " * (MAX_ENVELOPE_BYTES - len(env))
    assert check(padded, pki=pki).request_hash == check(env, pki=pki).request_hash
    refused(pki, padded + b" ", f"larger than {MAX_ENVELOPE_BYTES} bytes")


@pytest.mark.parametrize(("make", "message"), [
    (lambda p, e: b"", "not signed by an analyst"),
    (lambda p, e: e.decode(), "not signed by an analyst"),
    (lambda p, e: b"\xff" + e, "not valid JSON"),
    (lambda p, e: e[:-1], "not valid JSON"),
    (lambda p, e: b"[" * 100_000, "not valid JSON"),
    (lambda p, e: b"[]", "unknown format"),
    (lambda p, e: json.dumps({**json.loads(e), "v": 2}).encode(), "unknown format"),
    (lambda p, e: json.dumps({**json.loads(e), "v": None}).encode(), "unknown format"),
    (lambda p, e: json.dumps({**json.loads(e), "payload": 7}).encode(),
     "'payload' is missing or malformed"),
    (lambda p, e: json.dumps({**json.loads(e), "sig": "!!!"}).encode(),
     "signature or certificate is malformed"),
    (lambda p, e: json.dumps({**json.loads(e), "sig": True}).encode(),
     "signature or certificate is malformed"),
    (lambda p, e: json.dumps({**json.loads(e), "cert": "not a certificate"}).encode(),
     "signature or certificate is malformed"),
], ids=["empty", "text-not-bytes", "not-utf8", "truncated", "nested-too-deep", "not-an-object",
        "version-2", "no-version", "payload-not-text", "sig-not-base64", "sig-a-bool",
        "cert-not-pem"])
def test_a_malformed_envelope_is_refused(pki: PKI, make: Callable[[PKI, bytes], Any],
                                         message: str) -> None:
    """Each envelope is refused with a one-sentence reason (never an uncaught exception that
    the caller might mistake for a transport failure) -- catches each format check dropped."""
    refused(pki, make(pki, signed(pki)), message)


# ------------------------------------------------------------------------------- the signer


def test_a_party_cannot_sign_a_request(pki: PKI) -> None:
    """A valid certificate of the federation, but a party's: not an analyst (catches a
    verifier that checks the CA only -- a party, or the coordinator, could ask in its own
    name)."""
    text = canonical(payload_of(pki, analyst="org-a"))
    refused(pki, envelope(text, pki.party), "party 'org-a' is not an analyst of federation")


def test_a_certificate_of_another_ca_is_refused(pki: PKI) -> None:
    """An analyst certificate with the right name from another CA (catches a verifier that
    trusts the certificate carried in the envelope)."""
    refused(pki, signed(pki, "stranger"), "the signer's certificate is not valid here")


def test_the_request_must_be_for_this_federation(pki: PKI) -> None:
    refused(pki, signed(pki), "not an analyst of federation 'other'", federation="other")


def test_the_allow_list_decides_which_analysts_may_ask(pki: PKI) -> None:
    """With the federation's allow-list: a listed analyst passes, an analyst the CA certified
    but the federation does not list is refused, and so is the listed name with a certificate
    other than the pinned one (catches the allow-list or the pin ignored)."""
    assert check(signed(pki), pki=pki, allowed=allow_list()).signer.name == "ann"
    bob = canonical(payload_of(pki, analyst="bob"))
    refused(pki, envelope(bob, pki.bob), "analyst 'bob' is not listed in federation 'demo'",
            allowed=allow_list())
    refused(pki, signed(pki), "analyst 'ann' is not listed in federation 'demo' with this "
            "certificate", allowed=allow_list(fingerprint(pki.bob.cert)))


def test_a_signature_by_another_key_or_over_other_bytes_is_refused(pki: PKI) -> None:
    """The payload changed after signing, or signed by bob's key but carrying ann's
    certificate (catches a verifier that skips the signature)."""
    outer = json.loads(signed(pki))
    tampered = {**outer, "payload": outer["payload"].replace('"mean"', '"sum"')}
    refused(pki, json.dumps(tampered).encode(), "signature does not verify with analyst 'ann'")
    forged = envelope(outer["payload"], pki.bob,
                      cert=pki.ann.cert.public_bytes(serialization.Encoding.PEM).decode())
    refused(pki, forged, "signature does not verify with analyst 'ann'")


def _rsa_analyst_certificate(ca: CertificateAuthority) -> x509.Certificate:
    """ann's identity encoding (subject, SAN URI, both key usages), signed by the federation CA,
    over an RSA key -- what :func:`build_node_certificate` itself refuses to make."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ann"),
                                     x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                                        "analyst"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, FED)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier(f"smpc://{FED}/analyst/ann"),
                x509.DNSName("ann")]), False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           False)
            .sign(ca.key, hashes.SHA256()))


def test_a_certificate_without_an_ec_key_is_refused(pki: PKI) -> None:
    """An analyst certificate of the CA over an RSA key: refused as such, not with a crash
    inside the ECDSA check (catches the key-type check dropped: the RSA key's ``verify``
    would raise a TypeError no caller handles)."""
    cert = _rsa_analyst_certificate(pki.ca)
    doc = {"v": 1, "payload": canonical(payload_of(pki)),
           "sig": base64.b64encode(b"x" * 64).decode(),
           "cert": cert.public_bytes(serialization.Encoding.PEM).decode()}
    refused(pki, json.dumps(doc).encode(), "does not hold an EC key")


# ------------------------------------------------------------------------------ the payload


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "signed payload is not valid JSON"),
    ("[" * 100_000, "signed payload is not valid JSON"),
    ('["a list"]', "signed payload is not a JSON object"),
], ids=["not-json", "nested-too-deep", "not-an-object"])
def test_a_signed_payload_that_is_not_an_object_is_refused(pki: PKI, text: str,
                                                           message: str) -> None:
    refused(pki, envelope(text, pki.ann), message)


@pytest.mark.parametrize(("changes", "message"), [
    ({"analyst": "bob"}, "names another analyst than its signer"),
    ({"analyst": None}, "'analyst' is missing or malformed"),
    ({"federation": "other"}, "for another federation"),
    ({"federation": 1}, "'federation' is missing or malformed"),
    ({"kind": "query"}, "has an unknown kind"),
    ({"request": ["a", "b"]}, "'request' is missing or malformed"),
    ({"request": None}, "'request' is missing or malformed"),
    ({"nonce": "ab" * 15}, "nonce is malformed"),
    ({"nonce": "AB" * 16}, "nonce is malformed"),
    ({"nonce": "ab" * 16 + "\n"}, "nonce is malformed"),
    ({"keyholder_context_sha256": "AB" * 32}, "key hash is malformed"),
    ({"keyholder_context_sha256": "ab" * 31}, "key hash is malformed"),
    ({"keyholder_context_sha256": 12}, "key hash is malformed"),
    ({"keyholder_context_sha256": CTX + "\n"}, "key hash is malformed"),
    ({"issued": True}, "'issued' is missing or malformed"),
    ({"expires": "tomorrow"}, "'expires' is missing or malformed"),
], ids=["other-analyst", "no-analyst", "other-federation", "federation-not-text",
        "unknown-kind", "request-not-object", "no-request", "short-nonce", "upper-nonce",
        "nonce-newline", "upper-key-hash", "short-key-hash", "key-hash-not-text",
        "key-hash-newline",
        "issued-a-bool", "expires-text"])
def test_a_signed_payload_with_a_bad_field_is_refused(pki: PKI, changes: dict[str, Any],
                                                      message: str) -> None:
    """Signed by ann's real key, so only the field is wrong: the payload must name its own
    signer (else the coordinator could pass off bob's request as ann's), this federation, a
    known kind, an object request, a well-formed nonce and key hash (the replay record and
    the ckks key binding rely on them)."""
    refused(pki, envelope(canonical(payload_of(pki, **changes)), pki.ann), message)


def window(pki: PKI, issued: float, expires: float | str) -> bytes:
    """ann's envelope with this validity window (``expires`` may be raw JSON text)."""
    text = canonical(payload_of(pki, issued=issued, expires=0))
    return envelope(text.replace('"expires":0', f'"expires":{expires}'), pki.ann)


@pytest.mark.parametrize(("issued", "expires"), [
    (NOW, NOW), (NOW, NOW - 1), (NOW, NOW + MAX_VALIDITY_SECONDS + 2), (NOW, "Infinity"),
    (NOW, "NaN"),
], ids=["empty-window", "ends-before-it-starts", "longer-than-a-day", "infinite", "nan"])
def test_a_malformed_validity_window_is_refused(pki: PKI, issued: float,
                                                expires: float | str) -> None:
    """A window that is empty, reversed, longer than a day (+1 s of rounding) or not finite:
    such a request would never expire, or its replay record would be pruned at once."""
    refused(pki, window(pki, issued, expires), "validity window is malformed")


def test_the_longest_window_with_its_rounding_allowance_is_accepted(pki: PKI) -> None:
    """One day plus the one second allowed for rounding still verifies (the limit's edge)."""
    s = check(window(pki, NOW, NOW + MAX_VALIDITY_SECONDS + 1), pki=pki)
    assert s.expires == NOW + MAX_VALIDITY_SECONDS + 1


def test_the_clock_skew_allowance_is_exact(pki: PKI) -> None:
    """A request dated up to ``CLOCK_SKEW_SECONDS`` ahead of the party's clock, or expired up
    to that long ago, is accepted; one second more is refused (catches a request valid for
    ever, a skew applied the wrong way, or the window checks dropped)."""
    env = signed(pki, validity=600.0)
    assert check(env, pki=pki, now=NOW - CLOCK_SKEW_SECONDS).nonce
    refused(pki, env, "dated in the future", now=NOW - CLOCK_SKEW_SECONDS - 1)
    assert check(env, pki=pki, now=NOW + 600.0 + CLOCK_SKEW_SECONDS).nonce
    refused(pki, env, "expired at 2030-03-17T17:56:40+00:00",
            now=NOW + 600.0 + CLOCK_SKEW_SECONDS + 1)


# ------------------------------------------------------------------------- the replay record


def claim(seen: SeenRequests, nonce: str, session: str, expires: float, now: float) -> int:
    return seen.claim(nonce=nonce, analyst="ann", request_hash="h" * 64, session_id=session,
                      expires=expires, me="org-a", now=now)


@pytest.fixture(params=["connection-per-call", "kept-open"])
def opener(request, tmp_path: Path):
    """How a party opens its request log: a connection per claim, or the node's kept-open
    database with the record written behind (settled here before anything is read back)."""
    dbs: list[Database] = []

    def open_(path: Path) -> SeenRequests:
        if request.param == "connection-per-call":
            return SeenRequests(path)
        dbs.append(Database(path, "request log", StorageError))
        return SeenRequests(path, db=dbs[-1])

    yield open_
    for db in dbs:
        db.close()


def settled(seen: SeenRequests) -> None:
    if seen._db is not None:
        seen._db.flush()


def test_a_signed_request_is_good_for_one_session(tmp_path: Path, opener) -> None:
    """The second claim of a nonce is refused naming the session that used it, and records
    nothing; other nonces are unaffected; the record survives reopening the file (catches a
    replay check in memory only, or one that overwrites the first session)."""
    seen = opener(tmp_path / "seen.db")
    ticket = claim(seen, "n1", "s1", NOW + 600, NOW)
    # written at once: nothing to settle (0); written behind: a ticket of the queue
    assert ticket == 0 if seen._db is None else ticket > 0
    with pytest.raises(ReplayError, match=r"org-a refuses: this signed request was already "
                                          r"used \(session s1\)"):
        claim(seen, "n1", "s2", NOW + 600, NOW)
    assert isinstance(ReplayError("x"), PolicyError)   # refused as a policy decision
    claim(seen, "n2", "s2", NOW + 600, NOW)
    settled(seen)
    again = opener(tmp_path / "seen.db")
    assert again.seen("n1") and again.seen("n2") and not again.seen("n3")
    with pytest.raises(ReplayError, match=r"\(session s1\)"):  # a restarted party refuses too
        claim(again, "n1", "s3", NOW + 600, NOW)
    with sqlite3.connect(tmp_path / "seen.db") as con:
        rows = sorted(con.execute("SELECT * FROM seen_requests").fetchall())
    assert rows == [("n1", "ann", "h" * 64, "s1", NOW + 600), ("n2", "ann", "h" * 64, "s2",
                                                              NOW + 600)]


def test_a_queued_claim_is_refused_again_before_it_is_written(tmp_path: Path) -> None:
    """On the kept-open database the record is written behind: while it waits in the queue
    (the writer held back by a transaction of this thread) a second claim of the nonce is
    refused all the same, and the ticket, once settled, means the record is on disk (catches
    a check that looks only at the disk, or a ticket settled before the write)."""
    db = Database(tmp_path / "seen.db", "request log", StorageError)
    seen = SeenRequests(tmp_path / "seen.db", db=db)
    try:
        with db.write():  # the writer thread cannot commit anything meanwhile
            ticket = claim(seen, "n1", "s1", NOW + 600, NOW)
            assert ticket > 0
            with pytest.raises(ReplayError, match=r"\(session s1\)"):
                claim(seen, "n1", "s2", NOW + 600, NOW)
        db.settle([ticket])
        assert SeenRequests(tmp_path / "seen.db").seen("n1")
    finally:
        db.close()


def test_concurrent_claims_of_one_nonce_let_exactly_one_through(tmp_path: Path) -> None:
    """Sixteen Prepares with the same signed request at once, on the kept-open database: one
    claim succeeds, fifteen are refused as replays, one record is written."""
    db = Database(tmp_path / "seen.db", "request log", StorageError)
    seen = SeenRequests(tmp_path / "seen.db", db=db)
    outcomes: list[str] = []
    start = threading.Barrier(16)

    def one(i: int) -> None:
        start.wait()
        try:
            db.settle([claim(seen, "same", f"s{i}", NOW + 600, NOW)])
            outcomes.append("ok")
        except ReplayError:
            outcomes.append("replay")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    db.close()
    assert sorted(outcomes) == ["ok"] + ["replay"] * 15
    with sqlite3.connect(tmp_path / "seen.db") as con:
        assert con.execute("SELECT COUNT(*) FROM seen_requests").fetchone() == (1,)


def test_a_nonce_is_kept_until_its_request_can_no_longer_verify(tmp_path: Path, opener) -> None:
    """Records are pruned only ``KEEP_AFTER_EXPIRY_SECONDS`` after their request expired (the
    verifier still accepts a request up to ``CLOCK_SKEW_SECONDS`` past expiry, and the keep
    time covers that): at exactly that age the nonce is still refused, a second later it is
    gone (catches pruning that forgets a nonce while its request would still verify -- a
    replay window -- or never prunes)."""
    assert KEEP_AFTER_EXPIRY_SECONDS >= CLOCK_SKEW_SECONDS
    seen = opener(tmp_path / "seen.db")
    claim(seen, "old", "s1", NOW, NOW - 600)
    at_edge = NOW + KEEP_AFTER_EXPIRY_SECONDS
    with pytest.raises(ReplayError):
        claim(seen, "old", "s2", NOW, at_edge)
    settled(seen)
    with pytest.raises(ReplayError):  # on disk now, not only queued: still refused
        claim(seen, "old", "s2", NOW, at_edge)
    claim(seen, "other", "s3", NOW + 7200, at_edge + 1)    # prunes "old"
    settled(seen)
    assert not seen.seen("old") and seen.seen("other")
    claim(seen, "old", "s4", NOW + 7200, at_edge + 1)      # forgotten: its request is expired
