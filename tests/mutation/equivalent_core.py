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
    # beaver
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
    # dp, aggregate
    "0ab63f726d": "_rho_from_epsilon's bisection starting from the Bun-Steinke inverse at "
                  "log(2/delta) instead of log(1/delta): a lower but still feasible start, and "
                  "the bisection still stops at the largest feasible rho within 1e-12 relative, "
                  "so the charge never exceeds the request and differs only below that "
                  "tolerance (smpc/dp/accounting.py)",
    "1e756031f8": "add_ring_noise's overflow test reading (z >= 1) for (z >= 0): they differ "
                  "only at z == 0, where enc + 0 cannot overflow and the flag's other factor "
                  "is false (smpc/dp/noise.py)",
    "f0c06204e0": "postprocess_shift dropping dtype=float64 on the plan's bounds: DPRequest "
                  "stores every bound as a float, and np.clip promotes int bounds to the "
                  "float shift anyway, so the clamped shift is the same (smpc/dp/postprocess.py)",
    "a2a973adb4": "ss_contribute dropping dtype=float64 on its values: they go only to "
                  "codec.encode, which converts them with np.asarray(values, dtype=np.float64) "
                  "itself (smpc/aggregate.py)",
    "c764ecde76": "plan's unknown-backend refusal deleted: StatSpec (a frozen dataclass) already "
                  "refuses an unknown backend at construction and stores the parsed Backend, so "
                  "no StatSpec reaches plan with one (smpc/dp/planning.py)",
}
