"""Secret-sharing math over Z_2^64: throughput in elements per second, against numpy.

Each operation is timed on vectors of 10^3 .. 10^7 elements (quick: up to 10^5, 10^6 for the
cheap local ones) and set next to the plaintext numpy operation it stands for, on the same
data (the ``baseline`` column says which):

===================  =======================================================================
op                   what is timed (core)              / numpy baseline
===================  =======================================================================
encode               FixedPoint.encode (range check + round) / np.rint(x * 2^f) to int64
decode               FixedPoint.decode                 / int64 -> float64 / 2^f
share-seeded         share_with_seeds, 2 peers (AES-CTR expansion of 2 vectors + subtract)
                                                       / x - 2 numpy PCG64 vectors (not secure)
expand-seed          expand_share: one peer's share from its 16-byte seed
                                                       / one numpy PCG64 vector (not secure)
reconstruct          reconstruct, 3 shares             / sum of 3 float64 vectors
deal-mul             deal_local: a seed-compressed mul triple for 3 parties, every party's
                     expansion included (the offline phase)  / x * y (float64)
beaver-mul           online Beaver product, 3 parties in the in-process simulator (threads,
                     copying hub), untruncated (2f bits)       / x * y
beaver-mul+trunc     the same, then dealer truncation (rejection method)  / x * y
beaver-dot           inner products of rows of 32, 3 parties   / (x * y).sum(-1)
beaver-matmul        (n/30 x 30) @ (30,), 2 parties (the inference shape) / X @ w
truncate-dealer      dealer truncation alone, 3 parties        / np.floor(z / 2^f)
truncate-local       local (SecureML) truncation, 2 parties    / np.floor(z / 2^f)
===================  =======================================================================

The Beaver and truncation timings are the *online* phase of all parties together on one
machine (the simulator runs every party as a thread: on 2 cores they share the CPU), with the
in-memory transport; the offline phase (dealing) is ``deal-mul``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from smpc_bench.common import Case, Config, Resources, Row, measure, row, size_label

SUITE = "sharing"
F = 16


def _data(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-100, 100, n)  # benchmark data, not secret


def _local_ops(n: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], str]]:
    from smpc import randomness, sharing
    from smpc.encoding import FixedPoint

    codec = FixedPoint(F)
    x = _data(n)
    enc = codec.encode(x)
    seed = randomness.fresh_seed()
    shares = sharing.share(enc, 3)
    xs = [_data(n, s) for s in (1, 2, 3)]
    rng = np.random.default_rng(3)  # baseline only: numpy's non-cryptographic generator
    scale = float(1 << F)

    def np_share() -> Any:
        out = enc.copy()
        for _ in range(2):
            out -= rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
        return out

    return {
        "encode": (lambda: codec.encode(x), lambda: np.rint(x * scale).astype(np.int64),
                   "np.rint(x*2^f) -> int64"),
        "decode": (lambda: codec.decode(enc),
                   lambda: enc.view(np.int64).astype(np.float64) / scale, "int64 -> float / 2^f"),
        "share-seeded": (lambda: sharing.share_with_seeds(enc, 2, "bench/x"), np_share,
                         "x - 2 PCG64 vectors (insecure)"),
        "expand-seed": (lambda: sharing.expand_share(seed, n, "bench/x"),
                        lambda: rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
                        "1 PCG64 vector (insecure)"),
        "reconstruct": (lambda: sharing.reconstruct(shares), lambda: xs[0] + xs[1] + xs[2],
                        "sum of 3 float vectors"),
    }


def _run_local(cfg: Config, op: str, n: int, case: str) -> list[Row]:
    core, base, what = _local_ops(n)[op]
    kw = dict(min_repeats=3, min_time=cfg.pick(0.01, 0.05, 0.2), max_repeats=100, warmup=1)
    tc = measure(core, **kw)
    tb = measure(base, **kw)
    return [row(SUITE, case, op, {"n": n, "parties": 3 if op in ("share-seeded",
                                                                  "reconstruct") else 1},
                {"seconds": tc.median, "elements_per_s": n / tc.median,
                 "numpy_s": tb.median, "numpy_elements_per_s": n / tb.median,
                 "slowdown": tc.median / tb.median, "repeats": tc.repeats},
                f"baseline: {what}")]


# ---------------------------------------------------------------------------- protocols


def _shapes(kind: str, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if kind == "mul":
        return (n,), (n,)
    if kind == "dot":
        return (max(n // 32, 1), 32), (max(n // 32, 1), 32)
    return (max(n // 30, 1), 30), (30,)


def _beaver_setup(kind: str, n: int, parties: int, trunc: str) -> Callable[[], Any]:
    from smpc import beaver, sharing
    from smpc.encoding import FixedPoint

    codec = FixedPoint(F)
    xs, ys = _shapes(kind, n)
    gen = np.random.default_rng(5)
    x = gen.uniform(-10, 10, xs)
    y = gen.uniform(-10, 10, ys)
    x_sh = sharing.share(codec.encode(x), parties)
    y_sh = sharing.share(codec.encode(y), parties)
    req = beaver.TripleRequest(kind, xs, ys)
    names = [f"p{i}" for i in range(parties)]
    op = {"mul": beaver.mul, "dot": beaver.dot, "matmul": beaver.matmul}[kind]

    def setup() -> dict[str, Callable[[Any], Any]]:
        reqs: list[Any] = [req]
        if trunc == "dealer":
            reqs.append(beaver.TruncRequest(int(np.prod(req.z_shape))))
        dealt = beaver.deal_local(reqs, parties)
        roles = {}
        for i, name in enumerate(names):
            pair = dealt[i][1] if trunc == "dealer" else None
            roles[name] = (lambda t, i=i, pair=pair: op(
                t, names, dealt[i][0], x_sh[i], y_sh[i], "b", method=trunc, pair=pair))
        return roles

    return setup


def _trunc_setup(n: int, parties: int, method: str) -> Callable[[], Any]:
    from smpc import beaver, sharing
    from smpc.encoding import FixedPoint

    codec = FixedPoint(F)
    z = codec.encode(_data(n) * 3.0, frac_bits=2 * F)
    z_sh = sharing.share(z, parties)
    names = [f"p{i}" for i in range(parties)]

    def setup() -> dict[str, Callable[[Any], Any]]:
        pairs = beaver.deal_local([beaver.TruncRequest(n)], parties) if method == "dealer" \
            else None
        return {name: (lambda t, i=i: beaver.truncate(
            t, names, z_sh[i], "t", method=method,
            pair=pairs[i][0] if pairs is not None else None)) for i, name in enumerate(names)}

    return setup


def _run_protocol(cfg: Config, op: str, n: int, case: str) -> list[Row]:
    from smpc import beaver, simulator

    gen = np.random.default_rng(5)
    if op.startswith("truncate"):
        method = op.split("-")[1]
        parties = 3 if method == "dealer" else 2
        setup = _trunc_setup(n, parties, method)
        z = _data(n) * 3.0
        baseline: Callable[[], Any] = lambda: np.floor(z * 65536.0)  # noqa: E731
        what = "np.floor(z / 2^f)"
    elif op == "deal-mul":
        parties = 3
        req = beaver.TripleRequest.mul(n)
        x, y = gen.uniform(-10, 10, n), gen.uniform(-10, 10, n)
        core = lambda: beaver.deal_local([req], parties)  # noqa: E731
        kw = dict(min_repeats=3, min_time=cfg.pick(0.01, 0.05, 0.2), max_repeats=50)
        tc = measure(core, **kw)
        tb = measure(lambda: x * y, **kw)
        return [row(SUITE, case, op, {"n": n, "parties": parties},
                    {"seconds": tc.median, "elements_per_s": n / tc.median,
                     "numpy_s": tb.median, "numpy_elements_per_s": n / tb.median,
                     "slowdown": tc.median / tb.median, "repeats": tc.repeats},
                    "baseline: x * y (float64)")]
    else:
        kind = op.split("-")[1].split("+")[0]
        trunc = "dealer" if op.endswith("+trunc") else "none"
        parties = 2 if kind == "matmul" else 3
        setup = _beaver_setup(kind, n, parties, trunc)
        xs, ys = _shapes(kind, n)
        x, y = gen.uniform(-10, 10, xs), gen.uniform(-10, 10, ys)
        if kind == "mul":
            baseline, what = (lambda: x * y), "x * y (float64)"
        elif kind == "dot":
            baseline, what = (lambda: (x * y).sum(-1)), "(x * y).sum(-1)"
        else:
            baseline, what = (lambda: x @ y), "X @ w (float64)"
    kw = dict(min_repeats=cfg.pick(1, 3, 3), min_time=cfg.pick(0.0, 0.05, 0.3),
              max_repeats=cfg.pick(2, 20, 30))
    tc = measure(lambda roles: simulator.run(roles), setup=setup, warmup=1, **kw)
    tb = measure(baseline, min_repeats=3, min_time=cfg.pick(0.01, 0.05, 0.2), max_repeats=100,
                 warmup=1)
    return [row(SUITE, case, op, {"n": n, "parties": parties},
                {"seconds": tc.median, "elements_per_s": n / tc.median,
                 "numpy_s": tb.median, "numpy_elements_per_s": n / tb.median,
                 "slowdown": tc.median / tb.median, "repeats": tc.repeats},
                f"baseline: {what}; online phase, all parties in one process")]


LOCAL_OPS = ("encode", "decode", "share-seeded", "expand-seed", "reconstruct")
PROTOCOL_OPS = ("deal-mul", "beaver-mul", "beaver-mul+trunc", "beaver-dot", "beaver-matmul",
                "truncate-dealer", "truncate-local")


def cases(cfg: Config, res: Resources) -> list[Case]:
    out: list[Case] = []
    local_sizes = cfg.pick([10**4], [10**3, 10**4, 10**5, 10**6],
                           [10**3, 10**4, 10**5, 10**6, 10**7])
    proto_sizes = cfg.pick([10**4], [10**3, 10**4, 10**5], [10**3, 10**4, 10**5, 10**6, 10**7])
    local_ops = ("encode", "share-seeded", "reconstruct") if cfg.tiny else LOCAL_OPS
    proto_ops = ("beaver-mul",) if cfg.tiny else PROTOCOL_OPS
    for op in local_ops:
        for n in local_sizes:
            name = f"sharing/{op}/n={size_label(n)}"
            out.append(Case(name, lambda op=op, n=n, name=name: _run_local(cfg, op, n, name),
                            0.1 + n / 2e6))
    for op in proto_ops:
        for n in proto_sizes:
            name = f"sharing/{op}/n={size_label(n)}"
            out.append(Case(name, lambda op=op, n=n, name=name: _run_protocol(cfg, op, n, name),
                            0.2 + n / 2e5))
    return out
