"""Create, start and stop a local federation: every node a background process on 127.0.0.1.

::

    from parties import federation
    lay = federation.init_federation("fed", ["a.csv", "b.csv", "c.csv"],
                                     models={"c": "model.json"})
    federation.up("fed")          # returns once every node answers a health check
    ...                           # parties.analyst.client.Client("fed")
    federation.down("fed")

    with federation.local_federation(["a.csv", "b.csv"]) as lay:   # temporary, for demos
        ...

Layout of a federation directory (:class:`Layout`)::

    DIR/federation.json            the allow-list: nodes (pinned certificate fingerprints),
                                   analysts, the CA certificate
    DIR/ca/ca.pem, ca.key          the federation CA (key 0600; keep it offline in production)
    DIR/analyst/cert.pem, key.pem  the analyst identity (key 0600)
    DIR/nodes/<name>/config.json   one config per node (party / coordinator / dealer)
    DIR/nodes/<name>/cert.pem, key.pem
    DIR/nodes/<party>/party.db     the party's ledger and audit log (SQLite, metadata only,
                                   0600); party.db.audit-key: the audit log's MAC key (0600)
    DIR/nodes/<party>/atrest.key   the party's AES-256-GCM key for the files below (0600)
    DIR/nodes/<party>/models/      models it owns (<name>.json.enc, encrypted, 0600)
    DIR/nodes/<party>/outputs/     predictions it receives as a data owner
                                   (<session>.csv.enc, encrypted, 0600)
    DIR/logs/<name>.log            each node's log (never values, shares, keys or seeds)
    DIR/run/<name>.pid             pid of each running node

Party names are derived from the data file stems (lower-cased, characters
other than letters, digits, '.' and '-' replaced by '-', duplicates
suffixed).  Each party's policy allows every column of its file, the
federation's analyst, ``min_cohort_size`` rows at least, and a budget of
(``epsilon``, ``delta``) = (1, 1e-6) per analyst by default; it answers only
differentially private statistics (``"require_dp": true``) unless the party
is named in ``allow_exact`` (``True``: every party) -- an explicit opt-in to
exact answers, which then come with the safeguards of
:mod:`parties.privacy.exact` (small cells suppressed, quantile extremes
refused, differencing pairs refused; ``exact_safeguards`` tunes them).  A
production policy should also set clipping ``bounds``.
Models: a model whose owner is named in ``allow_exact`` is written with
:meth:`ModelPolicy.exact` (``policy.models.<name>``: exact predictions, no
practical limits, a visible opt-out of the model protections); every other
model gets the safe defaults (noisy predictions, a row budget, plausibility
checks; SECURITY.md, "Model owners' policy").
Data files are
referenced where they are (absolute paths), not copied; model files are
copied into the owner's ``models/``.

Every problem raises :class:`FederationError` (an ``InputError``) with one
sentence; a node that does not come up is named, with the tail of its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from parties._pb import smpc_pb2 as pb
from parties._pb import smpc_pb2_grpc as pb_grpc
from parties.config import (
    DEFAULT_ENGINE,
    EXACT_FIELDS,
    FILE_ENGINES,
    LIMIT_FIELDS,
    AnalystEntry,
    CoordinatorConfig,
    DataSourceConfig,
    DealerConfig,
    FederationConfig,
    ModelPolicy,
    NodeEntry,
    PartyConfig,
    PolicyConfig,
    TLSFiles,
    save_config,
)
from parties.config.layout import Layout
from parties.data.open import open_table
from parties.data.sources import Table, infer_format
from parties.pki.certs import create_ca, issue_node_certificate, save_ca, save_node_credentials
from parties.pki.identity import fingerprint, validate_name
from parties.privacy import atrest
from parties.privacy.outputs import write_model
from parties.transport import wire
from parties.transport.pinning import ChannelRefused, PinnedChannels
from smpc.errors import InputError
from smpc.linear import LinearModel

__all__ = [
    "FederationError",
    "Layout",
    "NodeProcess",
    "down",
    "free_ports",
    "init_federation",
    "local_federation",
    "node_health",
    "party_name",
    "running",
    "start_node",
    "status",
    "stop_node",
    "up",
]

COORDINATOR = "coordinator"
DEALER = "dealer"
MODULES = {"party": "parties.node", "coordinator": "parties.coordinator",
           "dealer": "parties.dealer"}
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
ModelFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class FederationError(InputError):
    """A federation directory cannot be created, started or stopped as asked."""


# ------------------------------------------------------------------------------ init


def party_name(path: str | os.PathLike[str]) -> str:
    """A valid node name from a file stem: 'Hospital A.csv' -> 'hospital-a'."""
    stem = Path(path).stem.lower()
    name = re.sub(r"[^a-z0-9.-]+", "-", stem).strip(".-")[:63].strip(".-")
    return name or "party"


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct ports that were free on ``host`` a moment ago."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _unique_names(files: Sequence[Path], names: Sequence[str] | None) -> list[str]:
    if names is not None:
        if len(names) != len(files):
            raise FederationError("give one party name per data file")
        out = [validate_name(n, "party name") for n in names]
    else:
        out = []
        for f in files:
            base, k = party_name(f), 2
            name = base
            while name in out or name in (COORDINATOR, DEALER):
                name = f"{base[:60]}-{k}"
                k += 1
            out.append(name)
    if len(set(out)) != len(out) or set(out) & {COORDINATOR, DEALER}:
        raise FederationError("party names must be distinct and not 'coordinator' or 'dealer'")
    return out


def _columns(path: Path, engine: str) -> list[str]:
    """The column names of a party's file, read by its engine (DuckDB: nothing else read)."""
    table = open_table(DataSourceConfig(path, infer_format(path), engine=engine))
    try:
        return list(table.columns)
    finally:
        if not isinstance(table, Table):
            table.close()


def init_federation(
    directory: str | os.PathLike[str],
    data_files: Sequence[str | os.PathLike[str]],
    *,
    models: Mapping[str, ModelFiles] | None = None,
    names: Sequence[str] | None = None,
    federation_name: str = "smpc-local",
    analyst: str = "analyst",
    host: str = "127.0.0.1",
    min_cohort_size: int = 10,
    require_dp: bool | None = None,
    epsilon: float = 1.0,
    delta: float = 1e-6,
    session_timeout: float = 120.0,
    separate_dealer: bool = False,
    overwrite: bool = False,
    limits: Mapping[str, Any] | None = None,
    allow_exact: bool | Sequence[str] = False,
    exact_safeguards: Mapping[str, Any] | None = None,
    engine: str | Mapping[str, str] = DEFAULT_ENGINE,
) -> Layout:
    """Create a federation in ``directory``: CA, certificates, configs, free ports.

    One party per data file (CSV or Parquet; names from the file stems unless
    ``names``), a coordinator (the dealer, unless ``separate_dealer``), and
    one analyst identity.  ``models`` maps a party name to the model JSON
    file(s) it owns (one path or a list; each model is named after its file
    stem).  Private keys are written 0600.  Refuses to reuse a directory
    that already holds a federation unless ``overwrite``.  ``limits`` sets the
    parties' request limits (policy fields ``max_released_values``,
    ``max_inference_rows``, ``max_session_cpu_seconds``, ``max_request_memory_mb``;
    the others keep their defaults).

    Every party's policy requires differential privacy unless ``allow_exact`` names it
    (``True``: every party): exact answers are an explicit opt-in.  ``exact_safeguards`` sets
    the exact-mode policy fields (``min_cell_size``, ``exact_quantile_margin``,
    ``exact_history``; :mod:`parties.privacy.exact`).  ``engine`` is every party's local engine
    (``memory`` or ``duckdb``: :class:`~parties.config.DataSourceConfig`), or a party name ->
    engine mapping (the others: ``memory``).  ``require_dp`` is
    the former switch:
    ``True`` is the default, ``False`` means ``allow_exact=True``.  Returns the
    :class:`Layout`; nothing is started (see :func:`up`).
    """
    lay = Layout(directory)
    if lay.federation_file.exists() and not overwrite:
        raise FederationError(f"{lay.directory} already holds a federation "
                              "(pass overwrite=True to replace it)")
    files = [Path(f).resolve() for f in data_files]
    if len(files) < 2:
        raise FederationError("a federation needs at least two data files (one per party)")
    for f in files:
        if not f.is_file():
            raise FederationError(f"data file {f} not found")
    unknown = sorted(set(limits or {}) - set(LIMIT_FIELDS))
    if unknown:
        raise FederationError(f"unknown limit(s) {', '.join(unknown)} (limits: "
                              f"{', '.join(LIMIT_FIELDS)})")
    unknown = sorted(set(exact_safeguards or {}) - set(EXACT_FIELDS))
    if unknown:
        raise FederationError(f"unknown exact safeguard(s) {', '.join(unknown)} (safeguards: "
                              f"{', '.join(EXACT_FIELDS)})")
    party_names = _unique_names(files, names)
    exact_parties = _exact_parties(allow_exact, require_dp, party_names)
    engines = ({n: engine.get(n, DEFAULT_ENGINE) for n in party_names}
               if isinstance(engine, Mapping) else dict.fromkeys(party_names, engine))
    for chosen in engines.values():
        if chosen not in FILE_ENGINES:
            raise FederationError(f"unknown engine {chosen!r} for a party's file (engines: "
                                  f"{', '.join(FILE_ENGINES)}; a database or Spark party is "
                                  "set in its config's data section)")
    columns = {n: _columns(f, engines[n]) for n, f in zip(party_names, files, strict=True)}
    validate_name(federation_name, "federation name")
    validate_name(analyst, "analyst name")
    if analyst in party_names or analyst in (COORDINATOR, DEALER):
        raise FederationError(f"the analyst name {analyst!r} is already a node name")
    model_docs: list[tuple[str, str, LinearModel]] = []
    for owner, paths in (models or {}).items():
        if owner not in party_names:
            raise FederationError(f"model owner {owner!r} is not a party "
                                  f"(parties: {', '.join(party_names)})")
        for mpath in [paths] if isinstance(paths, (str, os.PathLike)) else list(paths):
            try:
                model = LinearModel.from_json(json.loads(Path(mpath).read_text()))
            except FileNotFoundError:
                raise FederationError(f"model file {mpath} not found") from None
            except json.JSONDecodeError as exc:
                raise FederationError(f"model file {mpath} is not valid JSON: {exc}") from None
            mname = party_name(mpath)
            if any(o == owner and n == mname for o, n, _m in model_docs):
                raise FederationError(f"{owner} would get two models named {mname!r}")
            model_docs.append((owner, mname, model))

    if overwrite and lay.directory.exists():
        for sub in ("ca", "analyst", "nodes", "run"):
            shutil.rmtree(lay.directory / sub, ignore_errors=True)
    for sub in ("ca", "analyst", "nodes", "logs", "run"):
        (lay.directory / sub).mkdir(parents=True, exist_ok=True)
    (lay.directory / "ca").chmod(0o700)
    (lay.directory / "analyst").chmod(0o700)

    ca = create_ca(federation_name)
    save_ca(ca, lay.ca_cert, lay.ca_key, overwrite=True)
    roles = [(COORDINATOR, "coordinator")]
    if separate_dealer:
        roles.append((DEALER, "dealer"))
    roles += [(n, "party") for n in party_names]
    ports = free_ports(len(roles), host)
    entries = []
    for (name, role), port in zip(roles, ports, strict=True):
        d = lay.node_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o700)
        addresses = [host] if _is_ip(host) else []
        dns = [] if _is_ip(host) else [host]
        cert, key = issue_node_certificate(ca, name, role, addresses=addresses, dns_names=dns)
        save_node_credentials(cert, key, d / "cert.pem", d / "key.pem", overwrite=True)
        entries.append(NodeEntry(name, role, host, port, fingerprint(cert)))
    a_cert, a_key = issue_node_certificate(ca, analyst, "analyst")
    save_node_credentials(a_cert, a_key, lay.analyst_cert, lay.analyst_key, overwrite=True)
    fed = FederationConfig(federation_name, lay.ca_cert, entries,
                           [AnalystEntry(analyst, fingerprint(a_cert))])
    save_config(fed, lay.federation_file)

    def tls(name: str) -> TLSFiles:
        d = lay.node_dir(name)
        return TLSFiles(d / "cert.pem", d / "key.pem", lay.ca_cert)

    for e in entries:
        common: dict[str, Any] = dict(
            name=e.name, host=e.host, port=e.port, tls=tls(e.name), federation=fed,
            federation_path=lay.federation_file)
        if e.role == "coordinator":
            cfg: PartyConfig | CoordinatorConfig | DealerConfig = CoordinatorConfig(
                database=lay.node_dir(e.name) / "coordinator.db",
                dealer=DEALER if separate_dealer else None,
                session_timeout=float(session_timeout), **common)
        elif e.role == "dealer":
            cfg = DealerConfig(**common)
        else:
            f = files[party_names.index(e.name)]
            key_file = lay.at_rest_key(e.name)
            atrest.create_key_file(key_file, overwrite=True)
            cfg = PartyConfig(
                data=DataSourceConfig(f, infer_format(f), engine=engines[e.name]),
                policy=PolicyConfig(allowed_columns=columns[e.name],
                                    allowed_analysts=[analyst],
                                    min_cohort_size=int(min_cohort_size),
                                    epsilon=float(epsilon), delta=float(delta),
                                    require_dp=e.name not in exact_parties,
                                    **dict(limits or {}), **dict(exact_safeguards or {}),
                                    models={} if e.name not in exact_parties else {
                                        n: ModelPolicy.exact() for o, n, _m in model_docs
                                        if o == e.name}),
                database=lay.node_dir(e.name) / "party.db", at_rest_key=key_file, **common)
            lay.models(e.name).mkdir(mode=0o700, exist_ok=True)
            lay.outputs(e.name).mkdir(mode=0o700, exist_ok=True)
        save_config(cfg, lay.config(e.name))
    for owner, mname, model in model_docs:  # the weights are the owner's secret: encrypted
        write_model(lay.models(owner), owner, mname, model,
                            atrest.load_key_file(lay.at_rest_key(owner)))
    return lay


def _exact_parties(allow_exact: bool | Sequence[str], require_dp: bool | None,
                   party_names: Sequence[str]) -> set[str]:
    """The parties whose policy answers exact statistics (the opt-in of :func:`init_federation`)."""
    if require_dp is False:  # the former switch: exact answers everywhere
        if allow_exact not in (False, True):
            raise FederationError("give allow_exact or require_dp=False, not both")
        allow_exact = True
    if isinstance(allow_exact, bool):
        if allow_exact and require_dp:
            raise FederationError("require_dp=True contradicts allow_exact")
        return set(party_names) if allow_exact else set()
    if isinstance(allow_exact, str):
        allow_exact = [allow_exact]
    chosen = set(allow_exact)
    unknown = sorted(chosen - set(party_names))
    if unknown:
        raise FederationError(f"allow_exact names {', '.join(unknown)}, not a party "
                              f"(parties: {', '.join(party_names)})")
    if chosen and require_dp:
        raise FederationError("require_dp=True contradicts allow_exact")
    return chosen


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class NodeProcess:
    """A node of a federation directory and its process (``pid`` None if not running)."""

    name: str
    role: str
    address: str
    pid: int | None
    alive: bool
    log: Path


def _read_pid(lay: Layout, name: str) -> int | None:
    try:
        return int(lay.pid_file(name).read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int, config: Path | None = None) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
        if config is not None:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if str(config).encode() not in cmd:
                return False  # the pid was reused by another process
        return True
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def status(directory: str | os.PathLike[str]) -> list[NodeProcess]:
    """Every node of the federation and whether its recorded process is alive."""
    lay = Layout(directory)
    out = []
    for n in lay.nodes():
        pid = _read_pid(lay, n.name)
        alive = pid is not None and _alive(pid, lay.config(n.name))
        out.append(NodeProcess(n.name, n.role, n.address, pid if alive else None, alive,
                               lay.log(n.name)))
    return out


def _spawn(lay: Layout, node: NodeEntry, env: Mapping[str, str] | None,
           python_args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    lay.log(node.name).parent.mkdir(parents=True, exist_ok=True)
    lay.pid_file(node.name).parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    cmd = [sys.executable, *(python_args or ["-m", MODULES[node.role]]), "--config",
           str(lay.config(node.name))]
    with open(lay.log(node.name), "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=full_env, start_new_session=True, cwd=str(lay.directory))
    _CHILDREN[proc.pid] = proc
    lay.pid_file(node.name).write_text(f"{proc.pid}\n")
    return proc


def _health_channels(lay: Layout) -> PinnedChannels:
    """Channels as the directory's analyst, each trusting only its node's pinned certificate."""
    return PinnedChannels(lay.federation(),
                          TLSFiles(lay.analyst_cert, lay.analyst_key, lay.ca_cert),
                          wire.grpc_options())


def _health(channels: PinnedChannels, name: str, timeout: float) -> pb.HealthResponse:
    try:
        return pb_grpc.NodeStub(channels.channel(name)).Health(pb.HealthRequest(),
                                                                timeout=timeout)
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNAVAILABLE:
            channels.forget(name)  # a node still starting: check its certificate next time
        raise


def _wait_healthy(lay: Layout, nodes: Sequence[NodeEntry], timeout: float) -> None:
    end = time.monotonic() + timeout
    pending = list(nodes)
    channels = _health_channels(lay)
    last = ""
    try:
        while pending:
            node = pending[0]
            pid = _read_pid(lay, node.name)
            if pid is not None and not _alive(pid):
                raise FederationError(
                    f"node {node.name} exited during start-up: {_tail(lay.log(node.name))}")
            try:
                _health(channels, node.name, 1.0)
                pending.pop(0)
                continue
            except grpc.RpcError as err:
                last = err.details() or err.code().name
                if isinstance(err, ChannelRefused) and err.certificate_refused:
                    raise FederationError(f"node {node.name} refused: {last}") from None
            if time.monotonic() > end:
                raise FederationError(
                    f"node {node.name} did not answer a health check within {timeout:g} s "
                    f"({last}): {_tail(lay.log(node.name))}")
            time.sleep(0.1)
    finally:
        channels.close()


def node_health(directory: str | os.PathLike[str], name: str, timeout: float = 2.0
                ) -> dict[str, object]:
    """One node's ``Health`` answer, asked with the analyst identity of the directory.

    ``{"name", "role", "active_sessions", "running_sessions"}``; raises
    :class:`FederationError` if the node does not answer.
    """
    lay = Layout(directory)
    lay.federation().node(name)
    channels = _health_channels(lay)
    try:
        h = _health(channels, name, timeout)
    except grpc.RpcError as err:
        detail = f" ({err.details()})" if isinstance(err, ChannelRefused) else ""
        raise FederationError(
            f"node {name} does not answer: {err.code().name}{detail}") from None
    finally:
        channels.close()
    return {"name": h.name, "role": h.role, "active_sessions": h.active_sessions,
            "running_sessions": h.running_sessions}


def up(
    directory: str | os.PathLike[str], timeout: float = 60.0, *,
    env: Mapping[str, str] | None = None, nodes: Sequence[str] | None = None,
) -> list[str]:
    """Start every node of the federation (or ``nodes``) that is not already running.

    Each runs as ``python -m parties.<node|coordinator|dealer> --config ...``
    in the background, logging to ``logs/<name>.log``, its pid in
    ``run/<name>.pid``.  Returns the names started, once every node answers a
    health check over mutual TLS; otherwise stops what it started and raises
    :class:`FederationError` naming the node, with the tail of its log.
    ``env`` adds environment variables for the node processes.
    """
    lay = Layout(directory)
    wanted = lay.nodes()
    if nodes is not None:
        unknown = set(nodes) - {n.name for n in wanted}
        if unknown:
            raise FederationError(f"no node {', '.join(sorted(unknown))} in the federation")
        wanted = [n for n in wanted if n.name in set(nodes)]
    started = []
    for n in wanted:
        pid = _read_pid(lay, n.name)
        if pid is not None and _alive(pid, lay.config(n.name)):
            continue
        _spawn(lay, n, env)
        started.append(n)
    try:
        _wait_healthy(lay, wanted, timeout)
    except BaseException:
        for n in started:
            stop_node(lay.directory, n.name, timeout=2.0)
        raise
    return [n.name for n in started]


def start_node(directory: str | os.PathLike[str], name: str, timeout: float = 60.0, *,
               env: Mapping[str, str] | None = None,
               python_args: Sequence[str] = ()) -> int:
    """Start one node (if not running) and wait for its health check; returns its pid.

    ``python_args`` replaces ``-m parties.<module>`` (e.g. ``["-c", code]``
    for fault-injection tests); ``--config FILE`` is appended either way.
    """
    lay = Layout(directory)
    node = lay.federation().node(name)
    pid = _read_pid(lay, name)
    if pid is not None and _alive(pid, lay.config(name)):
        return pid
    proc = _spawn(lay, node, env, python_args)
    try:
        _wait_healthy(lay, [node], timeout)
    except BaseException:
        stop_node(lay.directory, name, timeout=2.0)
        raise
    return proc.pid


def _terminate(lay: Layout, names: Sequence[str], timeout: float, kill: bool) -> list[str]:
    """Signal every running node of ``names`` at once, wait, SIGKILL stragglers."""
    signalled: dict[str, int] = {}
    for name in names:
        pid = _read_pid(lay, name)
        if pid is not None and _alive(pid, lay.config(name)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
            signalled[name] = pid
    end = time.monotonic() + timeout
    for pid in signalled.values():
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5.0)
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            lay.pid_file(name).unlink()
    return list(signalled)


def stop_node(directory: str | os.PathLike[str], name: str, timeout: float = 10.0,
              kill: bool = False) -> bool:
    """Stop one node: SIGTERM (SIGKILL at once if ``kill``), SIGKILL after ``timeout``.

    Returns True if a running process was stopped.  Removes its pid file.
    """
    return bool(_terminate(Layout(directory), [name], timeout, kill))


def down(directory: str | os.PathLike[str], timeout: float = 10.0) -> list[str]:
    """Stop every node of the federation (SIGTERM, then SIGKILL after ``timeout``).

    Returns the names of the nodes that were running; removes their pid files.
    """
    lay = Layout(directory)
    names = [n.name for n in reversed(lay.nodes())]
    if (lay.directory / "run").is_dir():  # pid files of nodes no longer in the config
        names += [p.stem for p in (lay.directory / "run").glob("*.pid") if p.stem not in names]
    return _terminate(lay, names, timeout, kill=False)


@contextlib.contextmanager
def running(directory: str | os.PathLike[str], timeout: float = 60.0, *,
            env: Mapping[str, str] | None = None) -> Iterator[Layout]:
    """``up`` on entry, ``down`` on exit (whatever happens inside)."""
    up(directory, timeout, env=env)
    try:
        yield Layout(directory)
    finally:
        down(directory)


@contextlib.contextmanager
def local_federation(
    data_files: Sequence[str | os.PathLike[str]], *,
    models: Mapping[str, ModelFiles] | None = None,
    directory: str | os.PathLike[str] | None = None, timeout: float = 60.0,
    env: Mapping[str, str] | None = None, **init_kwargs: object,
) -> Iterator[Layout]:
    """A federation of ``data_files`` in a temporary (or given) directory, up for the block.

    Removes a temporary directory on exit.  ``init_kwargs`` go to :func:`init_federation`.
    """
    tmp = None
    if directory is None:
        tmp = tempfile.mkdtemp(prefix="smpc-federation-")
        directory = tmp
    try:
        init_federation(directory, data_files, models=models, **init_kwargs)  # type: ignore[arg-type]
        with running(directory, timeout, env=env) as lay:
            yield lay
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
