"""One MPyC party of the peer benchmark (run by :mod:`smpc_bench.peers`, never imported).

Started three times, ``python _mpyc_party.py -M3 -I i -B PORT [--ssl] --no-log TASK ...``
(MPyC reads its own flags and leaves the rest).  Party 0 prints one JSON document.

Tasks (secure fixed point ``SecFxp(64, 16)``, the same 64-bit ring and 16 fractional bits
as smpc's default):

``sum SIZES REPS``
    each party inputs a vector of uniform [0, 100) values; the parties add the secret-shared
    vectors and open the sum (``mpc.input``, ``+``, ``mpc.output``).
``meanvar ROWS COLS REPS``
    each party inputs ``ROWS x COLS`` normal(50, 10) values; the parties add the column sums
    under MPC and open them (mean = sums / N in the clear, as smpc reveals the sums to its
    recipient), then compute the centred sums of products ``sum_i d_i^T d_i`` with
    ``d_i = x_i - mean`` (secure matrix products: one resharing per output entry) and open
    them; the covariance is that / (N - 1), the variance its diagonal.

The data of party ``i`` comes from numpy's generator seeded ``1000 + i`` (synthetic, public),
so party 0 can check the opened results against plaintext numpy.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
from mpyc.runtime import mpc


def _data(task: str, pid: int, shape: tuple[int, ...]) -> np.ndarray:
    gen = np.random.default_rng(1000 + pid)  # benchmark data, public by construction
    if task == "sum":
        return gen.uniform(0.0, 100.0, shape)
    return gen.normal(50.0, 10.0, shape)


async def _sum(secfxp: type, sizes: list[int], reps: int) -> list[dict[str, float]]:
    m = len(mpc.parties)
    out = []
    for n in sizes:
        v = _data("sum", mpc.pid, (n,))
        times = []
        opened = None
        for r in range(reps):
            await mpc.barrier(f"sum-{n}-{r}")
            t0 = time.perf_counter()
            xs = mpc.input(secfxp.array(v))
            s = xs[0]
            for x in xs[1:]:
                s = s + x
            opened = await mpc.output(s)
            times.append(time.perf_counter() - t0)
        ref = sum(_data("sum", i, (n,)) for i in range(m))
        err = float(np.max(np.abs(np.asarray(opened, dtype=float) - ref)))
        out.append({"n": n, "seconds": statistics.median(times), "best_s": min(times),
                    "repeats": reps, "max_abs_error": err})
    return out


async def _meanvar(secfxp: type, rows: int, cols: int, reps: int) -> list[dict[str, float]]:
    m = len(mpc.parties)
    x_local = _data("meanvar", mpc.pid, (rows, cols))
    n_total = m * rows
    t_mean, t_var = [], []
    mean_o = var_o = None
    for r in range(reps):
        await mpc.barrier(f"mv-{r}")
        t0 = time.perf_counter()
        xs = mpc.input(secfxp.array(x_local))
        total = mpc.np_sum(xs[0], axis=0)
        for x in xs[1:]:
            total = total + mpc.np_sum(x, axis=0)
        # Open the column sums and divide in the clear, as smpc does (N is public): a
        # secure multiply by 1/N would round 1/N to the 2^-16 grid.
        mean_o = np.asarray(await mpc.output(total), dtype=float) / n_total
        t_mean.append(time.perf_counter() - t0)
        cov = None
        for x in xs:
            d = x - mean_o
            term = mpc.np_matmul(mpc.np_transpose(d), d)
            cov = term if cov is None else cov + term
        cov_o = np.asarray(await mpc.output(cov), dtype=float) / (n_total - 1)
        var_o = np.diag(cov_o)
        t_var.append(time.perf_counter() - t0)
    pooled = np.vstack([_data("meanvar", i, (rows, cols)) for i in range(m)])
    return [
        {"stat": "mean", "rows": rows, "cols": cols, "seconds": statistics.median(t_mean),
         "best_s": min(t_mean), "repeats": reps,
         "max_abs_error": float(np.max(np.abs(np.asarray(mean_o, dtype=float)
                                              - pooled.mean(axis=0))))},
        {"stat": "var", "rows": rows, "cols": cols, "seconds": statistics.median(t_var),
         "best_s": min(t_var), "repeats": reps,
         "max_abs_error": float(np.max(np.abs(var_o - pooled.var(axis=0, ddof=1)))),
         "note": "mean + covariance matrix (variance = its diagonal)"},
    ]


async def _main() -> None:
    task = sys.argv[1]
    await mpc.start()
    secfxp = mpc.SecFxp(64, 16)
    t0 = time.perf_counter()
    if task == "sum":
        sizes = [int(s) for s in sys.argv[2].split(",")]
        results = await _sum(secfxp, sizes, int(sys.argv[3]))
    else:
        results = await _meanvar(secfxp, int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    total = time.perf_counter() - t0
    await mpc.shutdown()
    if mpc.pid == 0:
        print(json.dumps({"task": task, "results": results, "total_s": total,
                          "ssl": bool(mpc.options.ssl), "parties": len(mpc.parties),
                          "mpyc": mpc.version}), flush=True)


if __name__ == "__main__":
    mpc.run(_main())
