"""CrypTen as a peer in the same run (optional: ``pip install 'smpc[crypten]'``).

Two tasks, each the same computation as one of smpc's headline cases (see
:mod:`smpc_bench._crypten_party` for what each rank does):

* ``peers/crypten/vector-sum``: 3 ranks, secure sum of 10^6 elements, opened to
  rank 0 -- against ``proto/vector-sum/ss/P=3`` (P1);
* ``peers/crypten/linear-inference``: 4096 x 30 linear model, data owner + model owner +
  CrypTen's trusted third party as dealer -- against ``proto/linear-inference/ss/S=4096`` (P4).

CrypTen's ranks are separate processes started by its own launcher and talk torch ``gloo``
over plain TCP on localhost: **no TLS** (smpc's parties use mutual TLS).  The task runs in a
child interpreter so that this process never imports torch; a missing or failing CrypTen
gives a row whose note says why (one line), never a failed bench.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from smpc_bench.common import Case, Config, Resources, Row, row, size_label

SUITE = "peers"
SCRIPT = Path(__file__).with_name("_crypten_party.py")
INSTALL_NOTE = ("pip install crypten fails: crypten 0.4.1 requires the deprecated 'sklearn' "
                "package, whose build refuses to install (works with "
                "SKLEARN_ALLOW_DEPRECATED_SKLEARN_PACKAGE_INSTALL=True)")


def crypten_available() -> bool:
    """Installed?  (Not imported here: torch is slow to import.)"""
    return importlib.util.find_spec("crypten") is not None


#: Seconds a CrypTen task may take (the quick suite's take 5-30 s): CrypTen's launcher
#: sometimes hangs with a rank gone (seen on 3 of 6 quick runs on the reference machine,
#: its gloo ranks waiting for the missing one), which then costs this long before one retry.
CRYPTEN_TIMEOUT_S = 150.0


def run_crypten(task: str, size: int, reps: int, workdir: str,
                timeout: float = CRYPTEN_TIMEOUT_S) -> dict[str, object]:
    """Run one task in a child interpreter; rank 0's JSON document."""
    fd, out = tempfile.mkstemp(suffix=".json", dir=workdir or None)
    os.close(fd)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MASTER_ADDR="127.0.0.1", PYTHONUNBUFFERED="1")
    # its own process group: on a timeout the launcher's rank processes go with it
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), out, task, str(size), str(reps)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        Path(out).unlink(missing_ok=True)
        raise
    text = Path(out).read_text() if Path(out).exists() else ""
    Path(out).unlink(missing_ok=True)
    if proc.returncode != 0 or not text:
        tail = " ".join((stderr or stdout or "").strip().splitlines()[-2:])
        raise RuntimeError(f"CrypTen {task} exit {proc.returncode}: {tail[-300:]}")
    doc: dict[str, object] = json.loads(text)
    return doc


def _skip(case: str, op: str, params: dict[str, object], why: str = "") -> list[Row]:
    return [row(SUITE, case, op, params, {}, "skipped: " + (why or (
        "crypten is not installed (" + INSTALL_NOTE + ")")))]


def _try(task: str, size: int, cfg: Config) -> dict[str, object] | str:
    """rank 0's document, or the reason (one line) why CrypTen did not run: an installed but
    broken CrypTen (e.g. on a torch it cannot import) must not fail the bench either."""
    for attempt in (1, 2):
        try:
            return run_crypten(task, size, cfg.pick(1, 3, 5), cfg.workdir)
        except subprocess.TimeoutExpired as exc:  # a hung launcher: once more, then give up
            if attempt == 2:
                return " ".join(f"CrypTen failed twice: {exc}".split())[:300]
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            return " ".join(f"CrypTen failed: {exc}".split())[:300]
    raise AssertionError("unreachable")


def _measure(cfg: Config, kind: str, size: int, case: str, name: str,
             params: dict[str, object], rate: str, setup: str) -> list[Row]:
    """One CrypTen case (``kind`` of :mod:`._crypten_party` at ``size``) as a row, or a
    skipped row with the reason when CrypTen is absent or fails; ``rate`` names the
    per-second figure, ``setup`` what ran."""
    if not crypten_available():
        return _skip(case, name, params)
    doc = _try(kind, size, cfg)
    if isinstance(doc, str):
        return _skip(case, name, params, doc)
    s = float(doc["seconds"])  # type: ignore[arg-type]
    return [row(SUITE, case, name, params,
                {"seconds": s, "best_s": doc["best_s"], "repeats": doc["repeats"],
                 rate: size / s, "max_abs_error": doc["max_abs_error"]},
                f"CrypTen {doc['crypten']} (torch {doc['torch']}), {setup}, gloo over "
                "plain TCP: no TLS")]


def _sum(cfg: Config, length: int, case: str) -> list[Row]:
    params: dict[str, object] = {"peer": "crypten", "parties": 3, "length": length,
                                 "size": length, "backend": "crypten"}
    return _measure(cfg, "sum", length, case, "crypten-vector-sum", params,
                    "elements_per_s", "3 processes")


def _linear(cfg: Config, samples: int, case: str) -> list[Row]:
    params: dict[str, object] = {"peer": "crypten", "parties": 2, "samples": samples,
                                 "features": 30, "size": samples, "backend": "crypten"}
    return _measure(cfg, "linear", samples, case, "crypten-linear-inference", params,
                    "samples_per_s", "data owner + model owner + TTP dealer, 3 processes")


def cases(cfg: Config, res: Resources) -> list[Case]:
    length = cfg.pick(10**3, 10**6, 10**6)  # P1 is judged at 10^6 in quick mode too
    return [
        Case(f"peers/crypten/vector-sum/L={size_label(length)}",
             lambda: _sum(cfg, length, f"peers/crypten/vector-sum/L={size_label(length)}"),
             cfg.pick(2.0, 4.0, 10.0)),
        Case("peers/crypten/linear-inference/S=4096",
             lambda: _linear(cfg, 4096, "peers/crypten/linear-inference/S=4096"),
             cfg.pick(2.0, 4.0, 8.0)),
    ]
