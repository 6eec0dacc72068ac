"""A party's per-request limits (:meth:`PolicyGate.check_cost`), on their own.

The limits keep one request from exhausting a party (its memory, its CPU, the values it
releases); their refusal must also not leak what a statistic's estimate is made of -- the
party's row count, which is not public.  Each test names the bug it catches: a limit applied off
by one, applied to the wrong kind of request, not applied at all, or a refusal that quotes the
estimate of a statistic.  The full path through a federation is ``test_limits``.
"""

from __future__ import annotations

import pytest

from parties.config import PolicyConfig
from parties.errors import LimitExceeded
from parties.privacy.policy import PolicyGate, PolicyRequest
from smpc.cost import Cost

MIB = 2**20
LIMITS = {"max_released_values": 100, "max_inference_rows": 50,
          "max_session_cpu_seconds": 2.0, "max_request_memory_mb": 8.0}
#: exactly at every limit
EDGE = Cost(released_values=100, noise_draws=100, rows=50, cpu_seconds=2.0,
            memory_bytes=8 * MIB)
STAT = PolicyRequest("ann", "stat", computation="histogram")
INFERENCE = PolicyRequest("ann", "predict-data", computation="predict-linear")


def gate() -> PolicyGate:
    return PolicyGate("org-a", PolicyConfig(["x"], ["ann"], **LIMITS))  # type: ignore[arg-type]


def over(**changes: float) -> Cost:
    """EDGE with the named estimates changed."""
    fields = {**EDGE.__dict__, **changes}
    return Cost(**fields)  # type: ignore[arg-type]


def refusal(req: PolicyRequest, cost: Cost, *, rows_public: bool) -> LimitExceeded:
    with pytest.raises(LimitExceeded) as ei:
        gate().check_cost(req, cost, rows_public=rows_public)
    return ei.value


@pytest.mark.parametrize("req", [STAT, INFERENCE], ids=["statistic", "inference"])
def test_a_request_exactly_at_every_limit_is_served(req: PolicyRequest) -> None:
    """Each limit is an inclusive maximum (catches ``>=`` for ``>`` on any of them)."""
    gate().check_cost(req, EDGE, rows_public=req is INFERENCE)


@pytest.mark.parametrize(("req", "changes", "limit", "sentence"), [
    (STAT, {"released_values": 101}, "max_released_values",
     "org-a refuses: this histogram request releases 101 values; its policy allows at most 100 "
     "(policy.max_released_values)"),
    (INFERENCE, {"rows": 51}, "max_inference_rows",
     "org-a refuses: this inference covers 51 rows; its policy allows at most 50 "
     "(policy.max_inference_rows)"),
    (INFERENCE, {"cpu_seconds": 2.5}, "max_session_cpu_seconds",
     "org-a refuses: this inference would take an estimated 2.5 CPU seconds; its policy allows "
     "at most 2 (policy.max_session_cpu_seconds)"),
    (INFERENCE, {"memory_bytes": 8 * MIB + 1}, "max_request_memory_mb",
     "org-a refuses: this inference would need an estimated 8 MiB of memory; its policy allows "
     "at most 8 MiB (policy.max_request_memory_mb)"),
], ids=["values", "inference-rows", "cpu", "memory"])
def test_each_limit_refuses_one_step_over_it(req: PolicyRequest, changes: dict[str, float],
                                             limit: str, sentence: str) -> None:
    """One value, row, CPU second fraction or byte over a limit is refused, the refusal naming
    the policy field (catches a limit never checked, or checked against another field)."""
    exc = refusal(req, over(**changes), rows_public=req is INFERENCE)
    assert (str(exc), exc.limit) == (sentence, limit)


def test_the_inference_row_limit_does_not_bind_statistics() -> None:
    """A statistic over more rows than an inference may cover is served (its rows are the
    party's table, bounded by the other limits): catches the row limit applied to every
    request."""
    gate().check_cost(STAT, over(rows=10**9), rows_public=False)
    gate().check_cost(PolicyRequest("ann", "predict-model"), EDGE, rows_public=True)
    assert refusal(PolicyRequest("ann", "predict-model"), over(rows=51),
                   rows_public=True).limit == "max_inference_rows"


@pytest.mark.parametrize(("changes", "sentence"), [
    ({"cpu_seconds": 123.4}, "org-a refuses: this histogram request would take more CPU seconds "
                             "than its policy allows (at most 2) "
                             "(policy.max_session_cpu_seconds)"),
    ({"memory_bytes": 777 * MIB}, "org-a refuses: this histogram request would need more "
                                  "memory than its policy allows (at most 8 MiB) "
                                  "(policy.max_request_memory_mb)"),
], ids=["cpu", "memory"])
def test_a_statistics_refusal_does_not_quote_its_estimate(changes: dict[str, float],
                                                          sentence: str) -> None:
    """A statistic's CPU and memory estimates grow with the party's row count, which only the
    party knows: its refusal quotes the limit, never the estimate (catches ``rows_public``
    ignored, which would let an analyst read the row count off a refusal)."""
    assert str(refusal(STAT, over(**changes), rows_public=False)) == sentence


def test_a_request_without_a_computation_is_named_as_a_request() -> None:
    """The refusal's wording for a request that names no computation."""
    exc = refusal(PolicyRequest("ann", "stat"), over(released_values=101), rows_public=False)
    assert str(exc).startswith("org-a refuses: this request releases 101 values")
