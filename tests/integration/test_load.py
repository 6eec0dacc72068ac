"""Load on one federation of real node processes (mutual TLS on loopback).

1. **50 concurrent computations from three analysts** -- the federation's own analyst and
   two more whose certificates the test issues from the federation's CA (listed, pinned, in
   ``federation.json`` and allowed by every party's policy before the nodes start) -- mixing
   count / sum / mean / var / cov / histogram / quantiles on ``ss`` and mean / sum /
   histogram on ``ckks``.  Every result matches numpy within the backend's tolerance, and
   afterwards every node holds zero sessions (``Health.active_sessions``).
2. **1,000 sequential computations** (``slow``): the resident memory of a party node and of
   the coordinator, read from ``/proc/<pid>/status`` every 100 computations, grows by less
   than 100 MB after a 100-computation warm-up, and no session is left behind.

Tolerances (:mod:`tests.tolerances`): ss counts and histogram counts exact, sums / means /
(co)variances within the fixed-point encoding bounds (3 * 2^-17, over N, 3 * 2^-25 per
moment); ckks sums within the release bound (6 sigma of the flood + half the grid: 0.051,
false failure 2e-9 per value), means that / N, histogram counts exact after rounding;
quantiles within one bin.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties.analyst.client import Client
from parties.federation import local as federation
from smpc.stats import StatSpec
from tests.integration.signing import signed_statistic
from tests.tolerances import Backend, Moments, quantile_tol

from .conftest_hardening import (
    RawCaller,
    active_sessions,
    hardened_federation,  # noqa: F401  (fixture)
    node_pid,
    rss_kb,
    wait_for,
)

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
EXTRA_ANALYSTS = ("analyst-2", "analyst-3")
N_CONCURRENT = 50
N_SEQUENTIAL = 1000
WARMUP = 100
RSS_GROWTH_LIMIT_MB = 100
EDGES = (20.0, 30.0, 40.0, 50.0, 60.0, 70.0)


@pytest.fixture(scope="module")
def lfed(hardened_federation):  # noqa: F811
    rng = np.random.default_rng(99)
    parties = {h: {"age": np.clip(rng.normal(45 + 3 * i, 10, n), 18, 90),
                   "bmi": rng.normal(26 + i, 4, n)}
               for i, (h, n) in enumerate(zip(HOSPITALS, (80, 95, 70), strict=True))}
    f = hardened_federation("load", parties, analysts=EXTRA_ANALYSTS, min_cohort_size=5,
                            session_timeout=300.0)
    yield f
    federation.down(f.directory)  # free the machine for the next module


def clients_for(fed) -> list[Client]:
    lay = fed.layout
    out = [Client(fed.directory, timeout=240, parties=HOSPITALS)]
    for name in EXTRA_ANALYSTS:
        cert, key = fed.analysts[name]
        out.append(Client(lay.federation_file, cert=cert, key=key, ca=lay.ca_cert,
                          timeout=240, parties=HOSPITALS))
    return out


def jobs():
    """(spec, check(result, X)) pairs; X is the pooled (age, bmi) matrix."""
    def near(got, want, tol):
        return bool(np.all(np.abs(np.asarray(got, float) - np.asarray(want, float)) <= tol))

    def tol(X, backend):
        return Moments(X, Backend(backend, len(HOSPITALS)))

    hist = lambda r, X: r.value == [np.histogram(X[:, j], bins=EDGES)[0].tolist()  # noqa: E731
                                    for j in range(2)]
    ss = [
        (StatSpec("count", ("age",)), lambda r, X: r.value == len(X)),
        (StatSpec("sum", ("age", "bmi")),
         lambda r, X: near(r.value, X.sum(axis=0), tol(X, "ss").sum_tol)),
        (StatSpec("mean", ("age", "bmi")),
         lambda r, X: near(r.value, X.mean(axis=0), tol(X, "ss").mean_tol)),
        (StatSpec("var", ("bmi",)),
         lambda r, X: near(r.value, [X[:, 1].var(ddof=1)], tol(X[:, 1:], "ss").var_tol)),
        (StatSpec("cov", ("age", "bmi")),
         lambda r, X: near(r.value, np.cov(X.T), tol(X, "ss").cov_tol)),
        (StatSpec("histogram", ("age", "bmi"), edges=EDGES), hist),
        (StatSpec("quantiles", ("age",), probabilities=(0.5,), bounds=(0, 100),
                  resolution=1000),
         lambda r, X: near(r.value[0][0], np.quantile(X[:, 0], 0.5, method="inverted_cdf"),
                           quantile_tol((0, 100), 1000))),
    ]
    ckks = [
        (StatSpec("mean", ("age", "bmi"), backend="ckks"),
         lambda r, X: near(r.value, X.mean(axis=0), tol(X, "ckks").mean_tol)),
        (StatSpec("sum", ("bmi",), backend="ckks"),
         lambda r, X: near(r.value, [X[:, 1].sum()], tol(X[:, 1:], "ckks").sum_tol)),
        (StatSpec("histogram", ("age", "bmi"), edges=EDGES, backend="ckks"), hist),
    ]
    return ss, ckks


def test_fifty_concurrent_computations_from_three_analysts(lfed):
    X = lfed.pooled(("age", "bmi"), HOSPITALS)
    ss, ckks = jobs()
    plan = []  # 36 ss + 14 ckks, interleaved
    for i in range(N_CONCURRENT):
        pool = ckks if i % 7 in (3, 6) else ss
        plan.append(pool[i % len(pool)])
    assert len(plan) == N_CONCURRENT and sum(p in ckks for p in plan) == 14
    clients = clients_for(lfed)
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(N_CONCURRENT) as ex:
            futs = [ex.submit(clients[i % len(clients)].compute, spec)
                    for i, (spec, _check) in enumerate(plan)]
            results = [f.result(timeout=300) for f in futs]
        elapsed = time.monotonic() - t0
    finally:
        for c in clients:
            c.close()
    print(f"\n{N_CONCURRENT} concurrent computations in {elapsed:.1f} s")
    bad = [(spec.statistic, spec.backend, r.value) for (spec, check), r in
           zip(plan, results, strict=True) if not check(r, X)]
    assert not bad, bad
    assert all(r.backend == spec.backend for (spec, _c), r in zip(plan, results, strict=True))
    names = lfed.nodes()
    assert wait_for(lambda: not any(active_sessions(lfed.directory, names).values()), 15), \
        active_sessions(lfed.directory, names)


class IdleStreams:
    """``n`` ckks Compute streams that send their request and then nothing: each holds one
    of the coordinator's server workers (it waits for the analyst's public context)."""

    def __init__(self, fed, n: int) -> None:
        lay = fed.layout
        self.release = threading.Event()
        self.caller = RawCaller(fed.directory, "coordinator", lay.analyst_cert,
                                lay.analyst_key)
        stub = self.caller.channel.stream_stream(
            "/smpc.v1.Coordinator/Compute", request_serializer=pb.ComputeUp.SerializeToString,
            response_deserializer=pb.ComputeDown.FromString)
        spec = StatSpec("mean", ("age",), backend="ckks")
        req = pb.ComputeUp(request=pb.StatRequest(
            spec_json=json.dumps(spec.to_json()), parties=list(HOSPITALS), timeout_seconds=60,
            signed_request=signed_statistic(fed.directory, spec, parties=HOSPITALS,
                                            context=b"not sent")))
        self.calls = []

        def gen():
            yield req
            self.release.wait(90)  # bounded

        for _ in range(n):
            call = stub(gen(), timeout=90)
            self.calls.append(call)
        for call in self.calls:  # each handler is running once it said "started"
            assert next(call).WhichOneof("body") == "started"

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        self.caller.close()


def _outcomes(fed, n: int, timeout: float) -> list[str]:
    with Client(fed.directory, timeout=timeout, parties=HOSPITALS) as client:
        def one(_i):
            try:
                client.compute(StatSpec("mean", ("age",)))
                return "ok"
            except Exception as exc:
                return f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"

        with ThreadPoolExecutor(n) as ex:
            return list(ex.map(one, range(n)))


STARVATION = (
    "every Coordinator.Compute stream holds one of the coordinator's 64 server workers "
    "(parties.grpc_transport.start_server max_workers=64) for its whole session -- a ckks "
    "stream even while it waits, without a time limit, for the analyst's context -- and the "
    "parties' Node.Deliver calls to the coordinator (ss recipient / ckks aggregator) and "
    "Node.Health need a worker too")


def test_held_compute_streams_do_not_starve_real_computations(lfed):
    idle = IdleStreams(lfed, 60)
    try:
        t0 = time.monotonic()
        outcomes = _outcomes(lfed, 4, timeout=8.0)
        elapsed = time.monotonic() - t0
    finally:
        idle.close()
    names = lfed.nodes()
    assert wait_for(lambda: not any(active_sessions(lfed.directory, names).values()), 30)
    assert _outcomes(lfed, 1, timeout=30.0) == ["ok"]  # recovered once the streams closed
    late = [o for o in outcomes if o != "ok" and not o.startswith("RESOURCE_EXHAUSTED")]
    assert not late, (f"{len(late)} of 4 failed after {elapsed:.1f} s", late[:2])


def test_idle_compute_streams_leave_the_coordinator_responsive(lfed):
    idle = IdleStreams(lfed, 64)
    try:
        with RawCaller.as_analyst(lfed.directory, "coordinator") as c:
            out = c.unary("/smpc.v1.Node/Health", b"", timeout=3.0)
    finally:
        idle.close()
    names = lfed.nodes()
    assert wait_for(lambda: not any(active_sessions(lfed.directory, names).values()), 30)
    assert out.ok, str(out)


@pytest.mark.slow
def test_party_memory_bounded_over_a_thousand_computations(lfed):
    X = lfed.pooled(("age", "bmi"), HOSPITALS)
    ss, ckks = jobs()
    sequence = [*ss, *ss, *ss, ckks[0]]  # about one ckks computation in 22
    party, coord = node_pid(lfed.directory, "hospital-a"), node_pid(lfed.directory,
                                                                      "coordinator")
    samples: list[tuple[int, int, int]] = []
    baseline = None
    t0 = time.monotonic()
    with Client(lfed.directory, timeout=120, parties=HOSPITALS) as client:
        for i in range(N_SEQUENTIAL):
            spec, check = sequence[i % len(sequence)]
            r = client.compute(spec)
            assert check(r, X), (i, spec.statistic, spec.backend, r.value)
            if (i + 1) % 100 == 0:
                samples.append((i + 1, rss_kb(party), rss_kb(coord)))
            if i + 1 == WARMUP:
                baseline = samples[-1]
    elapsed = time.monotonic() - t0
    print(f"\n{N_SEQUENTIAL} sequential computations in {elapsed:.0f} s; "
          f"RSS (computations, party KiB, coordinator KiB): {samples}")
    assert baseline is not None
    limit = RSS_GROWTH_LIMIT_MB * 1024
    for n, p_rss, c_rss in samples:
        assert p_rss - baseline[1] < limit, (n, p_rss, baseline)
        assert c_rss - baseline[2] < limit, (n, c_rss, baseline)
    names = lfed.nodes()
    assert wait_for(lambda: not any(active_sessions(lfed.directory, names).values()), 15)
