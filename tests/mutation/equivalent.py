"""Surviving mutants that are equivalent (or cannot matter for privacy), with the reason.

A mutant listed here survived every test, and we argue why no test can or should kill it.
Keys are mutant ids (``python -m tests.mutation list`` prints them with their edits); the
README's testing section shows this table.  Anything that survives and is not listed here is a
gap in the tests and fails the CI sample.
"""

from __future__ import annotations

EQUIVALENT: dict[str, str] = {
    "27ef3464a3": "fold accumulating -R M instead of R M: -R is uniform exactly when R is, and "
                  "every party computes the same -R, so the check's soundness (2^-kappa) and "
                  "what it opens are unchanged (smpc/beaver/checking.py)",
}
