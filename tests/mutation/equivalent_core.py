"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

EQUIVALENT_CORE: dict[str, str] = {
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
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
