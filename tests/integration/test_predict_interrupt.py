"""An analyst that goes away mid-inference leaves no predictions anywhere.

A real ``smpc predict`` process against real nodes (mutual TLS on loopback) is interrupted with
SIGINT (Ctrl-C) while the inference runs: the coordinator is held after ``Run`` went to every
participant (``mid-run``) by the test-only fault hook ``SMPC_FAULT=stall:mid-run:S`` -- the
owners finish meanwhile, the data owner's predictions in memory -- and the test sends SIGINT
once the coordinator's log says it is stalling.  Before the fix the coordinator carried on
after the analyst left and the data owner wrote ``outputs/<session>.csv.enc``; now the
coordinator sees the analyst's call closed before the release and aborts the session: the data
owner drops its predictions unwritten.  The command exits 130 ("interrupted").

Cost: one two-party federation (the parties and the coordinator with the fault started side by
side) and a stall of a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from parties.federation import local as federation
from smpc.linear import LinearModel

from .conftest import write_csv
from .conftest_hardening import active_sessions, wait_for

STALL = 8.0  # seconds the coordinator sleeps at mid-run: time to interrupt the client even
#             on a loaded 2-core machine (at 3 s a test that saw the stall late found the
#             prediction already finished)


def test_ctrl_c_in_smpc_predict_leaves_no_output_file(tmp_path):
    rng = np.random.default_rng(1313)
    files = []
    for party in ("org-a", "org-c"):
        files.append(tmp_path / f"{party}.csv")
        write_csv(files[-1], {"x": rng.normal(5, 1, 12), "y": rng.normal(-1, 1, 12)})
    model = tmp_path / "cost.json"
    model.write_text(json.dumps(LinearModel("linear", ("x", "y"), (1.5, -0.25), 2.0).to_json()))
    directory = tmp_path / "federation"
    federation.init_federation(directory, files, models={"org-c": [model]}, allow_exact=True,
                               min_cohort_size=2)
    layout = federation.Layout(directory)
    outputs = layout.outputs("org-a")
    try:
        # the parties and the coordinator (with the fault) start side by side
        with ThreadPoolExecutor(2) as pool:
            started = [pool.submit(federation.up, directory, timeout=90,
                                   nodes=["org-a", "org-c"]),
                       pool.submit(federation.up, directory, timeout=90, nodes=["coordinator"],
                                   env={"SMPC_FAULT": f"stall:mid-run:{STALL}"})]
            for f in started:
                f.result()
        # Ctrl-C as a terminal delivers it: SIGINT raising KeyboardInterrupt in the command,
        # whatever this test runner's own disposition (an ignored SIGINT is inherited across
        # exec, and Python then installs no handler: the command would never see Ctrl-C)
        argv = ["smpc", "predict", "--federation", str(directory), "--data-owner", "org-a",
                "--model-owner", "org-c", "--timeout", "60"]
        proc = subprocess.Popen(
            [sys.executable, "-c",
             "import runpy, signal, sys\n"
             "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
             f"sys.argv = {argv!r}\n"
             "runpy.run_module('parties.cli', run_name='__main__', alter_sys=True)\n"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            def stalled() -> bool:
                return "stalling here" in layout.log("coordinator").read_text()

            assert wait_for(stalled, 60, 0.1), "the inference never reached mid-run"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130 and "interrupted" in err, (proc.returncode, err)
        # the stall ends, the coordinator finds the analyst gone and aborts: all freed
        assert wait_for(lambda: all(v == 0 for v in active_sessions(
            directory, ["org-a", "org-c", "coordinator"]).values()), STALL + 30, 0.2)
        assert not outputs.exists() or not any(outputs.iterdir()), \
            "an interrupted inference wrote predictions"
        assert "went away before the predictions were released" in \
            layout.log("coordinator").read_text()
    finally:
        federation.down(directory)
