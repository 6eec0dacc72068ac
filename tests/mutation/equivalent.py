"""Surviving mutants that are equivalent (or cannot matter for privacy), with the reason.

A mutant listed here survived every test, and we argue why no test can or should kill it.
Keys are mutant ids (``python -m tests.mutation list -v`` prints them with their edits); the
README's testing section summarises the table.  Anything that survives and is not listed here
is a gap in the tests and fails the CI sample.  The table is kept in two files, one per
package, so that the core's and the runtime's reviewers each own theirs.
"""

from __future__ import annotations

from tests.mutation.equivalent_core import EQUIVALENT_CORE
from tests.mutation.equivalent_runtime import EQUIVALENT_RUNTIME

EQUIVALENT: dict[str, str] = {**EQUIVALENT_CORE, **EQUIVALENT_RUNTIME}
