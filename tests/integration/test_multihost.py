"""A federation across hosts: every node in its own network namespace with its own address.

The test builds its own network (:mod:`tests.integration.netns`): a switch namespace with a
bridge and one namespace per node -- the coordinator at 10.200.0.1, three hospitals at
10.200.0.11-13 and the analyst at 10.200.0.100 -- joined by veth pairs.  Nothing is added
to the root namespace.

The federation is set up the way the README's multi-host path says, with certificate
requests only: the CA operator makes the CA (``smpc certs ca``); each node -- and the analyst --
makes its own key and request **in its own namespace and directory** (``smpc certs request``,
naming its address); only the requests are copied to the CA, which signs them (``smpc certs
sign``); the federation config is assembled from the certificates (``smpc federation pin``);
only certificates, the CA certificate and the federation config are copied back.  Each node
runs as ``ip netns exec NS python -m parties.node|coordinator --config ...`` from its own
directory; the analyst runs ``smpc run`` in its own namespace, so every byte crosses the veth
links.

It proves:

0. no file anywhere holds a private key but its owner's (the CA directory only the CA's);
1. statistics on both backends across the hosts match numpy;
2. with hospital-b's link cut (``ip link set DEV down`` on the switch side), a computation
   fails cleanly -- a one-line error naming hospital-b, no result -- within its deadline,
   and the other nodes free their session state;
3. after the link is restored, the federation serves correct results again (same node
   processes, no restart).

Skipped, with the reason, where namespaces are not available (not root, no ``ip``,
creation refused).  Namespaces and processes are removed whatever happens.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization

from parties.cli.main import main as smpc
from parties.config import (
    CoordinatorConfig,
    DataSourceConfig,
    PartyConfig,
    PolicyConfig,
    TLSFiles,
    load_federation,
    save_config,
)
from parties.pki.certs import load_certificate
from tests.tolerances import Backend, Moments, assert_within

from .conftest import write_csv
from .netns import NetnsLab, unavailable_reason

pytestmark = pytest.mark.slow

HOSPITALS = ("hospital-a", "hospital-b", "hospital-c")
ADDRESSES = {"coordinator": "10.200.0.1", "hospital-a": "10.200.0.11",
             "hospital-b": "10.200.0.12", "hospital-c": "10.200.0.13",
             "analyst": "10.200.0.100"}
DEADLINE = 10.0  # seconds: the computation's timeout while a link is cut

HEALTH_SCRIPT = """
import sys, time
from parties.federation import local as federation
d, names, limit = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
end = time.monotonic() + limit
pending = list(names)
while pending and time.monotonic() < end:
    try:
        federation.node_health(d, pending[0], timeout=1.0)
        pending.pop(0)
    except Exception:
        time.sleep(0.2)
print("pending:" + ",".join(pending))
sys.exit(1 if pending else 0)
"""

STATUS_SCRIPT = """
import json, sys
from parties.federation import local as federation
d = sys.argv[1]
print(json.dumps({n: federation.node_health(d, n)["active_sessions"] for n in sys.argv[2:]}))
"""


FEDERATION = "multihost"
PORT = 50051
NODES = {"coordinator": "coordinator", **{h: "party" for h in HOSPITALS}}


def _in_each_namespace(lab: NetnsLab, argvs: dict[str, list[str]]) -> None:
    """Run one command in each host's namespace, at once; each must succeed."""
    procs = {h: subprocess.Popen(lab.command(h, argv), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
             for h, argv in argvs.items()}
    for h, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{h}: {out.decode(errors='replace')}"


def _build(lab: NetnsLab, root: Path, data: dict) -> Path:
    """The README's multi-host path (see the module docstring); returns the analyst's
    directory.  Host ``h`` keeps everything in ``root/hosts/h``; the CA operator in
    ``root/ca-host``; "copying" is copying a public file between those directories."""
    ca_host, hosts = root / "ca-host", root / "hosts"
    assert smpc(["certs", "ca", str(ca_host / "ca"), "--federation", FEDERATION]) == 0
    own = {h: hosts / h / ("analyst" if h == "analyst" else "node") for h in ADDRESSES}
    _in_each_namespace(lab, {h: [sys.executable, "-m", "parties.cli", "certs", "request",
                                 "--name", h, "--role", NODES.get(h, "analyst"),
                                 "--federation", FEDERATION, "--address", ADDRESSES[h],
                                 "--out", str(own[h])] for h in ADDRESSES})
    (ca_host / "requests").mkdir()
    fed_file = ca_host / "federation.json"
    for h in ADDRESSES:                                    # requests go to the CA ...
        csr = ca_host / "requests" / f"{h}.csr"
        shutil.copy(own[h] / f"{h}.csr", csr)
        assert smpc(["certs", "sign", "--ca-dir", str(ca_host / "ca"), "--csr", str(csr),
                     "--role", NODES.get(h, "analyst")]) == 0
        pin = ["federation", "pin", str(fed_file), "--cert", str(csr.with_suffix(".pem")),
               "--ca-cert", str(ca_host / "ca" / "ca.pem")]
        if h != "analyst":
            pin += ["--host", ADDRESSES[h], "--port", str(PORT)]
        assert smpc(pin) == 0
    for h in ADDRESSES:                                    # ... certificates come back
        shutil.copy(ca_host / "requests" / f"{h}.pem", own[h] / "cert.pem")
        (hosts / h / "ca").mkdir()
        shutil.copy(ca_host / "ca" / "ca.pem", hosts / h / "ca" / "ca.pem")
        shutil.copy(fed_file, hosts / h / "federation.json")
    for h, role in NODES.items():                          # each operator writes its config
        d = hosts / h
        fed = load_federation(d / "federation.json")
        common = dict(name=h, host=ADDRESSES[h], port=PORT, federation=fed,
                      federation_path=d / "federation.json",
                      tls=TLSFiles(own[h] / "cert.pem", own[h] / "key.pem", d / "ca" / "ca.pem"))
        if role == "coordinator":
            cfg: PartyConfig | CoordinatorConfig = CoordinatorConfig(
                database=d / "coordinator.db", session_timeout=60.0, **common)
        else:
            write_csv(d / "data.csv", data[h])
            cfg = PartyConfig(data=DataSourceConfig(d / "data.csv", "csv"),
                              policy=PolicyConfig(allowed_columns=["x", "y"],
                                                  allowed_analysts=["analyst"],
                                                  min_cohort_size=5, require_dp=False),
                              database=d / "party.db", **common)
        save_config(cfg, d / "config.json")
    return hosts / "analyst"


def _private_keys(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` holding a PEM private key -> its public key (DER)."""
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and b"PRIVATE KEY" in p.read_bytes():
            key = serialization.load_pem_private_key(p.read_bytes(), password=None)
            out[p] = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return out


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"multi-host test skipped: {reason}")
    root = tmp_path_factory.mktemp("multihost")
    rng = np.random.default_rng(11)
    data = {h: {"x": rng.normal(40 + 5 * i, 6, 30 + 5 * i), "y": rng.normal(3, 1, 30 + 5 * i)}
            for i, h in enumerate(HOSPITALS)}
    (root / "logs").mkdir()
    lab = NetnsLab()
    try:
        for host, ip in ADDRESSES.items():
            lab.add_host(host, ip)
        directory = _build(lab, root, data)
        for node, role in NODES.items():
            mod = "parties.coordinator" if role == "coordinator" else "parties.node"
            d = root / "hosts" / node
            lab.start(node, [sys.executable, "-m", mod, "--config", str(d / "config.json")],
                      str(root / "logs" / f"{node}.log"), cwd=str(d))
        r = lab.run("analyst", [sys.executable, "-c", HEALTH_SCRIPT, str(directory),
                                ",".join(("coordinator", *HOSPITALS)), "90"], timeout=120)
        logs = {p.name: p.read_text()[-800:] for p in (root / "logs").iterdir()}
        assert r.returncode == 0, f"nodes did not come up: {r.stdout} {r.stderr} {logs}"
        yield lab, directory, data, root
    finally:
        lab.close()


def smpc_in(lab: NetnsLab, host: str, *args: str, timeout: float = 120):
    return lab.run(host, [sys.executable, "-m", "parties.cli", *args], timeout=timeout)


def run_stat(lab, directory, *args, timeout_s: float = 60.0):
    t0 = time.monotonic()
    proc = smpc_in(lab, "analyst", "run", *args, "--federation", str(directory), "--json",
                   "--timeout", str(timeout_s), timeout=timeout_s + 60)
    return proc, time.monotonic() - t0


def pooled(data, cols):
    return np.vstack([np.column_stack([data[h][c] for c in cols]) for h in HOSPITALS])


def check_mean(lab, directory, data, backend):
    proc, _ = run_stat(lab, directory, "mean", "x", "y", "--backend", backend)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)["value"]
    X = pooled(data, ("x", "y"))
    # the encoding (ss) or release (ckks, 6 sigma) bound over N: tests.tolerances
    assert_within(got, X.mean(axis=0), Moments(X, Backend(backend, len(HOSPITALS))).mean_tol)


def sessions(lab, directory, names):
    r = lab.run("analyst", [sys.executable, "-c", STATUS_SCRIPT, str(directory), *names],
                timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_computations_across_namespaces_survive_a_cut_link(hosts):
    lab, directory, data, root = hosts
    pids = [p.pid for p in lab.procs]
    # 0. keys were born where they live: each key file is its owner's, beside its certificate
    keys = _private_keys(root)
    ca_key = root / "ca-host" / "ca" / "ca.key"
    assert keys.pop(ca_key) == load_certificate(ca_key.with_name("ca.pem")).public_key(
        ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert sorted(keys) == sorted(root / "hosts" / h / ("analyst" if h == "analyst" else "node")
                                  / "key.pem" for h in ADDRESSES)
    for path, public in keys.items():
        assert public == load_certificate(path.with_name("cert.pem")).public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    # 1. across the hosts, both backends
    for backend in ("ss", "ckks"):
        check_mean(lab, directory, data, backend)
    proc, _ = run_stat(lab, directory, "var", "x")
    assert proc.returncode == 0, proc.stderr
    X = pooled(data, ("x",))
    assert_within(json.loads(proc.stdout)["value"], X.var(axis=0, ddof=1),
                  Moments(X, Backend("ss", len(HOSPITALS))).var_tol)

    # 2. cut hospital-b's link: a clean, named failure within the deadline
    lab.set_link("hospital-b", up=False)
    try:
        for backend in ("ss", "ckks"):
            proc, seconds = run_stat(lab, directory, "mean", "x", "--backend", backend,
                                     timeout_s=DEADLINE)
            assert proc.returncode != 0, proc.stdout
            assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
            assert "hospital-b" in proc.stderr, proc.stderr
            # no (partial) result: with --json the error alone, as {"error", "code", "node",
            # "declined"} (a failure, not a decline: nobody declined)
            out = json.loads(proc.stdout)
            assert set(out) == {"error", "code", "node", "declined"}, out
            assert out["node"] == "hospital-b" and out["declined"] == {}, out
            assert seconds < DEADLINE + 15, seconds          # deadline + CLI start-up
        left = {}
        for _ in range(40):  # bounded: the reachable nodes free the aborted sessions
            left = sessions(lab, directory, ["coordinator", "hospital-a", "hospital-c"])
            if not any(left.values()):
                break
            time.sleep(0.5)
        assert not any(left.values()), left
    finally:
        lab.set_link("hospital-b", up=True)

    # 3. restored: correct again, with the same processes
    ok = False
    for _attempt in range(5):  # bounded: channels reconnect within about a second
        proc, _ = run_stat(lab, directory, "mean", "x", "y")
        if proc.returncode == 0:
            ok = True
            break
        time.sleep(1.0)
    assert ok, proc.stderr
    for backend in ("ss", "ckks"):
        check_mean(lab, directory, data, backend)
    assert all(p.poll() is None for p in lab.procs), "a node process died"
    assert [p.pid for p in lab.procs] == pids
    assert not any(sessions(lab, directory, ["coordinator", *HOSPITALS]).values())
