"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

_DRAWS = ("random_below drawing another number of words per round: every round draws fresh "
          "CSPRNG words and keeps those below the bound, in order, so the output is the same "
          "exact rejection sample; only the number of rounds changes (efficiency, not privacy)")
_MASK64 = ("random_below's mask at bits == 64: (1 << 64) - 1 and 2**64 - 1 are the same "
           "all-ones mask, so taking either branch for a bound above 2**63 changes nothing")

_SEED_LEN = ("a length bound of 17 or none on a 16-byte seed: the transport checks max_len only "
             "after the whole message arrived, and the next line refuses every length but 16 "
             "with a ProtocolError naming the sender, so only the message's wording changes")
_UNREACHABLE_WHAT = ("the name of a model value in an encoding error that cannot happen: "
                     "check_model has already bounded (|w| + ulp)(bound + ulp) + |b| + ulp "
                     "below 2^(63-2f), so |w| < 2^(63-f) and |b| < 2^(63-2f) always encode")

EQUIVALENT_CORE: dict[str, str] = {
    # randomness
    "29f60b49ec": "astype(np.uint64) without copy=True: copy=True is astype's default, so the "
                  "expansion is the same fresh, writable array",
    "9d2bf17335": _MASK64,
    "11550717f2": _MASK64,
    "17f43d43ff": _DRAWS,
    "d4efd013d7": _DRAWS,
    "34b9933701": _DRAWS,
    "17e21153b1": _DRAWS,
    "ea2668f58d": _DRAWS,
    # sharing
    "42c17c9aa0": "np.array(shares[0], dtype=np.uint64) without copy=True: np.array copies by "
                  "default, so reconstruct still never adds into the caller's share",
    # inference
    "3342d85a06": _UNREACHABLE_WHAT,
    "41825d44df": _UNREACHABLE_WHAT,
    "b44ea2b979": _SEED_LEN,
    "04e3b09d51": _SEED_LEN,
    "5e09c1e3c5": "the encrypted-sigmoid branch falling through to finish_predictions, which "
                  "returns the same float64 values for any output but a logistic prediction",
    "083c34436e": "np.asarray of KeyHolder.decrypt's output without dtype=np.float64: decrypt "
                  "already returns a float64 array",
    "bf9bd16db2": "no length bound when receiving the context: load_context applies the same "
                  "MAX_CONTEXT_BYTES by default, and its refusal is reported as the data owner's "
                  "ProtocolError all the same",
    # beaver
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
}
