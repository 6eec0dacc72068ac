"""Audit witnesses: peers hold a party's signed audit heads, so it cannot rewrite its own past.

A party's audit log is hash-chained and MACed, but whoever holds the party's MAC key -- its
operator -- can rebuild the whole chain, and a rebuilt chain verifies.  So after every session
each party signs its current head (log id, last seq, last hash) with its node key and sends it
to the other parties of the session (at most once a second per peer, the latest head covering
every earlier record) (``Node.Witness``); each keeps the heads it receives
(:class:`WitnessStore`, in its own SQLite file).  A rewritten chain then disagrees with a head a
peer holds: :func:`check` names the contradicted records, and ``smpc audit verify --witness``
runs it on heads exported from peers (``smpc audit witnesses``).

A signed head (:func:`sign_head`) is UTF-8 JSON ``{"v": 1, "head": <canonical JSON of
{"party", "federation", "log_id", "seq", "hash", "time"}>, "sig": <base64 ECDSA-SHA256 by the
party's node key>, "cert": <the party's certificate PEM>}``.  :func:`verify_head` checks the
certificate against the federation CA and that it names the party as a party of the federation.

What it does not stop: a party that drops records *before* any head covering them went out
(a session's head goes out within a second of its end: :mod:`parties.node.witnessing`
coalesces heads per peer), and a party and all the peers it shared sessions with agreeing to
forget.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from parties.errors import StorageError
from parties.pki.identity import PKIError, verify_node_certificate
from parties.privacy.audit import AuditLog, Head
from parties.privacy.store import Database, open_database, read_transaction, write_transaction

__all__ = ["SignedHead", "WitnessError", "WitnessStore", "check", "sign_head", "verify_head"]

MAX_SIGNED_HEAD_BYTES = 16 * 1024
_HEX64 = re.compile(r"^[0-9a-f]{64}\Z")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS witness_heads (
    party TEXT NOT NULL,
    log_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    signed TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (party, log_id, seq)
);
"""


class WitnessError(PKIError):
    """A signed audit head is malformed, badly signed, or not from the party it names."""


@dataclass(frozen=True)
class SignedHead:
    """A verified head of ``party``'s audit log and the envelope that proves it."""

    party: str
    head: Head
    envelope: bytes


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sign_head(head: Head, *, party: str, federation: str, key: ec.EllipticCurvePrivateKey,
              cert: x509.Certificate) -> bytes:
    """``head`` of ``party``'s log, signed with its node key."""
    body = _canonical({"party": party, "federation": federation, "log_id": head.log_id,
                       "seq": head.seq, "hash": head.hash, "time": head.exported_at})
    sig = key.sign(body.encode(), ec.ECDSA(hashes.SHA256()))
    return _canonical({"v": 1, "head": body, "sig": base64.b64encode(sig).decode(),
                       "cert": cert.public_bytes(serialization.Encoding.PEM).decode()}).encode()


def verify_head(envelope: bytes, *, ca_cert: x509.Certificate, federation: str,
                party: str | None = None) -> SignedHead:
    """Verify a signed head (see the module docstring); :class:`WitnessError` if not valid.
    ``party``: the party it must come from (e.g. the RPC's caller)."""
    if not isinstance(envelope, bytes | bytearray) or not 0 < len(envelope) \
            <= MAX_SIGNED_HEAD_BYTES:
        raise WitnessError("the signed audit head is missing or too large")
    try:
        outer = json.loads(bytes(envelope).decode())
        body = outer["head"]
        sig = base64.b64decode(outer["sig"], validate=True)
        cert = x509.load_pem_x509_certificate(str(outer["cert"]).encode())
        head = json.loads(body)
        seq, digest = head["seq"], head["hash"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        raise WitnessError("the signed audit head is malformed") from None
    try:
        ident = verify_node_certificate(cert, ca_cert)
    except PKIError as exc:
        raise WitnessError(f"the audit head's certificate is not valid here: {exc}") from None
    if ident.role != "party" or ident.federation != federation \
            or head.get("party") != ident.name or head.get("federation") != federation:
        raise WitnessError("the audit head is not signed by the party it names")
    if party is not None and ident.name != party:
        raise WitnessError(f"{party} sent an audit head signed by {ident.name}")
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise WitnessError("the audit head's certificate does not hold an EC key")
    try:
        public.verify(sig, str(body).encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise WitnessError(f"the audit head's signature does not verify with "
                           f"{ident.name}'s certificate") from None
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 \
            or not isinstance(digest, str) or not _HEX64.match(digest):
        raise WitnessError("the audit head has an invalid seq or hash")
    return SignedHead(ident.name, Head(str(head.get("log_id")), seq, digest,
                                       str(head.get("time", ""))), bytes(envelope))


class WitnessStore:
    """The signed heads of other parties' audit logs that this party holds."""

    def __init__(self, path: str | Path, *, db: Database | None = None) -> None:
        """``db``: the node's kept-open connection to ``path`` (default: a connection per
        call)."""
        self.path = Path(path)
        self._db = db
        con = open_database(self.path, "witness store", StorageError)
        try:
            con.executescript(_SCHEMA)
        finally:
            con.close()

    def add(self, signed: SignedHead) -> None:
        """Keep a verified head (the same head twice is kept once); durable when it returns."""
        write = self._db.write() if self._db is not None else write_transaction(
            open_database(self.path, "witness store", StorageError))
        with write as con:
            con.execute("INSERT OR IGNORE INTO witness_heads VALUES (?, ?, ?, ?, ?, ?)",
                        (signed.party, signed.head.log_id, signed.head.seq, signed.head.hash,
                         signed.envelope.decode(), time.time()))

    def envelopes(self, party: str | None = None) -> list[bytes]:
        """The signed heads held (of ``party``, or of everyone), oldest first."""
        con = open_database(self.path, "witness store", StorageError)
        with read_transaction(con):
            if party is None:
                rows = con.execute(
                    "SELECT signed FROM witness_heads ORDER BY received, seq").fetchall()
            else:
                rows = con.execute("SELECT signed FROM witness_heads WHERE party = ? "
                                   "ORDER BY received, seq", (party,)).fetchall()
        return [r[0].encode() for r in rows]


def check(log: AuditLog, heads: Iterable[SignedHead]) -> list[str]:
    """Sentences naming every witnessed head ``log`` contradicts (empty: all agree).

    A head of this log at seq ``s`` with hash ``h`` contradicts it when the log has no record
    ``s`` (truncated or deleted) or its record ``s`` has another hash (rewritten, even with the
    MAC key).  Heads of other logs are ignored.
    """
    hashes = {r.seq: r.hash for r in log.records(limit=None)}
    problems = []
    for w in sorted(heads, key=lambda w: w.head.seq):
        if w.head.log_id != log.log_id or w.head.seq == 0:
            continue
        have = hashes.get(w.head.seq)
        if have is None:
            problems.append(f"Record {w.head.seq} was witnessed by a peer but is missing "
                            "(truncated or deleted).")
        elif have != w.head.hash:
            problems.append(f"Record {w.head.seq} differs from the head a peer witnessed: the "
                            "chain was rewritten after that head went out.")
    return problems
