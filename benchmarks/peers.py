"""Peers in the same run: MPyC (3 parties on loopback) and TenSEAL's row-wise inference.

Both are optional and never a runtime dependency of smpc; a missing one gives a row with a
``skipped`` note instead of numbers.

**MPyC** (``pip install mpyc gmpy2``): three separate processes,
``python benchmarks/_mpyc_party.py -M3 -I i -B PORT --ssl`` on 127.0.0.1 -- MPyC's own way of
running parties on one machine, each party its own process with its own TCP connections.
``--ssl`` is used (mutually authenticated TLS like smpc's gRPC channels) with a throw-away
CA and party certificates written the way MPyC expects them (``.config/party_<i>.crt``,
``.key``, ``mpyc_ca.crt``, CN ``MPyC party <i>``); if that fails the run falls back to
plain TCP and says so.  Secure type ``SecFxp(64, 16)``: the same 64-bit ring size and 16
fractional bits as smpc.  Times are measured inside party 0 after the connections are up
(process start-up excluded, as smpc's federation start-up is).  The tasks are described in
:mod:`smpc_bench._mpyc_party`: the same secure vector sum, and mean / variance over the
same 10 columns (MPyC computes them on secret-shared rows, its natural way).

**TenSEAL row-wise inference** (TenSEAL's encrypted-evaluation tutorial): one ciphertext per
sample holding its 30 features, ``enc_x.dot(w) + b`` (rotations, so Galois keys), one
decryption per sample.  Against it the core's column packing (one ciphertext per feature,
4096 samples per ciphertext, plaintext-scalar multiplies only), both in-process with the
same N=8192 parameters.  Row-wise is timed on a few samples and reported per sample (its
cost is linear in the sample count).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from smpc_bench.common import Case, Config, Resources, Row, measure, row, size_label

SUITE = "peers"
SCRIPT = Path(__file__).with_name("_mpyc_party.py")


def mpyc_available() -> bool:
    """Installed?  (Never imported here: importing mpyc parses this process's sys.argv.)"""
    import importlib.util

    return importlib.util.find_spec("mpyc") is not None


def _free_base_port(count: int) -> int:
    for _ in range(200):
        base = 20000 + secrets.randbelow(40000 - count)
        socks = []
        try:
            for i in range(count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of ports for MPyC")


def _write_mpyc_certs(config_dir: Path, parties: int) -> None:
    """A CA and one certificate per party in MPyC's layout (CN 'MPyC party <i>')."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    config_dir.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "MPyC bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    (config_dir / "mpyc_ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for i in range(parties):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"MPyC party {i}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(ca_key, hashes.SHA256()))
        (config_dir / f"party_{i}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp = config_dir / f"party_{i}.key"
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                         serialization.NoEncryption()))
        kp.chmod(0o600)


def run_mpyc(task_args: list[str], parties: int = 3, timeout: float = 900.0,
             workdir: str | None = None) -> dict[str, Any]:
    """Run the MPyC peer task in ``parties`` processes; party 0's JSON document.

    Tries ``--ssl`` first, plain TCP if that fails (``ssl`` in the answer says which).
    """
    base_dir = Path(tempfile.mkdtemp(prefix="mpyc-", dir=workdir or None))
    errors = []
    for use_ssl in (True, False):
        if use_ssl:
            try:
                _write_mpyc_certs(base_dir / ".config", parties)
            except Exception as exc:  # cryptography missing or failing: plain TCP
                errors.append(f"certificates: {exc}")
                continue
        port = _free_base_port(parties)
        procs = []
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for i in range(parties):
            cmd = [sys.executable, str(SCRIPT), f"-M{parties}", "-I", str(i), "-B", str(port),
                   "--no-log", *(["--ssl"] if use_ssl else []), *task_args]
            procs.append(subprocess.Popen(
                cmd, cwd=base_dir, env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if i == 0 else subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True))
        try:
            out, err = procs[0].communicate(timeout=timeout)
            for p in procs[1:]:
                p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            for p in procs:
                with contextlib.suppress(Exception):
                    p.wait(timeout=5)
            errors.append(f"timeout after {timeout:g} s (ssl={use_ssl})")
            continue
        lines = [ln for ln in (out or "").splitlines() if ln.startswith("{")]
        if procs[0].returncode == 0 and lines:
            doc = json.loads(lines[-1])
            doc["fallback_errors"] = errors
            return doc
        errors.append(f"ssl={use_ssl}: exit {procs[0].returncode}: {(err or '')[-400:]}")
    raise RuntimeError("MPyC peer failed: " + " | ".join(errors))


def _mpyc_sum(cfg: Config, res: Resources, sizes: list[int], case: str) -> list[Row]:
    if not mpyc_available():
        return [row(SUITE, case, "mpyc-vector-sum", {"parties": 3}, {},
                    "skipped: mpyc is not installed (pip install mpyc gmpy2)")]
    doc = run_mpyc(["sum", ",".join(map(str, sizes)), str(cfg.pick(1, 2, 3))],
                   workdir=cfg.workdir)
    out = []
    for r in doc["results"]:
        out.append(row(SUITE, f"{case}/L={size_label(r['n'])}", "mpyc-vector-sum",
                       {"peer": "mpyc", "parties": doc["parties"], "length": r["n"],
                        "size": r["n"], "backend": "mpyc"},
                       {"seconds": r["seconds"], "best_s": r["best_s"], "repeats": r["repeats"],
                        "elements_per_s": r["n"] / r["seconds"],
                        "max_abs_error": r["max_abs_error"]},
                       f"MPyC {doc['mpyc']}, SecFxp(64,16), "
                       f"{'TLS' if doc['ssl'] else 'plain TCP (no TLS)'}, 3 processes"))
    return out


def _mpyc_meanvar(cfg: Config, res: Resources, rows: int, case: str) -> list[Row]:
    if not mpyc_available():
        return [row(SUITE, case, "mpyc-mean/var", {"parties": 3}, {},
                    "skipped: mpyc is not installed (pip install mpyc gmpy2)")]
    doc = run_mpyc(["meanvar", str(rows), "10", str(cfg.pick(1, 1, 2))], workdir=cfg.workdir)
    out = []
    for r in doc["results"]:
        out.append(row(SUITE, f"{case}/{r['stat']}", f"mpyc-{r['stat']}",
                       {"peer": "mpyc", "parties": doc["parties"], "rows": rows,
                        "columns": r["cols"], "size": rows, "backend": "mpyc"},
                       {"seconds": r["seconds"], "best_s": r["best_s"], "repeats": r["repeats"],
                        "rows_per_s": rows * doc["parties"] / r["seconds"],
                        "max_abs_error": r["max_abs_error"]},
                       f"MPyC {doc['mpyc']}, secret-shared rows, "
                       f"{'TLS' if doc['ssl'] else 'plain TCP'}; {r.get('note', '')}".rstrip("; ")))
    return out


def _rowwise(cfg: Config, res: Resources, case: str) -> list[Row]:
    try:
        import tenseal as ts
    except ImportError:
        return [row(SUITE, case, "rowwise-inference", {}, {}, "skipped: tenseal missing")]
    from smpc import ckks

    p = ckks.get_preset("aggregate")
    gen = np.random.default_rng(3)  # benchmark data
    n_rows = cfg.pick(8, 48, 256)
    n_cols = 4096
    X = np.clip(gen.normal(0, 1, (max(n_rows, n_cols), 30)), -5, 5)
    w = gen.uniform(-1, 1, 30)
    b = 0.5

    # TenSEAL tutorial way: a context with Galois keys, one ciphertext per sample.
    t0 = time.perf_counter()
    ctx = ts.context(ts.SCHEME_TYPE.CKKS, p.poly_modulus_degree,
                     coeff_mod_bit_sizes=list(p.coeff_mod_bit_sizes))
    ctx.global_scale = p.scale
    ctx.generate_galois_keys()
    keygen_row = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = [ts.ckks_vector(ctx, X[i].tolist()) for i in range(n_rows)]
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = [v.dot(w.tolist()) + b for v in enc]
    t_eval = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = np.array([o.decrypt()[0] for o in outs])
    t_dec = time.perf_counter() - t0
    err_row = float(np.max(np.abs(dec - (X[:n_rows] @ w + b))))
    per_sample = (t_enc + t_eval + t_dec) / n_rows

    # The core's column packing on 4096 samples (one ciphertext per feature).
    Xc = X[:n_cols]
    t0 = time.perf_counter()
    holder = ckks.KeyHolder(p)
    public = ckks.load_context(holder.public_context())
    keygen_col = time.perf_counter() - t0

    def column_path() -> np.ndarray:
        cols = ckks.pack_columns(holder, Xc)
        logits = ckks.linear_combination(public, cols, w, b)
        return holder.decrypt(logits, n_cols)

    tc = measure(column_path, min_repeats=cfg.pick(1, 2, 3), min_time=0.0, max_repeats=3)
    err_col = float(np.max(np.abs(column_path() - (Xc @ w + b))))
    common = {"features": 30, "preset": "aggregate", "N": p.poly_modulus_degree}
    return [
        row(SUITE, case + "/rowwise", "tenseal-rowwise-inference",
            {**common, "peer": "tenseal-rowwise", "samples": n_rows, "size": n_rows},
            {"seconds": per_sample * 4096, "per_sample_s": per_sample,
             "samples_per_s": 1.0 / per_sample, "encrypt_s": t_enc / n_rows,
             "eval_s": t_eval / n_rows, "decrypt_s": t_dec / n_rows, "keygen_s": keygen_row,
             "max_abs_error": err_row},
            f"{n_rows} samples timed, 'seconds' extrapolated to 4096; public-key encryption, "
            "Galois keys (33.9 MB public context)"),
        row(SUITE, case + "/column", "core-column-inference",
            {**common, "peer": "smpc-core", "samples": n_cols, "size": n_cols},
            {"seconds": tc.median, "per_sample_s": tc.median / n_cols,
             "samples_per_s": n_cols / tc.median, "keygen_s": keygen_col,
             "max_abs_error": err_col, "speedup_vs_rowwise": per_sample * n_cols / tc.median},
            "pack_columns (symmetric) + linear_combination + decrypt, in-process, incl. "
            "serialization; no Galois keys"),
    ]


def cases(cfg: Config, res: Resources) -> list[Case]:
    sizes = cfg.pick([10**3], [10**3, 10**4, 10**5], [10**3, 10**4, 10**5, 10**6])
    rows = cfg.pick(1000, 10**4, 10**5)
    out = [
        Case("peers/mpyc/vector-sum", lambda: _mpyc_sum(cfg, res, sizes, "peers/mpyc/vector-sum"),
             cfg.pick(2.0, 8.0, 60.0)),
        Case(f"peers/mpyc/meanvar/rows={size_label(rows)}",
             lambda: _mpyc_meanvar(cfg, res, rows, f"peers/mpyc/meanvar/rows={size_label(rows)}"),
             cfg.pick(2.0, 8.0, 60.0)),
        Case("peers/tenseal/inference", lambda: _rowwise(cfg, res, "peers/tenseal/inference"),
             cfg.pick(1.0, 4.0, 20.0)),
    ]
    if cfg.tiny:
        out = out[:1] + out[2:]
    return out
