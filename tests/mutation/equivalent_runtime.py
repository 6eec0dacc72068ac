"""Equivalent surviving mutants of the runtime targets: id -> why no test can or should kill it."""

from __future__ import annotations

EQUIVALENT_RUNTIME: dict[str, str] = {
    # guard
    "a3a220d455": "rsplit('/', 3) for rsplit('/', 2) in the refusal's wording: a served gRPC "
                  "method name is '/package.Service/Method', two slashes, so both splits give "
                  "the same three parts (parties/transport/server.py)",
    # signed (the replay record)
    "e0355557c3": "the nonce check on disk made to wait for the write queue first: the claims "
                  "queued by this process are checked in memory just before, so waiting only "
                  "adds latency (parties/privacy/replay.py)",
    # identity
    "e0fb13df76": "the 'not TLS' early return dropped: without TLS gRPC reports no "
                  "x509_pem_cert, so the next check returns None anyway "
                  "(parties/transport/tls.py)",
    "077c79c6f7": "the common-name cross-check's return dropped: gRPC's x509_common_name is "
                  "read from the same certificate, whose CN identity_from_certificate already "
                  "requires to equal the identity's name (parties/transport/tls.py)",
    "23e86e4c8a": "the early 'file exists' refusal dropped: os.link refuses an existing "
                  "destination with the same FileExistsError and message, and the temporary "
                  "file is removed in the finally block (parties/pki/files.py)",
    "bedf7d220b": "flush before fsync dropped: closing the file flushes it before it is linked, "
                  "so only durability across a power loss changes, which no test can observe "
                  "(parties/pki/files.py)",
    "c2db0e32e5": "fsync dropped: only durability across a power loss changes, which no test "
                  "can observe; the bytes, mode and atomic link are unchanged "
                  "(parties/pki/files.py)",
    "483ca0111e": "unlink of the temporary name after the link dropped: the finally block "
                  "unlinks it anyway (parties/pki/files.py)",
    # policy
    "7ccc96cb21": "the 'continue' after filling in the policy's own bounds dropped: the next "
                  "check compares those bounds with themselves and passes "
                  "(parties/privacy/policy.py)",
    "60cb978774": "'delta is not None or epsilon is not None' for 'and': a PrivacyCost's "
                  "epsilon is None exactly when its delta is, so both tests agree "
                  "(parties/privacy/guard.py)",
    # prepare
    "a69ad2601d": "trail[0] for trail[-1] when the signer is added to the audit trail: the "
                  "trail holds one entry at that point, so both name it (parties/node/party.py)",
    "aa9eeb3711": "257 for 256 as the printable limit of the signer's name: a verified "
                  "signer's name is a validated node name of at most 63 characters "
                  "(parties/node/party.py)",
    # audit
    "92b02f6b66": "_text returning None instead of its value: its only callers, in "
                  "AuditEvent.__post_init__, use it as a check and ignore what it returns "
                  "(parties/privacy/audit.py)",
    "38de45baa1": "the gap scan's range ending at top instead of top + 1: top is the largest "
                  "seq present, so it is never missing, and the scan finds the same gaps "
                  "(parties/privacy/audit_verify.py)",
    "544ade8b34": "-2 for -1 as the 'no stored head' sentinel (head_seq missing): only its sign "
                  "is read, by 'head_seq < 0' (parties/privacy/audit_verify.py)",
    "3934a17470": "-2 for -1 as the 'malformed stored head' sentinel (head_seq not a number): "
                  "only its sign is read, by 'head_seq < 0' (parties/privacy/audit_verify.py)",
}
