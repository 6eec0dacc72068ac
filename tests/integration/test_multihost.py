"""A federation across hosts: every node in its own network namespace with its own address.

The test builds its own network (:mod:`tests.integration.netns`): a switch namespace with a
bridge and one namespace per node -- the coordinator at 10.200.0.1, three hospitals at
10.200.0.11-13 and the analyst at 10.200.0.100 -- joined by veth pairs.  Nothing is added
to the root namespace.  Certificates name each node's address; ``federation.json`` lists
the nodes at those addresses.  Each node runs as ``ip netns exec NS python -m
parties.node|coordinator --config ...``; the analyst runs ``smpc run`` in its own
namespace, so every byte crosses the veth links.

It proves:

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
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from parties.federation import local as federation
from parties.pki.certs import issue_node_certificate, load_ca, save_node_credentials
from parties.pki.identity import fingerprint
from tests.tolerances import Backend, Moments, assert_within

from .conftest import write_csv
from .conftest_hardening import relax_policies
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


def _build(directory: Path, data_dir: Path, data: dict) -> None:
    """A federation whose nodes listen on their namespace addresses (certificates name them)."""
    files = []
    for h in HOSPITALS:
        path = data_dir / f"{h}.csv"
        write_csv(path, data[h])
        files.append(path)
    federation.init_federation(directory, files, min_cohort_size=5, session_timeout=60.0)
    lay = federation.Layout(directory)
    ca = load_ca(lay.ca_cert, lay.ca_key)
    doc = json.loads(lay.federation_file.read_text())
    for node in doc["nodes"]:
        ip = ADDRESSES[node["name"]]
        cert, key = issue_node_certificate(ca, node["name"], node["role"], addresses=[ip])
        d = lay.node_dir(node["name"])
        save_node_credentials(cert, key, d / "cert.pem", d / "key.pem", overwrite=True)
        node["host"], node["fingerprint"] = ip, fingerprint(cert)
        cfg = json.loads(lay.config(node["name"]).read_text())
        cfg["listen"]["host"] = ip
        lay.config(node["name"]).write_text(json.dumps(cfg, indent=2))
    lay.federation_file.write_text(json.dumps(doc, indent=2))
    relax_policies(directory)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"multi-host test skipped: {reason}")
    root = tmp_path_factory.mktemp("multihost")
    rng = np.random.default_rng(11)
    data = {h: {"x": rng.normal(40 + 5 * i, 6, 30 + 5 * i), "y": rng.normal(3, 1, 30 + 5 * i)}
            for i, h in enumerate(HOSPITALS)}
    directory = root / "federation"
    _build(directory, root, data)
    lay = federation.Layout(directory)
    (root / "logs").mkdir()
    lab = NetnsLab()
    try:
        for host, ip in ADDRESSES.items():
            lab.add_host(host, ip)
        for node in ("coordinator", *HOSPITALS):
            mod = "parties.coordinator" if node == "coordinator" else "parties.node"
            lab.start(node, [sys.executable, "-m", mod, "--config", str(lay.config(node))],
                      str(root / "logs" / f"{node}.log"))
        r = lab.run("analyst", [sys.executable, "-c", HEALTH_SCRIPT, str(directory),
                                ",".join(("coordinator", *HOSPITALS)), "90"], timeout=120)
        logs = {p.name: p.read_text()[-800:] for p in (root / "logs").iterdir()}
        assert r.returncode == 0, f"nodes did not come up: {r.stdout} {r.stderr} {logs}"
        yield lab, directory, data
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
    lab, directory, data = hosts
    pids = [p.pid for p in lab.procs]
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
            assert proc.stdout == "", proc.stdout           # no (partial) result
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
