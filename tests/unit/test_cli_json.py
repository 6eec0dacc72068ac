"""``--json`` on every ``smpc`` command: one document on stdout, of its documented schema.

Each command runs through ``parties.cli.main.main([...])`` in this process (stdout and stderr
captured), except a node's ``start``, which serves forever and so runs as a real subprocess
stopped once it printed its document.  For every command, a success prints exactly one JSON
document of the command's schema (:data:`tests.cli_schemas.SCHEMAS`, the README's "JSON
output" tables) and an error -- an argument error included -- exits non-zero with exactly
the error document ``{"error", "code", "node", "declined"}`` on stdout and the same sentence
as the one stderr line.  The commands that need a *running* federation for a success
(``run``, ``predict``, ``federation up/status``) are checked over real nodes in
``tests/integration/test_cli.py``; here their errors.

The party databases the ``audit``/``outputs`` commands read are made by real party nodes in
process (:class:`parties.federation.inprocess.InProcessFederation`: a statistic and an
inference, so the log has records, each party holds a witnessed head of the other, and the
data owner an encrypted predictions file).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parties.cli.main import main
from parties.config.layout import Layout
from parties.federation.inprocess import InProcessFederation
from smpc.linear import LinearModel
from smpc.stats import StatSpec
from tests.cli_schemas import ERROR, SCHEMAS, check

MODEL = LinearModel("linear", ("age", "bmi"), (0.25, -1.5), 3.0)


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in this process: (exit status, stdout, stderr); an exception escaping
    ``main`` (a traceback for the console script) fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def assert_document(argv: list[str], schema, rc: int = 0):
    """The command exits ``rc`` and prints one document of ``schema``; returns it."""
    code, out, err = run_cli(argv)
    assert code == rc, (argv, code, out, err)
    doc = json.loads(out)  # exactly one document: anything else on stdout fails to parse
    check(doc, schema)
    assert "Traceback" not in err
    return doc


def assert_error(argv: list[str], code: str | None = None):
    """The command fails (non-zero) with the error document on stdout, its sentence the one
    stderr line."""
    rc, out, err = run_cli(argv)
    assert rc != 0, (argv, out)
    doc = json.loads(out)
    check(doc, ERROR)
    assert doc["code"] == code, doc
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].endswith(doc["error"]), (err, doc)
    assert "Traceback" not in err
    return doc


def _write_csv(path: Path, cols: dict[str, np.ndarray]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(cols))
        for row in zip(*cols.values(), strict=True):
            w.writerow([repr(float(v)) for v in row])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A federation made with ``federation init --json`` (two clinics, the second owning a
    model), its party databases filled by one statistic and one inference in process; and a
    CA made with ``certs ca --json``."""
    root = tmp_path_factory.mktemp("cli-json")
    rng = np.random.default_rng(7)
    files = []
    for name, n in (("clinic-a", 30), ("clinic-b", 35)):
        files.append(root / f"{name}.csv")
        _write_csv(files[-1], {"age": rng.normal(50, 10, n), "bmi": rng.normal(27, 4, n)})
    model = root / "risk.json"
    model.write_text(json.dumps(MODEL.to_json()))
    fed_dir = root / "fed"
    init = assert_document(["federation", "init", str(fed_dir), "--data", *map(str, files),
                            "--model", f"clinic-b={model}", "--allow-exact", "--json"],
                           SCHEMAS["federation init"])
    assert init["parties"] == ["clinic-a", "clinic-b"] and init["exact"] == init["parties"]
    with InProcessFederation.open(fed_dir) as fed:
        fed.compute(StatSpec("mean", ("age",)))
        predicted = fed.predict("clinic-a", "clinic-b")
    ca = root / "ca"
    assert_document(["certs", "ca", str(ca), "--federation", "other", "--json"],
                    SCHEMAS["certs ca"])
    return {"root": root, "fed": fed_dir, "files": files, "ca": ca, "lay": Layout(fed_dir),
            "session": predicted.session_id}


def test_federation_init_error(world):
    """An existing federation is not replaced without --force."""
    assert_error(["federation", "init", str(world["fed"]), "--data", str(world["files"][0]),
                  "--json"])


def test_argument_errors_are_documents(world):
    """argparse's errors (an unknown statistic, a missing argument, no command at all) are
    error documents too, with argparse's sentence."""
    doc = assert_error(["run", "median", "age", "--federation", str(world["fed"]), "--json"])
    assert "invalid choice" in doc["error"]
    assert "required" in assert_error(["run", "mean", "age", "--json"])["error"]
    assert_error(["certs", "--json"])


def test_run_and_predict_errors_name_the_unreachable_coordinator(world):
    """The federation is not up: UNAVAILABLE, naming the coordinator (with --partial too: an
    unreachable node is never skipped)."""
    coordinator = world["lay"].federation().nodes_with_role("coordinator")[0].name
    doc = assert_error(["run", "mean", "age", "--federation", str(world["fed"]), "--partial",
                        "--timeout", "5", "--json"], "UNAVAILABLE")
    assert doc["node"] == coordinator and doc["declined"] == {}
    doc = assert_error(["predict", "--federation", str(world["fed"]), "--data-owner",
                        "clinic-a", "--model-owner", "clinic-b", "--timeout", "5", "--json"],
                       "UNAVAILABLE")
    assert doc["node"] == coordinator


def test_federation_lifecycle_documents(world, tmp_path):
    """``down`` of a federation that is not running stops nothing; ``status`` lists every
    node as stopped (exit 1: not all run); each errs on a directory without a federation."""
    assert assert_document(["federation", "down", str(world["fed"]), "--json"],
                           SCHEMAS["federation down"]) == {"stopped": []}
    rows = assert_document(["federation", "status", str(world["fed"]), "--json"],
                           SCHEMAS["federation status"], rc=1)
    assert {r["name"] for r in rows} >= {"clinic-a", "clinic-b"}
    assert not any(r["running"] for r in rows)
    for action in ("up", "down", "status"):
        assert_error(["federation", action, str(tmp_path / "none"), "--json"])


def test_pin_and_revoke_documents(world, tmp_path):
    """Pin a certificate into (a copy of) the federation and revoke a fingerprint; a
    malformed fingerprint and a missing certificate are errors."""
    copy = Layout(shutil.copytree(world["fed"], tmp_path / "fed"))  # the shared one stays
    fed_file = copy.federation_file
    doc = assert_document(["federation", "pin", str(fed_file), "--cert",
                           str(copy.analyst_cert), "--json"], SCHEMAS["federation pin"])
    assert doc["role"] == "analyst"
    doc = assert_document(["federation", "revoke", str(fed_file), "--fingerprint", "ab" * 32,
                           "--json"], SCHEMAS["federation revoke"])
    assert doc["revoked"] is True and doc["already"] is False
    assert_error(["federation", "revoke", str(fed_file), "--fingerprint", "zz", "--json"])
    assert_error(["federation", "pin", str(fed_file), "--cert", str(tmp_path / "no.pem"),
                  "--json"])


def test_certs_documents(world, tmp_path):
    """issue, request and sign from the CA; errors: no CA, a bad name, another name."""
    ca = str(world["ca"])
    assert_document(["certs", "issue", ca, "--name", "lab", "--role", "party", "--out",
                     str(tmp_path / "issued"), "--json"], SCHEMAS["certs issue"])
    assert_error(["certs", "issue", str(tmp_path / "no-ca"), "--name", "lab", "--role",
                  "party", "--json"])
    req = assert_document(["certs", "request", "--name", "lab", "--role", "party",
                           "--federation", "other", "--out", str(tmp_path / "node"), "--json"],
                          SCHEMAS["certs request"])
    assert_error(["certs", "request", "--name", "bad name!", "--role", "party",
                  "--federation", "other", "--out", str(tmp_path / "node2"), "--json"])
    doc = assert_document(["certs", "sign", "--ca-dir", ca, "--csr", req["request"], "--json"],
                          SCHEMAS["certs sign"])
    assert doc["key_id"] == req["key_id"]
    assert_error(["certs", "sign", "--ca-dir", ca, "--csr", req["request"], "--name", "other",
                  "--json"])


def test_audit_and_outputs_documents(world, tmp_path):
    """Every audit command and ``outputs read`` on a real party database; each errs on a
    config that does not exist (and ``outputs read`` on an unknown session)."""
    a = str(world["lay"].config("clinic-a"))
    show = assert_document(["audit", "show", "--config", a, "--limit", "0", "--json"],
                           SCHEMAS["audit show"])
    assert len(show["records"]) >= 2
    verify = assert_document(["audit", "verify", "--config", a, "--json"],
                             SCHEMAS["audit verify"])
    assert verify["ok"] is True and verify["witnesses"] is None
    heads = assert_document(["audit", "witnesses", "--config", a, "--json"],
                            SCHEMAS["audit witnesses"])
    assert heads["heads"], "clinic-a holds clinic-b's signed head after a joint session"
    assert_document(["audit", "head", "--config", a, "--json"], SCHEMAS["audit head"])
    assert_document(["audit", "budget", "--config", a, "--json"], SCHEMAS["audit budget"])
    read = assert_document(["outputs", "read", "--config", a, world["session"], "--json"],
                           SCHEMAS["outputs read"])
    assert read["csv"].splitlines()[0].startswith("row,")
    assert_error(["outputs", "read", "--config", a, "0" * 32, "--json"])
    missing = str(tmp_path / "none.json")
    for command in (["audit", "show"], ["audit", "verify"], ["audit", "witnesses"],
                    ["audit", "head"], ["audit", "budget"]):
        assert_error([*command, "--config", missing, "--json"])


def test_demo_documents(tmp_path):
    """The simulated tour's rows; a data file that does not exist is an error."""
    doc = assert_document(["demo", "--simulated", "--json"], SCHEMAS["demo"])
    assert doc["within_tolerance"] is True and len(doc["rows"]) > 5
    assert_error(["demo", "--simulated", "--data", str(tmp_path / "none.csv"), "--json"])


def test_bench_documents():
    """``bench --list`` names the cases; an unknown option is an error."""
    doc = assert_document(["bench", "--list", "--json"], SCHEMAS["bench"])
    assert doc["status"] == 0 and any(line.startswith("sharing/") for line in doc["lines"])
    assert_error(["bench", "--no-such-option", "--json"])


@pytest.mark.parametrize("role", ["party", "coordinator", "dealer"])
def test_start_error_documents(role, tmp_path):
    """A node that cannot start (no config) prints the error document."""
    assert_error([role, "start", "--config", str(tmp_path / "none.json"), "--json"])


def test_start_document_of_a_serving_node(world):
    """A real party process prints its document once it serves, then runs until stopped."""
    cfg = world["lay"].config("clinic-a")
    proc = subprocess.Popen([sys.executable, "-m", "parties.cli", "party", "start", "--config",
                             str(cfg), "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ})
    try:
        line = proc.stdout.readline()
        doc = json.loads(line)
        check(doc, SCHEMAS["start"])
        assert doc["role"] == "party" and doc["name"] == "clinic-a"
        assert doc["status"] == "serving" and proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.stdout.read() == ""  # nothing after the one document
