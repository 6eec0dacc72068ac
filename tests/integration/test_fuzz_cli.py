"""Every ``smpc`` subcommand with bad arguments, and node start-up with bad configs.

Contract for every bad invocation: a non-zero exit status, no ``Traceback``, and exactly
one error line on stderr.  Errors found by argparse (missing or mistyped arguments)
print argparse's usage block and then exactly one ``error:`` line; every other error is
one line and nothing else.

* subprocess tables (``python -m parties.cli ...``, as a user runs it) for every
  subcommand: missing and mistyped arguments, NaN / infinite / negative numbers, unknown
  columns and parties, absurd bin counts, 100 kB filters, empty / garbage / missing
  files and federation directories;
* node start-up (``smpc party|coordinator|dealer start --config``, and
  ``python -m parties.node``): missing, empty, garbage and wrong-kind configs, a missing
  certificate, another node's certificate, a key that does not match, a certificate of
  another CA, missing / garbage / empty / directory data files, and a port in use -- each
  a one-line error and exit status 2 (the process does not start serving);
* hypothesis drives ``parties.cli.main`` in-process (the same code the console script
  runs) with generated argument lists for ``run``, ``predict`` and ``certs``: no
  exception may escape ``main`` (that is what prints a traceback) and stderr is one
  line.

The bugs these tests found are fixed; the tests at the bottom pin each fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parties.federation import local as federation
from parties.pki.certs import create_ca, issue_node_certificate, save_node_credentials
from smpc.linear import LinearModel

from .conftest_hardening import hardened_federation  # noqa: F401  (fixture)

ORGS = ("org-a", "org-b")
MODEL = LinearModel("linear", ("x", "y"), (0.5, -0.25), 1.0)
RUNS: list[int] = [0]  # invocations, for the report


def smpc(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    RUNS[0] += 1
    return subprocess.run([sys.executable, "-m", "parties.cli", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def module(mod: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    RUNS[0] += 1
    return subprocess.run([sys.executable, "-m", mod, *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def error_lines(rc: int, stderr: str, what: object = "") -> str:
    """Check the contract and return the one error line."""
    assert rc != 0, f"exit status 0: {what}"
    assert "Traceback" not in stderr, f"traceback: {what}\n{stderr}"
    lines = stderr.rstrip("\n").split("\n") if stderr.strip() else []
    if lines and lines[0].startswith("usage:"):  # argparse: usage block + one error line
        errs = [ln for ln in lines if ": error:" in ln]
        assert len(errs) == 1 and lines[-1] == errs[0], f"{what}: {stderr!r}"
        assert all(ln.startswith(("usage:", " ")) for ln in lines[:-1]), f"{what}: {stderr!r}"
        assert rc == 2, f"{what}: argparse exit status {rc}"
        return errs[0]
    assert len(lines) == 1 and lines[0].strip(), f"not exactly one stderr line: {what}: " \
        f"{stderr!r}"
    return lines[0]


def check_all(cases: list[tuple[tuple[str, ...], str]], runner=smpc, workers: int = 3) -> None:
    """Run every ``(args, needle)`` case (in parallel) and check each; report all failures."""
    with ThreadPoolExecutor(workers) as pool:
        procs = list(pool.map(lambda c: runner(*c[0]), cases))
    failures = []
    for (args, needle), proc in zip(cases, procs, strict=True):
        try:
            line = error_lines(proc.returncode, proc.stderr, args)
            assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
        except AssertionError as exc:
            failures.append(f"{' '.join(a[:60] for a in args)}: {exc}")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------ fixture


@pytest.fixture(scope="module")
def cfed(hardened_federation, tmp_path_factory):  # noqa: F811
    rng = np.random.default_rng(3)
    parties = {o: {"x": rng.normal(10, 3, 30), "y": rng.normal(-2, 1, 30),
                   "sex": np.where(rng.random(30) < 0.5, "F", "M")} for o in ORGS}
    parties["lab"] = {"member": np.arange(1.0, 21.0)}
    f = hardened_federation("fuzzcli", parties, models={"lab": [MODEL]}, min_cohort_size=5,
                            separate_dealer=True)
    files = tmp_path_factory.mktemp("clifiles")
    (files / "empty.csv").write_bytes(b"")
    (files / "header.csv").write_text("x,y\n")
    (files / "garbage.csv").write_bytes(bytes(range(256)) * 40)
    (files / "garbage.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 4)
    (files / "text.csv").write_text("x\n" + "abc\n" * 12)
    (files / "ok.csv").write_text("x\n" + "1\n" * 12)
    (files / "ok2.csv").write_text("x\n" + "2\n" * 12)
    (files / "fed.json").write_text("{not json")
    (files / "emptyfed").mkdir()
    (files / "model-bad.json").write_text(json.dumps({"kind": "cubic", "features": ["x"],
                                                      "coefficients": [1], "intercept": 0}))
    (files / "model-types.json").write_text(json.dumps({"kind": "linear", "features": "x",
                                                        "coefficients": "a", "intercept": []}))
    (files / "notjson.json").write_text("[[[")
    f.files = files  # type: ignore[attr-defined]
    yield f
    federation.down(f.directory)  # free the machine for the next module
    print(f"\nsmpc / node invocations: {RUNS[0]}")


# ------------------------------------------------------------------------------ run


EXTENDED = pytest.param("extended", marks=pytest.mark.slow)


@pytest.mark.parametrize("part", ["core", EXTENDED])
def test_run_bad_arguments(cfed, part):
    """``core``: every kind of bad argument once (default suite); ``extended`` (slow):
    the rest of the table -- variants of the same kinds."""
    D = str(cfed.directory)
    F = cfed.files
    fed = ("--federation", D, "--parties", *ORGS)
    deep = "(" * 60 + "x > 1" + ")" * 60
    cases = [
        (("run",), "required"),
        (("run", "mean", "--federation", D), "required"),
        (("run", "median", "x", *fed), "invalid choice"),
        (("run", "mean", "x"), "--federation"),
        (("run", "mean", "nope", *fed), "nope"),
        (("run", "mean", "x", "nope", *fed), "nope"),
        (("run", "mean", "sex", *fed), "not a number"),
        (("run", "mean", "x", "x", *fed), "twice"),
        (("run", "cov", "x", *fed), "two columns"),
        (("run", "mean", "x", "--federation", D, "--parties", "nobody", "org-a"), "nobody"),
        (("run", "mean", "x", "--federation", D, "--parties", "org-a"), "two parties"),
        (("run", "mean", "x", "--federation", D, "--parties", "org-a", "org-a"), "twice"),
        (("run", "mean", "x", *fed, "--frac-bits", "99"), "frac_bits"),
        (("run", "mean", "x", *fed, "--frac-bits", "abc"), "invalid int"),
        (("run", "mean", "x", *fed, "--ddof", "5"), "invalid choice"),
        (("run", "mean", "x", *fed, "--timeout", "abc"), "positive number of seconds"),
        (("run", "mean", "x", *fed, "--target", "y"), "linreg"),
        (("run", "linreg", "x", *fed), "target"),
        (("run", "linreg", "x", *fed, "--target", "nope"), "nope"),
        (("run", "histogram", "x", *fed), "edges"),
        (("run", "histogram", "x", *fed, "--edges", "1"), "edges"),
        (("run", "histogram", "x", *fed, "--edges", "nan", "1"), "finite"),
        (("run", "histogram", "x", *fed, "--edges", "0", "inf"), "finite"),
        (("run", "histogram", "x", *fed, "--edges", "2", "1"), "increasing"),
        (("run", "histogram", "x", *fed, "--edges", "1", "1"), "increasing"),
        (("run", "histogram", "x", *fed, "--edges", "1", "x"), "invalid float"),
        (("run", "histogram", "x", *fed, "--edges", *map(str, range(70_000))), "bins"),
        (("run", "quantiles", "x", *fed), "bounds"),
        (("run", "quantiles", "x", *fed, "--bounds", "nan", "1"), "finite"),
        (("run", "quantiles", "x", *fed, "--bounds", "1", "0"), "lo < hi"),
        (("run", "quantiles", "x", *fed, "--bounds", "0", "1", "--probs", "2"), "between 0"),
        (("run", "quantiles", "x", *fed, "--bounds", "0", "1", "--probs", "nan"), "between 0"),
        (("run", "quantiles", "x", *fed, "--bounds", "0", "1", "--resolution", "1000000000"),
         "resolution"),
        (("run", "quantiles", "x", *fed, "--bounds", "0", "1", "--resolution", "-3"),
         "resolution"),
        (("run", "mean", "x", *fed, "--where", "x >>> 1"), "position"),
        (("run", "mean", "x", *fed, "--where", deep), "deeper"),
        (("run", "mean", "x", *fed, "--where", "x" * 100_000), "long"),
        (("run", "mean", "x", *fed, "--where", "nope > 1"), "nope"),
        (("run", "mean", "x", *fed, "--where", "x > 1e9"), "cohort"),
        (("run", "mean", "x", *fed, "--where", "sex > 1"), "sex"),
        (("run", "mean", "x", *fed, "--epsilon", "nan", "--delta", "1e-6"), "epsilon"),
        (("run", "mean", "x", *fed, "--epsilon", "-1", "--delta", "1e-6"), "epsilon"),
        (("run", "mean", "x", *fed, "--epsilon", "inf", "--delta", "1e-6"), "epsilon"),
        (("run", "mean", "x", *fed, "--epsilon", "1", "--delta", "2"), "delta"),
        (("run", "mean", "x", *fed, "--rho", "0"), "rho"),
        (("run", "mean", "x", *fed, "--delta", "1e-6"), "epsilon"),
        (("run", "mean", "x", *fed, "--rho", "1", "--clip", "x=nan:1"), "x"),
        (("run", "mean", "x", *fed, "--rho", "1", "--clip", "x=1:0"), "x"),
        (("run", "mean", "x", *fed, "--rho", "1", "--clip", "bad"), "COLUMN=LO:HI"),
        (("run", "mean", "x", "--federation", "/nonexistent/fed"), "nonexistent"),
        (("run", "mean", "x", "--federation", str(F / "fed.json")), "fed.json"),
        (("run", "mean", "x", "--federation", str(F / "empty.csv")), "empty.csv"),
        (("run", "mean", "x", "--federation", str(F / "emptyfed")), "emptyfed"),
    ]
    core = cases[::2]  # every other case: each kind of error is covered
    check_all(core if part == "core" else [c for c in cases if c not in core])


def test_predict_bad_arguments(cfed):
    D = str(cfed.directory)
    p = ("predict", "--federation", D)
    owners = ("--data-owner", "org-a", "--model-owner", "lab")
    cases = [
        (("predict",), "required"),
        ((*p, "--data-owner", "org-a"), "required"),
        ((*p, "--data-owner", "nobody", "--model-owner", "lab"), "nobody"),
        ((*p, "--data-owner", "org-a", "--model-owner", "org-a"), "different"),
        ((*p, "--data-owner", "org-a", "--model-owner", "org-b"), "model"),
        ((*p, *owners, "--model", "nope"), "nope"),
        ((*p, *owners, "--backend", "plain"), "invalid choice"),
        ((*p, *owners, "--output", "encrypted-sigmoid", "--backend", "ckks"), "sigmoid"),
        ((*p, *owners, "--feature-bound", "nan"), "bound"),
        ((*p, *owners, "--feature-bound", "-1"), "bound"),
        ((*p, *owners, "--feature-bound", "inf"), "bound"),
        ((*p, *owners, "--feature-bound", "1e-300"), "bound"),
        ((*p, *owners, "--feature-bound", "x"), "invalid float"),
        ((*p, *owners, "--where", "x > 1e9"), "org-a"),
        ((*p, *owners, "--where", "y ="), "position"),
        (("predict", "--federation", "/nonexistent", *owners), "nonexistent"),
    ]
    check_all(cases)


def test_federation_commands_bad_arguments(cfed, tmp_path):
    F = cfed.files
    ok, ok2 = str(F / "ok.csv"), str(F / "ok2.csv")
    (tmp_path / "afile").write_text("x")
    init = ("federation", "init")
    cases = [
        (("federation",), "required"),
        ((*init, str(tmp_path / "f1")), "--data"),
        ((*init, str(tmp_path / "f2"), "--data", ok), "two data files"),
        ((*init, str(tmp_path / "f3"), "--data", ok, "/nonexistent.csv"), "nonexistent"),
        ((*init, str(tmp_path / "f4"), "--data", ok, str(F / "empty.csv")), "empty"),
        ((*init, str(tmp_path / "f5"), "--data", ok, str(F / "garbage.csv")), "garbage"),
        ((*init, str(tmp_path / "f6"), "--data", ok, str(F / "garbage.parquet")), "garbage"),
        ((*init, str(tmp_path / "f7"), "--data", ok, str(F / "emptyfed")), "emptyfed"),
        ((*init, str(tmp_path / "f8"), "--data", ok, ok2, "--model", "bad"), "PARTY=model"),
        ((*init, str(tmp_path / "f9"), "--data", ok, ok2, "--model", "nobody=" + ok), "nobody"),
        ((*init, str(tmp_path / "fa"), "--data", ok, ok2, "--model", "ok=/nonexistent.json"),
         "nonexistent"),
        ((*init, str(tmp_path / "fb"), "--data", ok, ok2, "--model",
          f"ok={F / 'notjson.json'}"), "JSON"),
        ((*init, str(tmp_path / "fc"), "--data", ok, ok2, "--model",
          f"ok={F / 'model-bad.json'}"), "kind"),
        ((*init, str(tmp_path / "fd"), "--data", ok, ok2, "--model",
          f"ok={F / 'model-types.json'}"), "model"),
        ((*init, str(tmp_path / "fe"), "--data", ok, ok2, "--names", "a", "a"), "distinct"),
        ((*init, str(tmp_path / "ff"), "--data", ok, ok2, "--names", "a"), "one party name"),
        ((*init, str(tmp_path / "fg"), "--data", ok, ok2, "--names", "a b", "c"), "a b"),
        ((*init, str(tmp_path / "fh"), "--data", ok, ok2, "--name", "bad name!"), "bad name"),
        ((*init, str(tmp_path / "fi"), "--data", ok, ok2, "--analyst", "ok"), "ok"),
        ((*init, str(tmp_path / "fj"), "--data", ok, ok2, "--min-cohort", "abc"),
         "invalid int"),
        ((*init, str(cfed.directory), "--data", ok, ok2), "already"),
        ((*init, str(tmp_path / "afile"), "--data", ok, ok2), "afile"),
        (("federation", "up", "/nonexistent"), "nonexistent"),
        (("federation", "up", str(F / "emptyfed")), "federation"),
        (("federation", "up", str(cfed.directory), "--timeout", "x"), "positive number of seconds"),
        (("federation", "down", "/nonexistent"), "nonexistent"),
        (("federation", "status", str(F / "emptyfed")), "federation"),
        (("federation", "status"), "required"),
        (("federation", "destroy", "x"), "invalid choice"),
    ]
    check_all(cases)


def test_certs_and_top_level_bad_arguments(cfed, tmp_path):
    ca = tmp_path / "ca"
    proc = smpc("certs", "ca", str(ca), "--federation", "fed")
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "afile").write_text("x")
    cases = [
        ((), "required"),
        (("frobnicate",), "invalid choice"),
        (("certs",), "required"),
        (("certs", "ca", str(tmp_path / "c1")), "--federation"),
        (("certs", "ca", str(tmp_path / "c2"), "--federation", "bad name!"), "bad name"),
        (("certs", "ca", str(tmp_path / "c3"), "--federation", "f", "--days", "-1"), "1 day"),
        (("certs", "ca", str(tmp_path / "c4"), "--federation", "f", "--days", "x"),
         "invalid int"),
        (("certs", "ca", str(ca), "--federation", "fed"), "existing"),
        (("certs", "ca", str(tmp_path / "afile" / "x"), "--federation", "f"), "afile"),
        (("certs", "issue", str(tmp_path / "none"), "--name", "n", "--role", "party"), "none"),
        (("certs", "issue", str(ca), "--name", "n", "--role", "king"), "invalid choice"),
        (("certs", "issue", str(ca), "--name", "bad name", "--role", "party"), "bad name"),
        (("certs", "issue", str(ca), "--name", "n", "--role", "party", "--address",
          "999.1.1.1"), "999.1.1.1"),
        (("certs", "issue", str(ca), "--name", "n", "--role", "party", "--days", "0"),
         "1 day"),
        (("certs", "issue", str(ca), "--name", "n", "--role", "party", "--days", "100000"),
         "36500 days"),
        (("certs", "issue", str(ca), "--name", "n", "--role", "party", "--out",
          str(tmp_path / "afile")), "afile"),
        (("party",), "required"),
        (("party", "start"), "--config"),
        (("coordinator", "start", "--config"), "expected one argument"),
        (("demo", "--data", "/nonexistent.csv"), "two data files"),
        (("demo", "--data", "/nonexistent.csv", "/nonexistent2.csv"), "nonexistent"),
    ]
    check_all(cases)


def test_audit_and_outputs_bad_arguments(cfed):
    """``smpc audit ...`` and ``smpc outputs read`` (present when parties.cli.audit is)."""
    import importlib.util

    if importlib.util.find_spec("parties.cli.audit") is None:
        pytest.skip("this checkout has no parties.cli.audit (smpc audit / outputs)")
    lay = federation.Layout(cfed.directory)
    F = cfed.files
    party = str(lay.config("org-a"))
    cases = [
        (("audit",), "required"),
        (("audit", "show"), "--config"),
        (("audit", "show", "--config", "/nonexistent/party.json"), "nonexistent"),
        (("audit", "show", "--config", str(F / "fed.json")), "fed.json"),
        (("audit", "show", "--config", party, "--limit", "-1"), "error"),
        (("audit", "show", "--config", party, "--limit", "nan"), "error"),
        (("audit", "show", "--config", party, "--since", "not-a-time"), "error"),
        (("audit", "verify", "--config", party, "--head", "/nonexistent/head.json"),
         "nonexistent"),
        (("audit", "verify", "--config", party, "--head", str(F / "garbage.csv")), "error"),
        (("audit", "head", "--config", str(F / "empty.csv")), "empty.csv"),
        (("audit", "budget", "--config", "/nonexistent.json"), "nonexistent"),
        (("outputs",), "required"),
        (("outputs", "read", "--config", party, "no-such-session"), "error"),
        (("outputs", "read", "--config", party, "../../../../etc/passwd"), "error"),
        (("outputs", "read", "--config", "/nonexistent.json", "x" * 32), "nonexistent"),
    ]
    check_all(cases)


# ------------------------------------------------------------------------ node start-up


def _bad_configs(cfed) -> list[tuple[str, str, str]]:
    """``(role, config path, needle)`` for broken copies of the federation's own configs."""
    lay = federation.Layout(cfed.directory)
    F = cfed.files
    rogue = create_ca(lay.federation().name)
    out: list[tuple[str, str, str]] = []

    def variant(node: str, tag: str, edit) -> str:
        doc = json.loads(lay.config(node).read_text())
        edit(doc)
        path = lay.node_dir(node) / f"config-{tag}.json"
        path.write_text(json.dumps(doc))
        return str(path)

    d = lay.node_dir("org-a")
    cert, key = issue_node_certificate(rogue, "org-a", "party")
    save_node_credentials(cert, key, d / "rogue.pem", d / "rogue.key", overwrite=True)
    (d / "empty.json").write_text("")
    (d / "garbage.json").write_bytes(b"\x00\xff{{")
    (d / "list.json").write_text("[1, 2]")
    t = "tls"
    for role, node in (("party", "org-a"), ("coordinator", "coordinator"),
                       ("dealer", "dealer")):
        other = "org-b" if node != "org-b" else "org-a"
        out += [
            (role, variant(node, "nocert", lambda c: c[t].update(cert="missing.pem")),
             "tls.cert"),
            (role, variant(node, "othercert", lambda c, o=other: c[t].update(
                cert=str(lay.node_dir(o) / "cert.pem"))), "tls.cert"),
            (role, variant(node, "otherkey", lambda c, o=other: c[t].update(
                key=str(lay.node_dir(o) / "key.pem"))), "tls.key"),
            (role, variant(node, "nokey", lambda c: c[t].update(key="missing.key")),
             "tls.key"),
            (role, variant(node, "noca", lambda c: c[t].update(ca="/nonexistent/ca.pem")),
             "tls.ca"),
            (role, variant(node, "badport", lambda c: c["listen"].update(port=70000)),
             "port"),
            (role, variant(node, "unknownfield", lambda c: c.update(colour="red")), "colour"),
            (role, str(lay.config(node)), "listen"),     # port in use: the node is running
            (role, "/nonexistent/config.json", "nonexistent"),
            (role, str(d / "empty.json"), "empty.json"),
            (role, str(d / "garbage.json"), "garbage.json"),
            (role, str(d / "list.json"), "list.json"),
        ]
    out += [
        ("party", variant("org-a", "roguecert", lambda c: c[t].update(
            cert="rogue.pem", key="rogue.key")), "tls.cert"),
        ("party", variant("org-a", "nodata", lambda c: c["data"].update(
            path="/nonexistent.csv")), "data"),
        ("party", variant("org-a", "garbagedata", lambda c: c["data"].update(
            path=str(F / "garbage.csv"))), "garbage.csv"),
        ("party", variant("org-a", "garbageparquet", lambda c: c["data"].update(
            path=str(F / "garbage.parquet"))), "garbage.parquet"),
        ("party", variant("org-a", "emptydata", lambda c: c["data"].update(
            path=str(F / "empty.csv"))), "empty.csv"),
        ("party", variant("org-a", "dirdata", lambda c: c["data"].update(
            path=str(F / "emptyfed"))), "data"),
        ("party", variant("org-a", "badformat", lambda c: c["data"].update(format="xls")),
         "data.format"),
        ("party", variant("org-a", "analyst", lambda c: c["policy"].update(
            allowed_analysts=["mallory"])), "mallory"),
        ("party", str(lay.config("coordinator")), "kind"),     # another role's config
    ]
    return out


@pytest.mark.parametrize("part", ["core", EXTENDED])
def test_node_startup_configuration_errors_are_one_line(cfed, part):
    """``smpc <role> start --config`` with a broken config: exit 2, one line, no serving.

    ``core``: every broken party config, and a missing certificate, another node's key and
    the port in use for the coordinator and the dealer; ``extended`` (slow): the other
    coordinator and dealer variants."""
    every = _bad_configs(cfed)
    core_tags = ("config-nocert", "config-otherkey", "/config.json")
    core = [c for c in every if c[0] == "party" or c[1].endswith(core_tags)]
    cases = core if part == "core" else [c for c in every if c not in core]
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda c: smpc(c[0], "start", "--config", c[1], timeout=60),
                              cases))
    failures = []
    for (role, cfg, needle), proc in zip(cases, procs, strict=True):
        try:
            line = error_lines(proc.returncode, proc.stderr, (role, cfg))
            assert proc.returncode == 2, proc.returncode
            assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
        except AssertionError as exc:
            failures.append(f"{role} {Path(cfg).name}: {exc}")
    assert not failures, "\n".join(failures)
    for n in cfed.nodes():  # the running federation was not disturbed
        assert federation.node_health(cfed.directory, n)["name"] == n


def test_node_module_entry_points_port_in_use(cfed):
    """``python -m parties.node|coordinator|dealer`` on a port already taken (by the running
    node itself): exit 2, one line naming the address."""
    lay = federation.Layout(cfed.directory)
    cases = [("parties.node", "org-b"), ("parties.coordinator", "coordinator"),
             ("parties.dealer", "dealer")]
    with ThreadPoolExecutor(3) as pool:
        procs = list(pool.map(lambda c: module(c[0], "--config", str(lay.config(c[1]))),
                              cases))
    for (mod, node), proc in zip(cases, procs, strict=True):
        port = lay.federation().node(node).port
        line = error_lines(proc.returncode, proc.stderr, mod)
        assert proc.returncode == 2 and f":{port}" in line, line


# -------------------------------------------------------------------- in-process fuzzing

NUM_TEXT = st.one_of(st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "-0", "0", "1",
                                      "-1", "1e-320", "999999999999999999999", "abc", "",
                                      "0x10", "1_000"]),
                     st.floats().map(repr), st.integers(-(10**12), 10**12).map(str))
COLS = st.sampled_from(["x", "y", "sex", "nope", "", "-x", "x y", "\u00e9", "--x"])


def _opt(name: str, values, n=1):
    return st.tuples(st.just(name), *[values] * n)


run_argv = st.tuples(
    st.just("run"), st.sampled_from(["count", "sum", "mean", "var", "std", "cov", "corr",
                                     "histogram", "quantiles", "linreg", "median"]),
    st.lists(COLS, min_size=1, max_size=3),
    st.lists(st.one_of(
        _opt("--edges", NUM_TEXT, 3), _opt("--bounds", NUM_TEXT, 2),
        _opt("--probs", NUM_TEXT, 2), _opt("--resolution", NUM_TEXT),
        _opt("--frac-bits", NUM_TEXT), _opt("--ddof", NUM_TEXT), _opt("--target", COLS),
        _opt("--where", st.one_of(st.text(max_size=20), st.sampled_from(
            ["x > 1", "sex == 'F'", "x > 'a'", "not not x < 3", "(" * 60]))),
        _opt("--epsilon", NUM_TEXT), _opt("--delta", NUM_TEXT), _opt("--rho", NUM_TEXT),
        _opt("--clip", st.builds(lambda c, a, b: f"{c}={a}:{b}", COLS, NUM_TEXT, NUM_TEXT)),
        _opt("--min-honest", NUM_TEXT), _opt("--backend", st.sampled_from(["ss", "ckks", "x"])),
        _opt("--parties", st.sampled_from(["org-a", "nobody", "lab"]), 2),
        _opt("--timeout", st.sampled_from(["5", "-1", "0", "abc"])),
    ), max_size=4))
predict_argv = st.tuples(
    st.just("predict"),
    st.lists(st.one_of(
        _opt("--data-owner", st.sampled_from(["org-a", "org-b", "lab", "nobody", ""])),
        _opt("--model-owner", st.sampled_from(["lab", "org-a", "nobody"])),
        _opt("--model", st.sampled_from(["cost", "risk", "", "../cost"])),
        _opt("--backend", st.sampled_from(["ss", "ckks", "x"])),
        _opt("--output", st.sampled_from(["prediction", "logit", "encrypted-sigmoid", "p"])),
        _opt("--feature-bound", NUM_TEXT), _opt("--where", st.text(max_size=12)),
        _opt("--timeout", st.sampled_from(["5", "-1", "abc"])),
    ), max_size=5))
certs_argv = st.tuples(
    st.just("certs"), st.sampled_from(["ca", "issue", "revoke"]),
    st.lists(st.one_of(
        _opt("--federation", st.sampled_from(["fed", "bad name", "", "a" * 70])),
        _opt("--name", st.sampled_from(["n1", "bad name", "", "-x", "a" * 70])),
        _opt("--role", st.sampled_from(["party", "analyst", "king"])),
        _opt("--address", st.sampled_from(["10.0.0.1", "::1", "999.0.0.1", "host", ""])),
        _opt("--dns", st.sampled_from(["ok.example", "bad dns", ""])),
        _opt("--days", st.one_of(st.integers(-10, 3650).map(str),
                                 st.sampled_from(["abc", "1.5", ""]))),
    ), max_size=4))


def _flatten(argv) -> list[str]:
    out: list[str] = []
    for part in argv:
        if isinstance(part, (list, tuple)):
            out += _flatten(part)
        else:
            out.append(part)
    return out


def run_main(argv: list[str]) -> tuple[int, str]:
    """``parties.cli.main(argv)`` in this process: (exit status, stderr).  An exception
    escaping ``main`` is what the console script would print as a traceback: it fails."""
    from parties.cli.main import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, err.getvalue()


IN_PROCESS = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))


@IN_PROCESS
@given(argv=st.one_of(run_argv, predict_argv))
def test_run_and_predict_arguments_in_process(cfed, argv):
    args = [*_flatten(argv), "--federation", str(cfed.directory)]
    if "--timeout" not in args:
        args += ["--timeout", "20"]
    RUNS[0] += 1
    rc, err = run_main(args)
    if rc == 0:
        assert err == "", err
    else:
        error_lines(rc, err, args)


@IN_PROCESS
@given(argv=certs_argv)
def test_certs_arguments_in_process(cfed, tmp_path_factory, argv):
    base = tmp_path_factory.mktemp("certs")
    ok = run_main(["certs", "ca", str(base / "ca"), "--federation", "fed"])
    assert ok[0] == 0, ok
    args = _flatten(argv)
    args.insert(2, str(base / "ca") if args[1] == "issue" else str(base / "new"))
    RUNS[0] += 1
    rc, err = run_main(args)
    if rc == 0:
        assert err == "", err
    else:
        error_lines(rc, err, args)


# ------------------------------------------------------------- regressions of fixed bugs


@pytest.mark.parametrize("which", ["ca", "issue"])
def test_certs_days_overflow_is_one_line(tmp_path, which):
    if which == "ca":
        proc = smpc("certs", "ca", str(tmp_path / "ca"), "--federation", "f", "--days",
                    "1000000000")
    else:
        assert smpc("certs", "ca", str(tmp_path / "ca"), "--federation", "f").returncode == 0
        proc = smpc("certs", "issue", str(tmp_path / "ca"), "--name", "n", "--role", "party",
                    "--days", "100000000")
    error_lines(proc.returncode, proc.stderr, which)


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_timeout_is_a_usage_error(cfed, value):
    proc = smpc("run", "count", "x", "--federation", str(cfed.directory), "--parties", *ORGS,
                "--timeout", value)
    line = error_lines(proc.returncode, proc.stderr, value)
    assert "timeout" in line.lower() and "deadline" not in line.lower(), line


def test_certs_issue_refuses_invalid_dns_names(tmp_path):
    assert smpc("certs", "ca", str(tmp_path / "ca"), "--federation", "f").returncode == 0
    proc = smpc("certs", "issue", str(tmp_path / "ca"), "--name", "n", "--role", "party",
                "--dns", "bad dns!")
    line = error_lines(proc.returncode, proc.stderr, "--dns 'bad dns!'")
    assert "bad dns" in line, line
