"""Errors carry no data (issue 12, "Build" 2): the echoed-cell attack and extreme privacy
parameters, over real node processes (mutual TLS), real CSV files and the parties' real SQLite
audit logs.

**The echoed cell.** Before issue 12 a filter over a text column (``name > 3``,
``diagnosis == 5``) failed with the offending cell and the server's data file path in the
error -- a patient's name and diagnosis sent to the analyst, and written into the party's log
and its metadata-only audit log.  Here the analyst (through the client API and the CLI) and a
peer (the coordinator's certificate calling a party's ``Prepare`` directly) send requests that
fail on sensitive cells of ``hospital-a``: row 17 holds the patient ``Zebulon-Quartz-7731``
with the diagnosis ``Creutzfeldt-Jakob-variant-4419``, the non-numeric cholesterol cell
``987654.321 mg/dL`` and the weight 987654.321 (beyond the feature bound of a prediction).
Everything anyone but the party can read, and everything the party writes, is captured:

* the analyst's exceptions (gRPC status details, via :class:`parties.analyst.client.Client`);
* the CLI's stdout and stderr (``smpc run`` / ``smpc predict``, with and without ``--json``);
* the peer's view: the status a party answers the coordinator's ``Prepare`` with;
* every node's log file (``logs/<node>.log``: the node's stderr);
* the raw bytes of every party's SQLite database (ledger and audit log, with its WAL);
* the wire: every request, response and error status every server handled
  (``SMPC_WIRE_CAPTURE``; error statuses are recorded since issue 12).

None holds the marker, the diagnosis, any other text cell of any party, the numeric cell's
value (as text or as float64 / fixed-point bytes), or the data file's path or name.  Positive
controls show that each capture holds the refusals (so the searches look where the errors
are), and the errors stay useful: each names the column, the row and the kind of problem.

**Extreme privacy parameters.** ``--epsilon 1e308 / 0 / -1 / nan / inf / 1e-300``,
``--delta 0 / 1 / 1e-320 / nan``, ``--rho 1e308 / 0 / nan`` and clipping bounds with inf, NaN,
lo >= hi or beyond 1e15 get a one-line refusal naming the parameter: at the CLI (exit status
2, one stderr line, ``{"error": ...}`` with ``--json``, no traceback), at the analyst API (an
``InputError`` before anything is sent) and at a party that a deviating coordinator sends such
a request (INVALID_ARGUMENT with one sentence, audited as refused).  Before, epsilon or rho of
1e5 and more ended in an OpenDP traceback (an internal error at a party).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.analyst.client import Client
from parties.errors import InvalidRequest, RemoteError
from parties.federation import local as federation
from parties.privacy.audit import AuditLog
from parties.transport import wire
from parties.transport.server import CAPTURE_ENV
from parties.transport.tls import channel_credentials, channel_options
from smpc import dp
from smpc.errors import InputError
from smpc.linear import LinearModel
from smpc.stats import StatSpec
from tests.integration.signing import signed_statistic

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
ROWS = 30
ROW = 17                                  # 1-based row of hospital-a holding the secrets
MARKER = "Zebulon-Quartz-7731"            # a patient's name
DIAGNOSIS = "Creutzfeldt-Jakob-variant-4419"
VALUE = 987654.321                        # a numeric cell: weight, and inside the bad chol
BAD_CHOL = f"{VALUE!r} mg/dL"             # not a number
PRIVATE_DIR = "ward-7731-private"         # the directory of the parties' data files
MODEL = LinearModel("linear", ("age", "weight"), (0.5, 0.25), 1.0)
AGE_DP = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"age": (0.0, 120.0)})
CHOL_DP = dp.DPRequest(epsilon=1.0, delta=1e-6, bounds={"chol": (0.0, 400.0)})
TEXT_HINT = "it holds text (row 1 is not a number); a filter compares a text column only " \
            "with a 'string', using '==' or '!='"


# ------------------------------------------------------------------------------ fixture


def write_party(path: Path, party: str, rng: np.random.Generator) -> list[str]:
    """A party's CSV: numbers written with full precision, text cells unique to the party
    (every one is searched for later); hospital-a's row 17 holds the secrets.  Returns every
    text cell."""
    texts = []
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["age", "weight", "chol", "name", "diagnosis"])
        for i in range(ROWS):
            name, dx = f"Name-{party}-{i:02d}-x9", f"Dx-{party}-{i:02d}-q4"
            weight, chol = repr(float(rng.uniform(50, 110))), repr(float(rng.uniform(150, 260)))
            if party == "hospital-a" and i == ROW - 1:
                name, dx, weight, chol = MARKER, DIAGNOSIS, repr(VALUE), BAD_CHOL
            w.writerow([repr(float(rng.uniform(20, 90))), weight, chol, name, dx])
            texts += [name, dx]
    return texts


@dataclass
class Echo:
    """The federation and everything captured while the attacks ran."""

    directory: Path
    data_files: list[Path]
    text_cells: list[str]
    capture: Path
    analyst: dict[str, BaseException] = field(default_factory=dict)
    peer: dict[str, tuple[grpc.StatusCode, str]] = field(default_factory=dict)
    cli: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    @property
    def lay(self) -> federation.Layout:
        return federation.Layout(self.directory)

    def logs(self) -> dict[str, str]:
        return {n: self.lay.log(n).read_text(errors="replace")
                for n in (*HOSPITALS, "lab", "coordinator")}

    def databases(self) -> dict[str, bytes]:
        out = {}
        for n in (*HOSPITALS, "lab"):
            for f in sorted(self.lay.node_dir(n).glob("party.db*")):
                if not f.name.endswith("audit-key"):
                    out[f"{n}/{f.name}"] = f.read_bytes()
        return out

    def wire(self) -> dict[str, bytes]:
        return {p.stem: p.read_bytes() for p in sorted(self.capture.glob("*.wire"))}

    def secrets_text(self) -> list[str]:
        """Every text that must appear nowhere: the cells, the value, the path."""
        out = [MARKER, DIAGNOSIS, "987654", "mg/dL", PRIVATE_DIR, *self.text_cells]
        for f in self.data_files:
            out += [str(f), f.name]
        return out


def value_patterns() -> dict[bytes, str]:
    """987654.321 as float64 (both byte orders) and as fixed point at 16 and 24 fractional
    bits (both orders): the forms a value takes in memory and in the ss encodings."""
    f = np.float64(VALUE)
    out = {f.tobytes(): "float64-le", f.byteswap().tobytes(): "float64-be"}
    for bits in (16, 24):
        le = np.int64(round(VALUE * 2**bits)).tobytes()
        out[le] = f"fixed{bits}-le"
        out[le[::-1]] = f"fixed{bits}-be"
    return out


def leaks(name: str, blob: bytes | str, secret_texts: list[str]) -> list[str]:
    """Every secret found in ``blob`` (text or bytes), labelled with where it was found."""
    data = blob.encode(errors="replace") if isinstance(blob, str) else blob
    found = [f"{name}: {t!r}" for t in secret_texts if t.encode() in data]
    found += [f"{name}: {label}" for pat, label in value_patterns().items() if pat in data]
    return found


def smpc_cli(*args: str) -> subprocess.CompletedProcess:
    """The real command line, as a person runs it (a fresh interpreter)."""
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def coordinator_prepare(directory: Path, party: str, spec_doc: dict, where: str
                        ) -> tuple[grpc.StatusCode, str, str]:
    """A party's ``Prepare``, called with the coordinator's certificate as a deviating
    coordinator would (the analyst's signature over the request, so that it reaches the
    filter; a spec holding NaN or infinity cannot be signed -- the party parses the spec
    before it looks at the signature); returns the status code, its details and the session
    id."""
    lay = federation.Layout(directory)
    coord = lay.node_dir("coordinator")
    creds = channel_credentials(coord / "cert.pem", coord / "key.pem", lay.ca_cert)
    sid = secrets.token_hex(16)
    try:
        signed = signed_statistic(directory, spec_doc, parties=HOSPITALS, where=where)
    except ValueError:  # NaN / infinity: not JSON the analyst's signature can cover
        signed = b""
    members = [pb.Member(name=h, role="party") for h in HOSPITALS]
    members.append(pb.Member(name="coordinator", role="recipient"))
    req = pb.PrepareRequest(
        session_id=sid, kind=pb.SESSION_KIND_STAT, spec_json=json.dumps(spec_doc), where=where,
        members=members, analyst="analyst", tag="stat", timeout_seconds=30,
        signed_request=signed)
    channel = grpc.secure_channel(lay.federation().node(party).address, creds,
                                  options=channel_options(party, wire.grpc_options()))
    try:
        pb_grpc.PartyStub(channel).Prepare(req, timeout=30)
    except grpc.RpcError as err:
        return err.code(), err.details() or "", sid
    finally:
        channel.close()
    return grpc.StatusCode.OK, "", sid


STAT_ATTACKS = {
    # label: (spec, where, the helpful part the analyst's error must contain)
    "name > 3": (StatSpec("mean", ("age",), dp=AGE_DP), "name > 3",
                 f"column 'name' at position 1 cannot be compared with numbers: {TEXT_HINT}"),
    "diagnosis == 5": (StatSpec("mean", ("age",), dp=AGE_DP), "age > 1 and diagnosis == 5",
                       "column 'diagnosis' at position 13 cannot be compared with numbers: "
                       + TEXT_HINT),
    "diagnosis == 5 (ckks)": (StatSpec("mean", ("age",), backend="ckks", dp=AGE_DP),
                              "diagnosis == 5", "column 'diagnosis' at position 1 cannot be "
                              "compared with numbers: " + TEXT_HINT),
    "mean chol": (StatSpec("mean", ("chol",), dp=CHOL_DP), None,
                  f"hospital-a cannot use the requested columns: row {ROW} of column 'chol' "
                  "is not a number"),
    "chol > 200": (StatSpec("mean", ("age",), dp=AGE_DP), "chol > 200",
                   "column 'chol' at position 1 cannot be compared with numbers: it holds text "
                   f"(row {ROW} is not a number)"),
}
PREDICT_ATTACKS = {
    "predict beyond the feature bound": (None, "hospital-a refuses: a feature value exceeds "
                                               "the declared feature bound 1000 in feature "
                                               "'weight'; raise the bound (--feature-bound) or "
                                               "scale the feature (the value is not "
                                               "disclosed)"),
    "predict name > 3": ("name > 3", f"column 'name' at position 1 cannot be compared with "
                                     f"numbers: {TEXT_HINT}"),
}
#: label -> the command's arguments after ``--federation DIR`` (inserted after the command)
CLI_ATTACKS = {
    "run name > 3": ("run", "mean", "age", "--where", "name > 3", "--epsilon", "1",
                     "--delta", "1e-6", "--clip", "age=0:120"),
    "run diagnosis == 5 --json": ("run", "mean", "age", "--where", "diagnosis == 5",
                                  "--epsilon", "1", "--delta", "1e-6", "--clip", "age=0:120",
                                  "--json"),
    "run mean chol --json": ("run", "mean", "chol", "--epsilon", "1", "--delta", "1e-6",
                             "--clip", "chol=0:400", "--json"),
    "predict --feature-bound 1000": ("predict", "--data-owner", "hospital-a", "--model-owner",
                                     "lab", "--feature-bound", "1000"),
    "predict name > 3 --json": ("predict", "--data-owner", "hospital-a", "--model-owner",
                                "lab", "--where", "name > 3", "--json"),
}


@pytest.fixture(scope="module")
def echo(tmp_path_factory) -> Echo:
    root = tmp_path_factory.mktemp("echo")
    private = root / PRIVATE_DIR
    private.mkdir()
    rng = np.random.default_rng(20261201)
    files, texts = [], []
    for h in HOSPITALS:
        files.append(private / f"{h}.csv")
        texts += write_party(files[-1], h, rng)
    files.append(private / "lab.csv")
    files[-1].write_text("member\n" + "\n".join(str(i) for i in range(1, 21)) + "\n")
    model = private / "risk.json"
    model.write_text(json.dumps(MODEL.to_json()))
    directory = root / "fed"
    # hospital-a, the data owner of the prediction attacks, allows exact answers: a data owner
    # under a DP policy makes a row beyond the feature bound a dummy instead of refusing
    # (tests/unit/test_dp_oracles.py), so only exact mode has that error to echo
    federation.init_federation(directory, files, models={"lab": model}, min_cohort_size=5,
                               allow_exact=["hospital-a"], epsilon=10.0)
    capture = root / "capture"
    federation.up(directory, timeout=60, env={CAPTURE_ENV: str(capture)})
    e = Echo(directory, files, texts, capture)
    try:
        with Client(directory, timeout=60, parties=HOSPITALS) as client:
            for label, (spec, where, _) in STAT_ATTACKS.items():
                with pytest.raises(RemoteError) as err:
                    client.compute(spec, where)
                e.analyst[label] = err.value
            for label, (where, _) in PREDICT_ATTACKS.items():
                bound = 1000.0 if where is None else None
                with pytest.raises(RemoteError) as err:
                    client.predict("hospital-a", "lab", where=where, feature_bound=bound)
                e.analyst[label] = err.value
        spec_doc = StatSpec("mean", ("age",), dp=AGE_DP).to_json()
        for where in ("name > 3", "diagnosis == 5"):
            code, details, _sid = coordinator_prepare(directory, "hospital-a", spec_doc, where)
            e.peer[where] = (code, details)
        for label, args in CLI_ATTACKS.items():
            e.cli[label] = smpc_cli(*args, "--federation", str(directory))
        yield e
    finally:
        federation.down(directory)


# ------------------------------------------------------------------------- the echoed cell


def test_echoed_cell_the_analyst_error_names_column_and_row_never_the_cell(echo):
    """Each attack fails with INVALID_ARGUMENT (a refusal of the request, not an internal
    error) naming the column, the row and the kind of problem; no cell, value or path is in
    the exception (its message, its repr, the node it blames)."""
    expected = {k: v[2] for k, v in STAT_ATTACKS.items()}
    expected.update({k: v[1] for k, v in PREDICT_ATTACKS.items()})
    assert set(echo.analyst) == set(expected)
    found = []
    for label, exc in echo.analyst.items():
        assert isinstance(exc, InvalidRequest), (label, type(exc), exc)
        assert exc.code == "INVALID_ARGUMENT" and expected[label] in exc.message, (label, exc)
        assert "\n" not in exc.message
        found += leaks(label, f"{exc.message} {exc!r} {exc.node}", echo.secrets_text())
    assert not found, found


def test_echoed_cell_the_peer_sees_no_cell(echo):
    """The coordinator's own certificate calling hospital-a's Prepare (what a peer reads):
    INVALID_ARGUMENT with the column and row, no cell and no path."""
    assert set(echo.peer) == {"name > 3", "diagnosis == 5"}
    found = []
    for where, (code, details) in echo.peer.items():
        column = where.split()[0]
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (where, code, details)
        assert details == (f"column {column!r} at position 1 cannot be compared with numbers: "
                           + TEXT_HINT), details
        found += leaks(f"peer {where}", details, echo.secrets_text())
    assert not found, found


def test_echoed_cell_the_cli_prints_one_line_without_the_cell(echo):
    """``smpc run`` / ``smpc predict``: exit status 2, one line on stderr naming the column
    and row, ``{"error": ...}`` on stdout with ``--json`` -- no cell, value or path in either
    stream."""
    found = []
    for label, proc in echo.cli.items():
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (label, proc.returncode, proc.stderr)
        assert lines[0].startswith("smpc: error: ") and "Traceback" not in proc.stderr
        assert "row" in lines[0] or "feature bound" in lines[0], lines[0]
        if "--json" in label:
            doc = json.loads(proc.stdout)
            assert doc["error"] == lines[0].removeprefix("smpc: error: ")
            assert doc["code"] == "INVALID_ARGUMENT" and doc["node"] == "hospital-a", doc
        else:
            assert proc.stdout == ""
        found += leaks(label, proc.stdout + proc.stderr, echo.secrets_text())
    assert not found, found


def test_echoed_cell_the_logs_record_the_kind_and_row_never_the_cell(echo):
    """Every node's log (the party's own, and the coordinator's, a peer's) holds no cell,
    value or path; hospital-a's log records the kind of problem and the row (and the CSV
    line), so the operator can find the cell in its own file."""
    logs = echo.logs()
    a = logs["hospital-a"]
    assert f"not-a-number: row {ROW} of column 'chol' is not a number (line {ROW + 1} of the " \
           "file)" in a
    assert "refused a value outside the encodable range (value not logged)" in a
    assert "cannot be compared with numbers" in a
    found = [x for n, text in logs.items() for x in leaks(f"log {n}", text, echo.secrets_text())]
    assert not found, found


def test_echoed_cell_the_audit_log_holds_metadata_only(echo):
    """The raw bytes of every party's database (ledger and audit log, WAL included) hold no
    cell, value or path; the audit log does record each refusal with its safe reason (the
    positive control: the search looks where the reasons are)."""
    events = [r.event for r in AuditLog(echo.lay.node_dir("hospital-a") / "party.db",
                                        chain_only=True).records(limit=None)]
    reasons = [e.get("reason", "") for e in events if e.get("outcome") == "refused"]
    assert any(f"row {ROW} of column 'chol' is not a number" in r for r in reasons), reasons
    assert any("cannot be compared with numbers" in r for r in reasons), reasons
    dbs = echo.databases()
    assert any(b"is not a number" in blob for blob in dbs.values())
    found = [x for n, blob in dbs.items() for x in leaks(f"db {n}", blob, echo.secrets_text())]
    assert not found, found


def test_echoed_cell_the_wire_carries_no_cell(echo):
    """Every message and every error status any server handled: no cell, value or path.
    Positive controls: the capture holds the refusals' statuses (as the analyst's client and
    the coordinator received them) and the requests' filters."""
    blobs = echo.wire()
    assert {"coordinator", *HOSPITALS} <= set(blobs)
    everything = b"".join(blobs.values())
    assert b"INVALID_ARGUMENT" in blobs["hospital-a"] and b"INVALID_ARGUMENT" in \
        blobs["coordinator"]
    assert f"row {ROW} of column 'chol' is not a number".encode() in blobs["coordinator"]
    assert b"name > 3" in everything and b"diagnosis == 5" in everything
    found = [x for n, blob in blobs.items() for x in leaks(f"wire {n}", blob,
                                                           echo.secrets_text())]
    assert not found, found


def test_the_leak_search_finds_each_secret():
    """The search itself: each secret text and each byte encoding of the value is found when
    planted (so an empty result means absent, not unsearched)."""
    texts = [MARKER, DIAGNOSIS, "987654"]
    for t in texts:
        assert leaks("x", b"\x00ab" + t.encode() + b"cd", texts) == [f"x: {t!r}"]
    for pat, label in value_patterns().items():
        assert leaks("x", b"\x01" * 5 + pat + b"\x02", []) == [f"x: {label}"]


# -------------------------------------------------------------- extreme privacy parameters

EXTREME = [
    (("--epsilon", "1e308", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "0", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "-1", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "nan", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "inf", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "1e-300", "--delta", "1e-6"), "epsilon"),
    (("--epsilon", "1", "--delta", "0"), "delta"),
    (("--epsilon", "1", "--delta", "1"), "delta"),
    (("--epsilon", "1", "--delta", "1e-320"), "delta"),
    (("--epsilon", "1", "--delta", "nan"), "delta"),
    (("--rho", "1e308"), "rho"),
    (("--rho", "0"), "rho"),
    (("--rho", "nan"), "rho"),
    (("--rho", "0.1", "--clip", "age=0:inf"), "'age'"),
    (("--rho", "0.1", "--clip", "age=nan:1"), "'age'"),
    (("--rho", "0.1", "--clip", "age=5:5"), "'age'"),
    (("--rho", "0.1", "--clip", "age=2:1"), "'age'"),
    (("--rho", "0.1", "--clip", "age=-1e308:1e308"), "'age'"),
]
_IDS = [" ".join(a) for a, _ in EXTREME]


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``parties.cli.main`` in this process: (status, stdout, stderr).  An exception escaping
    it is what the console script would print as a traceback: it fails the test."""
    from parties.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(("args", "needle"), EXTREME, ids=_IDS)
def test_extreme_privacy_parameters_cli(echo, args, needle):
    """One stderr line naming the parameter, exit status 2, never a traceback or an internal
    error; ``--json`` gives ``{"error": <that line>}`` on stdout."""
    base = ["run", "mean", "age", "--federation", str(echo.directory), *args]
    rc, out, err = run_main(base)
    lines = err.strip().splitlines()
    assert rc == 2 and out == "" and len(lines) == 1, (rc, out, err)
    assert lines[0].startswith("smpc: error: ") and needle in lines[0], lines[0]
    assert "internal error" not in lines[0] and "Traceback" not in err
    rc, out, err = run_main([*base, "--json"])
    assert rc == 2 and json.loads(out)["error"] == lines[0].removeprefix("smpc: error: ")


def test_extreme_privacy_parameters_cli_process(echo):
    """The same through the console entry point, in fresh interpreters: exit status 2, one
    line, no traceback."""
    for args, needle in (EXTREME[0], EXTREME[8]):  # epsilon 1e308, delta 1e-320
        proc = smpc_cli("run", "mean", "age", "--federation", str(echo.directory), *args,
                        "--json")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and needle in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        assert needle in json.loads(proc.stdout)["error"]


API_CASES = [
    ({"epsilon": 1e308, "delta": 1e-6}, "epsilon"), ({"epsilon": 1e-300, "delta": 1e-6},
                                                      "epsilon"),
    ({"epsilon": float("nan"), "delta": 1e-6}, "epsilon"), ({"epsilon": 1.0, "delta": 1e-320},
                                                             "delta"),
    ({"epsilon": 1.0, "delta": 1.0}, "delta"), ({"rho": 1e308}, "rho"),
    ({"rho": float("nan")}, "rho"), ({"rho": 0.1, "bounds": {"age": (0.0, float("inf"))}},
                                     "'age'"),
    ({"rho": 0.1, "bounds": {"age": (-1e308, 1e308)}}, "'age'"),
]


def test_extreme_privacy_parameters_api(echo):
    """``smpc.Federation(...).mean(..., privacy=smpc.Privacy(...))``: an InputError of one
    sentence naming the parameter, raised before anything is sent (the coordinator's wire
    capture does not grow)."""
    from parties.api import Federation, Privacy

    coordinator_wire = echo.capture / "coordinator.wire"
    fed = Federation.open(echo.directory, parties=HOSPITALS)
    try:
        before = coordinator_wire.stat().st_size
        for kwargs, needle in API_CASES:
            with pytest.raises(InputError) as err:
                fed.mean("age", privacy=Privacy(**kwargs))
            assert not isinstance(err.value, RemoteError), kwargs
            assert needle in str(err.value) and "\n" not in str(err.value), (kwargs, err.value)
        assert coordinator_wire.stat().st_size == before
    finally:
        fed.close()


PARTY_CASES = [
    ({"epsilon": 1e308, "delta": 1e-6}, "epsilon"), ({"epsilon": 0.0, "delta": 1e-6},
                                                      "epsilon"),
    ({"epsilon": float("inf"), "delta": 1e-6}, "epsilon"),
    ({"epsilon": 1.0, "delta": 1e-320}, "delta"), ({"epsilon": 1.0, "delta": float("nan")},
                                                    "delta"),
    ({"rho": 1e308}, "rho"), ({"rho": 1e-300}, "rho"), ({"rho": float("nan")}, "rho"),
    ({"rho": 0.1, "bounds": {"age": [0.0, float("inf")]}}, "'age'"),
    ({"rho": 0.1, "bounds": {"age": [3.0, 1.0]}}, "'age'"),
    ({"rho": 0.1, "bounds": {"age": [-1e300, 1e300]}}, "'age'"),
]


def test_extreme_privacy_parameters_at_the_party(echo):
    """A deviating coordinator sends hospital-a a Prepare whose (signed) spec carries an
    extreme budget or bounds: INVALID_ARGUMENT with one sentence naming the parameter, never
    INTERNAL, and the refusal is audited."""
    audit = AuditLog(echo.lay.node_dir("hospital-a") / "party.db", chain_only=True)
    for dp_doc, needle in PARTY_CASES:
        spec_doc = StatSpec("mean", ("age",)).to_json()
        spec_doc["dp"] = {"epsilon": None, "delta": None, "rho": None, "bounds": {},
                          "min_honest": None, **dp_doc}
        code, details, sid = coordinator_prepare(echo.directory, "hospital-a", spec_doc, "")
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (dp_doc, code, details)
        assert needle in details and "\n" not in details and "internal" not in details, details
        mine = [r.event for r in audit.records(limit=None)
                if r.event.get("session_id") == sid]
        assert [e["outcome"] for e in mine] == ["refused"] and needle in mine[0]["reason"]
