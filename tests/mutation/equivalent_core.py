"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

EQUIVALENT_CORE: dict[str, str] = {
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
}
