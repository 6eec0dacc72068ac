"""Equivalent surviving mutants of the runtime targets: id -> why no test can or should kill it."""

from __future__ import annotations

EQUIVALENT_RUNTIME: dict[str, str] = {}
