"""The CrypTen peer of the benchmark (run by :mod:`smpc_bench.crypten_peer`, never imported
by the suite: importing torch costs seconds and memory).

``python _crypten_party.py OUT.json TASK SIZE REPS`` launches the parties with CrypTen's own
multiprocess launcher (``crypten.mpc.run_multiprocess``: one OS process per rank, torch
``gloo`` over TCP on localhost -- **no TLS**: CrypTen's communicator has none).  Rank 0
writes one JSON document to OUT.json.

Tasks (CrypTen's defaults: 64-bit ring, 16 fractional bits, like smpc's ``ss``):

``sum L REPS``
    3 ranks; rank ``i`` encrypts (secret-shares) its own length-L vector of uniform [0, 100)
    values (``crypten.cryptensor(x, src=i)``), the ranks add the three shared vectors and
    open the sum to rank 0 (``get_plain_text(dst=0)``): the same secure sum as smpc's.
``linear S REPS``
    2 ranks + CrypTen's trusted third party (``mpc.provider = "TTP"``, its own process, the
    dealer of the Beaver triples): rank 0 (data owner) shares ``S x 30`` features, rank 1
    (model owner) shares 30 weights and the intercept; ``X @ w + b`` (one Beaver matrix
    product, one truncation) is opened to rank 0.

Timing: each repeat starts after a synchronising opening of one element; the median over the
repeats after one warm-up, measured in rank 0.  Rank 0 checks the opened result against
plaintext numpy (``max_abs_error``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np

N_FEATURES = 30


def _sync(crypten: object, torch: object) -> None:
    crypten.cryptensor(torch.zeros(1), src=0).get_plain_text()  # type: ignore[attr-defined]


def _task_sum(out: str, length: int, reps: int) -> None:
    import crypten
    import torch

    rank = crypten.comm.get().get_rank()
    world = crypten.comm.get().get_world_size()
    vecs = [np.random.default_rng(1000 + i).uniform(0.0, 100.0, length) for i in range(world)]
    mine = torch.from_numpy(vecs[rank])
    zeros = torch.zeros(length, dtype=torch.float64)
    times = []
    total = None
    for _ in range(reps + 1):
        _sync(crypten, torch)
        t0 = time.perf_counter()
        shared = [crypten.cryptensor(mine if i == rank else zeros, src=i) for i in range(world)]
        acc = shared[0]
        for s in shared[1:]:
            acc = acc + s
        total = acc.get_plain_text(dst=0)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        err = float(np.max(np.abs(total.numpy() - np.sum(vecs, axis=0))))
        _write(out, "sum", length, world, times[1:], err)


def _task_linear(out: str, samples: int, reps: int) -> None:
    import crypten
    import torch

    rank = crypten.comm.get().get_rank()
    gen = np.random.default_rng(20240601)  # public benchmark data
    X = np.clip(gen.normal(0.0, 1.0, (samples, N_FEATURES)), -5, 5)
    w = gen.uniform(-1, 1, N_FEATURES)
    b = 0.5
    x_in = torch.from_numpy(X) if rank == 0 else torch.zeros(samples, N_FEATURES)
    w_in = torch.from_numpy(np.append(w, b)) if rank == 1 else torch.zeros(N_FEATURES + 1)
    times = []
    pred = None
    for _ in range(reps + 1):
        _sync(crypten, torch)
        t0 = time.perf_counter()
        ex = crypten.cryptensor(x_in, src=0)
        ew = crypten.cryptensor(w_in, src=1)
        y = ex.matmul(ew[:N_FEATURES]) + ew[N_FEATURES]
        pred = y.get_plain_text(dst=0)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        err = float(np.max(np.abs(pred.numpy() - (X @ w + b))))
        _write(out, "linear", samples, 2, times[1:], err)


def _write(out: str, task: str, size: int, world: int, times: list[float], err: float) -> None:
    import crypten
    import torch

    doc = {"task": task, "size": size, "parties": world, "seconds": statistics.median(times),
           "best_s": min(times), "repeats": len(times), "max_abs_error": err,
           "crypten": getattr(crypten, "__version__", "?"), "torch": torch.__version__,
           "provider": str(crypten.mpc.get_default_provider().NAME)
           if hasattr(crypten.mpc, "get_default_provider") else "?"}
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)


def main(argv: list[str]) -> int:
    out, task, size, reps = argv[0], argv[1], int(argv[2]), int(argv[3])
    import crypten
    import crypten.mpc as mpc
    import torch

    torch.set_num_threads(1)
    if task == "linear":
        crypten.cfg.mpc.provider = "TTP"
        world, fn = 2, _task_linear
    else:
        world, fn = 3, _task_sum

    @mpc.run_multiprocess(world_size=world)
    def run() -> None:  # each rank: CrypTen's launcher has called crypten.init()
        torch.set_num_threads(1)
        fn(out, size, reps)

    run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
