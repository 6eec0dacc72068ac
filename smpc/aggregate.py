"""Secure elementwise sum of the parties' vectors: the building block of every statistic.

Two backends with the same effect -- the recipient learns ``sum_i v_i`` and
nothing else about any single ``v_i``:

``ss`` (additive secret sharing over Z_2^64)
    Party ``i`` shares its encoded vector with :func:`smpc.sharing.share_with_seeds`:
    it keeps the one explicit share and sends each other party a 16-byte seed.
    Every party adds the share it kept to the expansions of the seeds it
    received and sends that *share of the sum* to the recipient, who adds the
    ``n`` shares.  Wire cost per party: ``16 (n-1)`` bytes of seeds plus one
    vector to the recipient.  The recipient sees ``n`` shares of the sum, which
    reveal exactly the sum; any coalition of fewer than all parties (with or
    without the recipient) sees uniform values beyond its own inputs and the
    sum.  Relies on AES-CTR as a PRG and on authenticated private channels.

``ckks`` (TenSEAL CKKS under the key holder's public context)
    Each party encrypts its vector under the key holder's public context and
    sends the ciphertexts to the aggregator, which adds them and forwards only
    the sum to the key holder.  The aggregator learns nothing (it has no secret
    key); the key holder decrypts only the sum.  Assumes the aggregator and the
    key holder do not collude (otherwise the key holder could decrypt
    individual contributions).

Every ``ss`` vector is range-checked before encoding with headroom for the
number of parties, so the sum cannot wrap around: overflow is an
:class:`~smpc.encoding.EncodingRangeError`, never a wrong answer.

A contributing party calls :meth:`~smpc.transport.Transport.check_cancelled`
between its steps (encoding and sharing, each seed expansion, each ciphertext):
a party whose session was aborted stops within one step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smpc import ckks, dp, sharing
from smpc.encoding import FixedPoint
from smpc.errors import ProtocolError
from smpc.transport import Transport

SEED_MESSAGE_BYTES = 16


def ss_contribute(
    t: Transport,
    *,
    parties: Sequence[str],
    recipient: str,
    values: np.ndarray,
    codec: FixedPoint,
    tag: str,
    what: str = "aggregate",
    noise_ulps: np.ndarray | None = None,
) -> np.ndarray | None:
    """Party side of the ``ss`` secure sum of float vectors ``values``.

    Sends seeds to the other parties and one share of the sum to ``recipient``.
    If this party *is* the recipient it returns the decoded sum instead.
    ``noise_ulps`` (int64, in units of the codec's resolution) is this party's
    differential-privacy noise share, added to the encoding before sharing.
    """
    t.check_cancelled()  # pragma: no mutate (liveness only: it cannot change what is sent)
    values = np.asarray(values, dtype=np.float64)
    encoded = codec.encode(values, headroom=len(parties), what=what)
    if noise_ulps is not None:
        encoded = dp.add_ring_noise(encoded, noise_ulps, headroom=len(parties), codec=codec)
    others = [p for p in parties if p != t.me]
    sharing_ = sharing.share_with_seeds(encoded, len(others), stream=f"{tag}/{t.me}")
    # one after another, not Transport.send_each: with the seeds sent at once a peer can finish
    # its role before a misbehaving sender's duplicate seed arrives, and the sender then blames
    # that peer ("session is done") instead of being named itself (test_faults' duplicate row)
    for peer, seed in zip(others, sharing_.seeds, strict=True):
        t.send(peer, f"{tag}/seed", seed)
    sum_share = sharing_.explicit.copy()
    for peer in others:
        seed = t.recv_bytes(peer, f"{tag}/seed", max_len=SEED_MESSAGE_BYTES)
        if len(seed) != SEED_MESSAGE_BYTES:
            raise ProtocolError(f"{peer} sent a {len(seed)}-byte seed for {tag!r}", peer=peer)
        t.check_cancelled()  # pragma: no mutate (liveness only)
        sum_share += sharing.expand_share(seed, encoded.shape, stream=f"{tag}/{peer}")
    if recipient == t.me:
        return _collect_shares(t, parties, sum_share, tag, codec)
    t.send(recipient, f"{tag}/sum-share", sum_share)
    return None


def ss_collect(
    t: Transport, *, parties: Sequence[str], shape: tuple[int, ...], codec: FixedPoint, tag: str
) -> np.ndarray:
    """Recipient side (not itself a party): add the parties' shares of the sum and decode."""
    return _collect_shares(t, parties, np.zeros(shape, dtype=np.uint64), tag, codec)


def _collect_shares(
    t: Transport, parties: Sequence[str], own: np.ndarray, tag: str, codec: FixedPoint
) -> np.ndarray:
    total = own.copy()
    for peer in parties:
        if peer != t.me:
            total += t.recv_array(peer, f"{tag}/sum-share", np.uint64, own.shape)
    return codec.decode(total)


def ckks_contribute(
    t: Transport, *, aggregator: str, public_context: object, values: np.ndarray, tag: str
) -> None:
    """Party side of the ``ckks`` secure sum: encrypt under the public context, send.

    One ciphertext is made and sent at a time (the vector is validated first), with a
    cancellation check before each send.
    """
    t.check_cancelled()  # pragma: no mutate (liveness only)
    count, cts = ckks.encrypt_public_stream(public_context, np.asarray(values, dtype=np.float64))
    t.send(aggregator, f"{tag}/n-ct", np.array([count], dtype=np.int64))
    for k, ct in enumerate(cts):
        t.send(aggregator, f"{tag}/ct/{k}", ct)


def ckks_aggregate(
    t: Transport,
    *,
    parties: Sequence[str],
    keyholder: str,
    public_context: object,
    tag: str,
    max_ciphertexts: int = 4096,
) -> None:
    """Aggregator side: add every party's ciphertexts and forward only the sum."""
    batches = []
    for peer in parties:
        count = int(t.recv_array(peer, f"{tag}/n-ct", np.int64, (1,))[0])
        if not 1 <= count <= max_ciphertexts:
            raise ProtocolError(f"{peer} announced {count} ciphertexts for {tag!r}", peer=peer)
        batches.append([t.recv_bytes(peer, f"{tag}/ct/{k}") for k in range(count)])
    if len({len(b) for b in batches}) != 1:
        raise ProtocolError(f"parties sent different numbers of ciphertexts for {tag!r}")
    total = ckks.add_ciphertexts(public_context, batches)
    t.send(keyholder, f"{tag}/n-sum", np.array([len(total)], dtype=np.int64))
    for k, ct in enumerate(total):
        t.send(keyholder, f"{tag}/sum/{k}", ct)


def ckks_collect(
    t: Transport, *, aggregator: str, keyholder: ckks.KeyHolder, length: int, tag: str,
    dp_noise_std: float = 0.0, summands: int = 1,
) -> np.ndarray:
    """Key-holder side: decrypt the summed ciphertexts and pass them through ``release``.

    ``release`` rounds and floods the decryption (see :mod:`smpc.ckks`), so
    what leaves this function never carries raw CKKS noise.  The flood is sized
    for the CKKS error of a sum of ``summands`` fresh encryptions (the number of
    parties): :meth:`smpc.ckks.Preset.error_bound`.
    """
    count = int(t.recv_array(aggregator, f"{tag}/n-sum", np.int64, (1,))[0])
    if not 1 <= count <= 4096:
        raise ProtocolError(f"{aggregator} announced {count} summed ciphertexts for {tag!r}",
                            peer=aggregator)
    cts = [t.recv_bytes(aggregator, f"{tag}/sum/{k}") for k in range(count)]
    raw = keyholder.decrypt(cts, length)
    bound = keyholder.preset.error_bound(
        summands=summands, independent=True)
    return keyholder.release(raw, error_bound=bound,
                             dp_noise_std=dp_noise_std)
