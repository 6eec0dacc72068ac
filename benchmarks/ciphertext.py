"""CKKS operations per preset: the core (:mod:`smpc.ckks`) next to raw TenSEAL, same run.

For every preset of :data:`smpc.ckks.PRESETS` and for TenSEAL with 1 thread and with all
cores, each operation is timed twice: through the core's API and as the *same* operation
written directly against TenSEAL (``raw``).  The core's API takes and returns serialized
ciphertexts (``bytes``, with a 29-byte envelope) because that is what crosses the network,
so the like-for-like raw operation deserializes its inputs and serializes its output too;
``core/raw`` is then the core's overhead (envelope checks, magnitude checks, the rescale
correction, ...).  ``raw op`` is the bare TenSEAL operation on live objects, for reference.

Operations: key generation (KeyHolder: context + symmetric twin [+ Galois keys]), public
context serialization and loading, encryption (public key and symmetric), decryption, adding
two ciphertexts, plaintext-scalar multiply with rescale, the 30-column linear combination
(the column-packed inference), ciphertext multiply with relinearisation and rescale (presets
with relinearisation keys), the encrypted degree-3 sigmoid, and -- with Galois keys -- one
slot rotation, the slot sum and TenSEAL's encrypted-by-plain dot product.  Sizes of fresh and
evaluated ciphertexts and of public contexts with and without Galois keys.

Quick mode: all cores only (plus 1 thread for "aggregate"); Galois-key operations only for
"rotate" (N=8192; "aggregate" has the same parameters).  Full mode: everything for both
thread counts, Galois keys for every preset (122 MB and ~1.5 s at N=16384).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from smpc_bench.common import (
    Case,
    Config,
    Resources,
    Row,
    measure_interleaved,
    paired_ratio,
    row,
)

SUITE = "ciphertext"
N_FEATURES = 30


@dataclass
class _Setup:
    preset: Any
    threads: int
    holder: Any
    pub: Any               # core public context (load_context)
    pub_bytes: bytes
    raw_ctx: Any           # raw TenSEAL private context
    raw_pub: Any
    raw_pub_bytes: bytes
    raw_sym: Any
    values: np.ndarray
    ct_core: list[bytes]   # two fresh public-key ciphertexts (envelopes)
    ct_core2: list[bytes]
    ct_raw: bytes          # raw serialized
    ct_raw2: bytes
    cols_core: list[list[bytes]]
    cols_raw: list[bytes]
    weights: np.ndarray


def _raw_context(preset: Any, threads: int, galois: bool, sym: bool = False) -> Any:
    import tenseal as ts

    kwargs: dict[str, Any] = {"coeff_mod_bit_sizes": list(preset.coeff_mod_bit_sizes),
                              "n_threads": threads}
    if sym:
        kwargs["encryption_type"] = ts.ENCRYPTION_TYPE.SYMMETRIC
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, preset.poly_modulus_degree, **kwargs)
    ctx.global_scale = preset.scale
    if galois:
        ctx.generate_galois_keys()
    return ctx


def _make_setup(preset_name: str, threads: int, galois: bool) -> _Setup:
    import tenseal as ts

    from smpc import ckks

    p = ckks.get_preset(preset_name)
    holder = ckks.KeyHolder(p, galois=galois, n_threads=threads)
    pub_bytes = holder.public_context()
    pub = ckks.load_context(pub_bytes, n_threads=threads, max_bytes=1 << 30)
    raw_ctx = _raw_context(p, threads, galois or p.rotates)
    raw_pub_bytes = raw_ctx.serialize(save_public_key=True, save_secret_key=False,
                                      save_galois_keys=galois or p.rotates,
                                      save_relin_keys=p.relin)
    raw_pub = ts.context_from(raw_pub_bytes, n_threads=threads)
    raw_sym = _raw_context(p, threads, False, sym=True)
    gen = np.random.default_rng(7)  # benchmark data, not secret
    values = gen.uniform(-10, 10, p.slots)
    cols = gen.uniform(-10, 10, (N_FEATURES, p.slots))
    weights = gen.uniform(-1, 1, N_FEATURES)
    return _Setup(
        preset=p, threads=threads, holder=holder, pub=pub, pub_bytes=pub_bytes,
        raw_ctx=raw_ctx, raw_pub=raw_pub, raw_pub_bytes=raw_pub_bytes, raw_sym=raw_sym,
        values=values,
        ct_core=ckks.encrypt_public(pub, values), ct_core2=ckks.encrypt_public(pub, -values),
        ct_raw=ts.ckks_vector(raw_pub, values.tolist()).serialize(),
        ct_raw2=ts.ckks_vector(raw_pub, (-values).tolist()).serialize(),
        cols_core=[ckks.encrypt_public(pub, c) for c in cols],
        cols_raw=[ts.ckks_vector(raw_pub, c.tolist()).serialize() for c in cols],
        weights=weights,
    )


@dataclass(frozen=True)
class _Op:
    name: str
    core: Callable[[_Setup], Any] | None
    raw: Callable[[_Setup], Any]
    raw_op: Callable[[_Setup], Callable[[], Any]] | None = None  # prepared bare op
    needs: str = ""        # "relin" | "galois" | ""
    heavy: bool = False    # key generation: fewer repeats
    note: str = ""


def _ops() -> list[_Op]:
    import tenseal as ts
    import tenseal.sealapi as sealapi

    from smpc import ckks

    def vec(s: _Setup, data: bytes) -> Any:
        return ts.ckks_vector_from(s.raw_pub, data)

    def keygen_core(s: _Setup) -> Any:
        return ckks.KeyHolder(s.preset, galois=s.raw_pub.has_galois_keys(),
                              n_threads=s.threads)

    def keygen_raw(s: _Setup) -> Any:
        return _raw_context(s.preset, s.threads, s.raw_pub.has_galois_keys())

    def lin_raw(s: _Setup) -> bytes:
        acc = vec(s, s.cols_raw[0]).mul(float(s.weights[0]))
        for c, w in zip(s.cols_raw[1:], s.weights[1:], strict=True):
            acc.add_(vec(s, c).mul(float(w)))
        acc.add_(0.5)
        return acc.serialize()

    def lin_raw_op(s: _Setup) -> Callable[[], Any]:
        cols = [vec(s, c) for c in s.cols_raw]

        def op() -> Any:
            acc = cols[0].mul(float(s.weights[0]))
            for c, w in zip(cols[1:], s.weights[1:], strict=True):
                acc.add_(c.mul(float(w)))
            acc.add_(0.5)
            return acc
        return op

    def sigmoid_raw(s: _Setup) -> bytes:
        c0, c1, _, c3 = ckks.sigmoid_coefficients()
        x = vec(s, s.ct_raw)
        x2 = x.square()
        cube = x.mul(c3).mul(x2)
        cube.add_(x.mul(c1))
        cube.add_(c0)
        return cube.serialize()

    def rotate_raw_op(s: _Setup) -> Callable[[], Any]:
        ev = sealapi.Evaluator(s.raw_pub.seal_context().data)
        ct = vec(s, s.ct_raw).ciphertext()[0]
        keys = s.raw_pub.galois_keys().data

        def op() -> Any:
            out = sealapi.Ciphertext()
            ev.rotate_vector(ct, 1, keys, out)
            return out
        return op

    def rotate_raw(s: _Setup) -> Any:
        return rotate_raw_op(s)()

    def bare(make: Callable[..., Any], *which: str,
             ctx: str = "raw_pub") -> Callable[[_Setup], Callable[[], Any]]:
        """A prepared bare op: deserialize the named ciphertexts once, time only ``make``."""
        def prep(s: _Setup) -> Callable[[], Any]:
            objs = [ts.ckks_vector_from(getattr(s, ctx), getattr(s, w)) for w in which]
            return lambda: make(*objs)
        return prep

    def dot_prep(s: _Setup) -> Callable[[], Any]:
        v, w = vec(s, s.ct_raw), s.values.tolist()
        return lambda: v.dot(w)

    return [
        _Op("keygen", keygen_core, keygen_raw, heavy=True,
            note="core: TenSEAL context [+ Galois keys]; its symmetric twin is built at the "
                 "first encrypt"),
        _Op("public-context-serialize", lambda s: s.holder.public_context(),
            lambda s: s.raw_ctx.serialize(save_public_key=True, save_secret_key=False,
                                          save_galois_keys=s.raw_pub.has_galois_keys(),
                                          save_relin_keys=s.preset.relin)),
        _Op("public-context-load",
            lambda s: ckks.load_context(s.pub_bytes, n_threads=s.threads, max_bytes=1 << 30),
            lambda s: ts.context_from(s.raw_pub_bytes, n_threads=s.threads), heavy=True),
        _Op("encrypt-public", lambda s: ckks.encrypt_public(s.pub, s.values),
            lambda s: ts.ckks_vector(s.raw_pub, s.values.tolist()).serialize(),
            raw_op=lambda s: (lambda: ts.ckks_vector(s.raw_pub, s.values.tolist()))),
        _Op("encrypt-symmetric", lambda s: s.holder.encrypt(s.values),
            lambda s: ts.ckks_vector(s.raw_sym, s.values.tolist()).serialize(),
            raw_op=lambda s: (lambda: ts.ckks_vector(s.raw_sym, s.values.tolist()))),
        _Op("decrypt", lambda s: s.holder.decrypt(s.ct_core, s.preset.slots),
            lambda s: np.asarray(ts.ckks_vector_from(s.raw_ctx, s.ct_raw).decrypt()),
            raw_op=bare(lambda v: v.decrypt(), "ct_raw", ctx="raw_ctx")),
        _Op("decrypt+release", lambda s: s.holder.decrypt_and_release(s.ct_core, s.preset.slots),
            lambda s: np.asarray(ts.ckks_vector_from(s.raw_ctx, s.ct_raw).decrypt()),
            note="raw: decrypt only; the core adds CSPRNG flooding noise and rounding"),
        _Op("add", lambda s: ckks.add_ciphertexts(s.pub, [s.ct_core, s.ct_core2]),
            lambda s: vec(s, s.ct_raw).add_(vec(s, s.ct_raw2)).serialize(),
            raw_op=bare(lambda a, b: a + b, "ct_raw", "ct_raw2")),
        _Op("scalar-mul+rescale",
            lambda s: ckks.linear_combination(s.pub, [s.ct_core], [0.731], 0.0),
            lambda s: vec(s, s.ct_raw).mul(0.731).serialize(),
            raw_op=bare(lambda v: v.mul(0.731), "ct_raw"),
            note="core: exact-rescale trick (2 plain mults, 1 rescale)"),
        _Op(f"linear-combination-{N_FEATURES}",
            lambda s: ckks.linear_combination(s.pub, s.cols_core, s.weights, 0.5),
            lin_raw, raw_op=lin_raw_op,
            note="core: one corrected rescale; raw: TenSEAL's rescale per product"),
        _Op("ct-mul+relin+rescale", None,
            lambda s: vec(s, s.ct_raw).mul(vec(s, s.ct_raw2)).serialize(),
            raw_op=bare(lambda a, b: a * b, "ct_raw", "ct_raw2"),
            needs="relin", note="no core API (used inside sigmoid-poly3)"),
        _Op("sigmoid-poly3", lambda s: ckks.sigmoid_poly3(s.pub, s.ct_core), sigmoid_raw,
            needs="depth3", note="core: q_l/Delta-corrected coefficients"),
        _Op("rotate-1", None, rotate_raw, raw_op=rotate_raw_op, needs="galois",
            note="raw SEAL Evaluator.rotate_vector; no core API"),
        _Op("sum-slots", lambda s: ckks.sum_slots(s.pub, s.ct_core),
            lambda s: vec(s, s.ct_raw).sum().serialize(), raw_op=bare(lambda v: v.sum(), "ct_raw"),
            needs="galois", note="core adds the one-hot mask multiply (hides partial sums)"),
        _Op("dot-plain", None,
            lambda s: vec(s, s.ct_raw).dot(s.values.tolist()).serialize(),
            raw_op=dot_prep,
            needs="galois", note="TenSEAL enc.plain dot; the core packs by column instead"),
    ]


def _applies(op: _Op, s_preset: Any, galois: bool) -> bool:
    if op.needs == "relin":
        return bool(s_preset.relin)
    if op.needs == "depth3":
        return bool(s_preset.relin) and s_preset.mult_depth >= 3
    if op.needs == "galois":
        return galois
    return True


def _run_op(cfg: Config, res: Resources, preset: str, threads: int, galois: bool,
            op: _Op, case: str) -> list[Row]:
    key = f"ckks/{preset}/{threads}/{galois}"
    s: _Setup = res.get(key, lambda: _make_setup(preset, threads, galois))
    if op.heavy:
        kw = dict(min_repeats=cfg.pick(1, 2, 3), min_time=0.0, max_repeats=cfg.pick(1, 2, 5),
                  warmup=0)
    else:
        kw = dict(min_repeats=cfg.pick(3, 5, 9), min_time=cfg.pick(0.02, 0.12, 0.6),
                  max_repeats=200, warmup=1)
    fns: list[Callable[[], Any]] = []
    if op.core is not None:
        fns.append(lambda: op.core(s))
    fns.append(lambda: op.raw(s))
    if op.raw_op is not None:
        fns.append(op.raw_op(s))
    times = measure_interleaved(fns, **kw)
    metrics: dict[str, Any] = {}
    i = 0
    if op.core is not None:
        metrics["core_s"] = statistics.median(times[0])
        metrics["core_best_s"] = min(times[0])
        i = 1
    metrics["raw_s"] = statistics.median(times[i])
    metrics["raw_best_s"] = min(times[i])
    if op.raw_op is not None:
        metrics["raw_op_s"] = statistics.median(times[i + 1])
    if op.core is not None:
        metrics["ratio"] = paired_ratio(times[0], times[1])
    metrics["repeats"] = len(times[0])
    metrics["seconds"] = metrics.get("core_s", metrics["raw_s"])
    params = {"preset": preset, "N": s.preset.poly_modulus_degree, "threads": threads,
              "galois": galois}
    return [row(SUITE, case, op.name, params, metrics, op.note)]


def _sizes(cfg: Config, res: Resources, preset: str, threads: int, galois: bool,
           case: str) -> list[Row]:
    import tenseal as ts

    from smpc import ckks

    s: _Setup = res.get(f"ckks/{preset}/{threads}/{galois}",
                        lambda: _make_setup(preset, threads, galois))
    params = {"preset": preset, "N": s.preset.poly_modulus_degree, "threads": threads,
              "galois": galois}
    lin_core = ckks.linear_combination(s.pub, s.cols_core, s.weights, 0.5)[0]
    acc = ts.ckks_vector_from(s.raw_pub, s.cols_raw[0]).mul(float(s.weights[0]))
    for c, w in zip(s.cols_raw[1:], s.weights[1:], strict=True):
        acc.add_(ts.ckks_vector_from(s.raw_pub, c).mul(float(w)))
    no_galois = s.holder.context.serialize(save_public_key=True, save_secret_key=False,
                                           save_galois_keys=False,
                                           save_relin_keys=s.preset.relin)
    out = [
        ("ciphertext-fresh", len(s.ct_core[0]), len(s.ct_raw)),
        ("ciphertext-after-linear-combination", len(lin_core), len(acc.serialize())),
        ("ciphertext-symmetric", len(s.holder.encrypt(s.values)[0]),
         len(ts.ckks_vector(s.raw_sym, s.values.tolist()).serialize())),
        ("public-context without Galois keys", len(no_galois),
         len(s.raw_ctx.serialize(save_public_key=True, save_secret_key=False,
                                 save_galois_keys=False, save_relin_keys=s.preset.relin))),
    ]
    if galois:
        out.append(("public-context with Galois keys", len(s.pub_bytes), len(s.raw_pub_bytes)))
    rows = []
    for what, core_b, raw_b in out:
        rows.append(row(SUITE, case, f"size: {what}", params,
                        {"core_bytes": core_b, "raw_bytes": raw_b,
                         "bytes_per_slot": core_b / s.preset.slots,
                         "ratio": core_b / raw_b}))
    return rows


def cases(cfg: Config, res: Resources) -> list[Case]:
    from smpc import ckks

    all_cores = cfg.threads_all
    out: list[Case] = []
    presets = list(ckks.PRESETS)
    if cfg.tiny:
        plan = [("aggregate", all_cores, False)]
    else:
        plan = []
        for p in presets:
            thread_counts = sorted({1, all_cores}) if (not cfg.quick or p == "aggregate") \
                else [all_cores]
            for t in thread_counts:
                galois = ckks.PRESETS[p].rotates or not cfg.quick
                plan.append((p, t, galois))
    ops = _ops()
    for preset, threads, galois in plan:
        p = ckks.PRESETS[preset]
        heavy_n = p.poly_modulus_degree >= 16384
        for op in ops:
            if not _applies(op, p, galois):
                continue
            if cfg.tiny and op.name not in ("encrypt-public", "add", "decrypt"):
                continue
            name = f"ckks/{preset}/t{threads}/{op.name}"
            weight = (3.0 if op.heavy else 1.0) * (2.5 if heavy_n else 1.0) * \
                (3.0 if galois and op.heavy else 1.0)
            out.append(Case(name, lambda preset=preset, threads=threads, galois=galois,
                            op=op, name=name: _run_op(cfg, res, preset, threads, galois, op,
                                                      name), weight * 0.3))
        name = f"ckks/{preset}/t{threads}/sizes"
        out.append(Case(name, lambda preset=preset, threads=threads, galois=galois, name=name:
                        _sizes(cfg, res, preset, threads, galois, name), 0.3))
    return out
