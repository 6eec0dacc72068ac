"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

_DRAWS = ("random_below drawing another number of words per round: every round draws fresh "
          "CSPRNG words and keeps those below the bound, in order, so the output is the same "
          "exact rejection sample; only the number of rounds changes (efficiency, not privacy)")
_MASK64 = ("random_below's mask at bits == 64: (1 << 64) - 1 and 2**64 - 1 are the same "
           "all-ones mask, so taking either branch for a bound above 2**63 changes nothing")

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
    # beaver
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
}
