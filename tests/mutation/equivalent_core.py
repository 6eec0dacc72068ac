"""Equivalent surviving mutants of the core targets: id -> why no test can or should kill it."""

from __future__ import annotations

EQUIVALENT_CORE: dict[str, str] = {}
