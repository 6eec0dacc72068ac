"""The protocols end to end over real party processes (gRPC + mutual TLS on 127.0.0.1).

Each federation is made with :func:`parties.federation.local.init_federation` (its own CA, one
certificate per node, free loopback ports) and started with :func:`parties.federation.local.up`:
every party, the coordinator (also the dealer) -- each a separate Python process.  The
analyst is this process, through :class:`parties.analyst.client.Client`.

Protocols and sizes (quick / full):

* **secure elementwise vector sum**, ``ss`` and ``ckks``, 2..5 parties (quick: 3), 10^3..10^6
  elements.  The runtime has no ``vector_sum`` statistic, so the end-to-end figure uses the
  statistic whose secure sum *is* a long vector: ``quantiles`` over ``k`` columns with
  ``resolution`` bins sums a vector of ``1 + k * resolution`` fine-histogram counts
  (``k = ceil(L / 65536)`` columns, ``resolution = L / k``), with the rows filtered to 10 per
  party so that the histogram itself costs nothing.  The wire traffic is exactly that of a
  vector sum of that length.  The in-process simulator runs the core's vector sum
  (:mod:`smpc.aggregate`) on real random vectors of length L for the breakdown.
* **mean / variance / covariance** over 10 columns, 3 parties, 10^4 (quick) .. 10^6 rows per
  party, both backends.
* **linear and logistic inference**, 30 features, 4096..65536 samples (quick: 4096, 16384 for
  ss), data owner and model owner as separate nodes (and the coordinator as dealer for ss).

For every case:

``e2e``       median wall time of the client call (after one warm-up call).
``sim``       the same protocol in one process (:mod:`smpc.simulator`: every role a thread,
              in-memory transport): compute + crypto without serialization or network.
``local``     the parties' plaintext work (local aggregates), measured on the same rows.
``crypto``    the protocol's CPU on the critical path (per-role thread CPU time in the
              simulation: slowest party + hubs, or all roles for the sequential inference)
              minus ``local``: encoding, PRG expansion, sharing arithmetic, CKKS.
``serial.``   the runtime's own serialization (``parties.transport.wire`` chunks -> protobuf ->
              parse -> reassemble) of every payload on the critical path, measured in-process.
``network``   the residual ``e2e - local - crypto - serial.``: gRPC and TLS, session control
              (Prepare / Run / Await), process scheduling, the data owner writing its CSV.
``bytes``     payload bytes sent per party (from the simulation; node logs agree).
``floor``     plaintext numpy on the pooled data + the time to stream all the protocol's
              bytes over one mutual-TLS connection (:mod:`smpc_bench.floor`).

Node logs are parsed too: each party logs its role's duration and traffic per session.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smpc_bench.common import Case, Config, Resources, Row, measure, row, size_label

SUITE = "protocols"
N_STAT_COLUMNS = 10
N_DATA_COLUMNS = 16
N_FEATURES = 30
MAX_BINS = 65536
#: The parties' request limits for the benchmark (policy fields): the vector-sum proxy releases
#: up to 10^6 values per party, ten times the default limit.
BENCH_LIMITS = {"max_released_values": 2_000_000, "max_session_cpu_seconds": 900.0,
                "max_request_memory_mb": 8192.0}
_DONE_RE = re.compile(r"session (\S+) done on (\S+) in ([\d.]+) s \(sent (\d+) msgs / (\d+) B")
_COORD_RE = re.compile(r"session (\S+): done in ([\d.]+) s")


# ----------------------------------------------------------------------------- federations


@dataclass
class Fed:
    directory: Path
    client: Any
    parties: list[str]
    tables: list[np.ndarray]
    X: np.ndarray | None
    models: dict[str, Any]
    sink: Any
    node_names: list[str] = field(default_factory=list)


def _write_table(path_stem: Path, columns: dict[str, np.ndarray]) -> Path:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path = path_stem.with_suffix(".csv")
        names = list(columns)
        data = np.column_stack([columns[n] for n in names])
        np.savetxt(path, data, delimiter=",", header=",".join(names), comments="", fmt="%.10g")
        return path
    path = path_stem.with_suffix(".parquet")
    pq.write_table(pa.table(columns), path)
    return path


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def _start_federation(cfg: Config, key: str, parties: int, rows: int, samples: int) -> Fed:
    from parties.analyst.client import Client
    from parties.federation import local as federation
    from parties.privacy.exact import SAFEGUARDS_OFF
    from smpc.linear import LinearModel
    from smpc_bench.floor import sink_for_federation

    root = Path(cfg.workdir) / key.replace("/", "_")
    root.mkdir(parents=True, exist_ok=True)
    gen = np.random.default_rng(20240601)  # benchmark data, public by construction
    files, tables = [], []
    names = [f"p{i}" for i in range(parties)]
    for name in names:
        t = gen.normal(50.0, 10.0, (rows, N_DATA_COLUMNS))
        tables.append(t)
        cols = {f"c{j}": t[:, j] for j in range(N_DATA_COLUMNS)}
        cols["idx"] = np.arange(rows, dtype=np.float64)
        files.append(_write_table(root / name, cols))
    models: dict[str, Any] = {}
    X = None
    model_files: dict[str, list[Path]] = {}
    all_names = list(names)
    if samples:
        X = np.clip(gen.normal(0.0, 1.0, (samples, N_FEATURES)), -5, 5)
        cols = {f"f{j}": X[:, j] for j in range(N_FEATURES)}
        cols["idx"] = np.arange(samples, dtype=np.float64)
        files.append(_write_table(root / "do", cols))
        files.append(_write_table(root / "mo", {"z": np.arange(10, dtype=np.float64)}))
        all_names += ["do", "mo"]
        feats = tuple(f"f{j}" for j in range(N_FEATURES))
        models = {
            "lin": LinearModel("linear", feats, tuple(gen.uniform(-1, 1, N_FEATURES)), 0.5),
            "logit": LinearModel("logistic", feats, tuple(gen.uniform(-0.3, 0.3, N_FEATURES)),
                                 -0.2),
        }
        for mname, m in models.items():
            p = root / f"{mname}.json"
            p.write_text(json.dumps(m.to_json()))
            model_files.setdefault("mo", []).append(p)
    directory = root / "federation"
    # the vector-sum proxy releases up to 10^6 values per party: above the default limit.
    # The benchmarks time exact protocols and compare them with numpy: exact answers opted in,
    # their safeguards (cell suppression, quantile margin, differencing history) off.
    federation.init_federation(directory, files, models=model_files, names=all_names,
                               min_cohort_size=1, session_timeout=900.0, overwrite=True,
                               limits=BENCH_LIMITS, allow_exact=True,
                               exact_safeguards=SAFEGUARDS_OFF)
    if cfg.profile_dir:
        lay = federation.Layout(directory)
        env = {"PYTHONPATH": _repo_root()}
        for node in lay.nodes():
            out = Path(cfg.profile_dir) / f"{key.replace('/', '_')}-{node.name}.prof"
            federation.start_node(directory, node.name, timeout=120.0, env=env, python_args=[
                "-m", "smpc_bench._profiled_node", "--out", str(out),
                "--module", federation.MODULES[node.role]])
    else:
        federation.up(directory, timeout=120.0)
    client = Client(directory, timeout=900.0)
    sink = sink_for_federation(directory)
    return Fed(directory, client, names, tables, X, models, sink,
               [n.name for n in federation.Layout(directory).nodes()])


def _stop_federation(fed: Fed) -> None:
    from parties.federation import local as federation

    with contextlib.suppress(Exception):
        fed.client.close()
    with contextlib.suppress(Exception):
        fed.sink.close()
    federation.down(fed.directory)


def _fed_key(parties: int, rows: int, samples: int) -> str:
    return f"fed/P{parties}/R{rows}/S{samples}"


def _fed(cfg: Config, res: Resources, parties: int, rows: int, samples: int) -> Fed:
    key = _fed_key(parties, rows, samples)
    return res.get(key, lambda: _start_federation(cfg, key, parties, rows, samples),
                   _stop_federation)


# ------------------------------------------------------------------------- measurement


def _log_offsets(fed: Fed) -> dict[str, int]:
    from parties.federation.local import Layout

    lay = Layout(fed.directory)
    out = {}
    for n in fed.node_names:
        p = lay.log(n)
        out[n] = p.stat().st_size if p.exists() else 0
    return out


def _parse_logs(fed: Fed, offsets: dict[str, int]) -> dict[str, Any]:
    from parties.federation.local import Layout

    lay = Layout(fed.directory)
    sessions: dict[str, dict[str, tuple[float, int]]] = {}
    coord: list[float] = []
    for n, off in offsets.items():
        p = lay.log(n)
        if not p.exists():
            continue
        with open(p, "rb") as fh:
            fh.seek(off)
            text = fh.read().decode(errors="replace")
        for m in _DONE_RE.finditer(text):
            sessions.setdefault(m.group(1), {})[m.group(2)] = (float(m.group(3)),
                                                               int(m.group(5)))
        coord += [float(m.group(2)) for m in _COORD_RE.finditer(text)]
    if not sessions:
        return {}
    last = list(sessions.values())[-1]
    return {
        "node_role_max_s": statistics.median(max(t for t, _ in s.values())
                                             for s in sessions.values()),
        "node_bytes_sent": {n: b for n, (_, b) in sorted(last.items())},
        **({"coordinator_session_s": statistics.median(coord)} if coord else {}),
    }


def _timed_roles(roles: dict[str, Callable[[Any], Any]]
                 ) -> tuple[dict[str, Callable[[Any], Any]], dict[str, float],
                            dict[str, list[tuple[str, Any]]]]:
    cpu: dict[str, float] = {}
    sent: dict[str, list[tuple[str, Any]]] = {}

    def wrap(name: str, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def role(t: Any) -> Any:
            payloads: list[tuple[str, Any]] = []
            orig = t._send

            def send(to: str, tag: str, payload: Any) -> None:
                payloads.append((tag, payload))
                orig(to, tag, payload)

            t._send = send
            c0 = time.thread_time()
            try:
                return fn(t)
            finally:
                cpu[name] = time.thread_time() - c0
                sent[name] = payloads
        return role

    return {n: wrap(n, f) for n, f in roles.items()}, cpu, sent


def _serialization_seconds(payloads: list[tuple[str, Any]]) -> float:
    """The runtime's wire path for these payloads: chunk, protobuf-encode, parse, reassemble."""
    from parties._pb import smpc_pb2 as pb
    from parties.transport import wire

    t0 = time.perf_counter()
    for tag, payload in payloads:
        asm = wire.Assembler()
        for chunk in wire.chunks("benchmarksession0", tag, payload):
            asm.add(pb.Chunk.FromString(chunk.SerializeToString()))
        asm.finish()
    return time.perf_counter() - t0


def _simulate(cfg: Config, make_roles: Callable[[], dict[str, Callable[[Any], Any]]]
              ) -> dict[str, Any]:
    from smpc import simulator
    from smpc.transport import payload_nbytes

    runs = []
    for i in range(cfg.pick(1, 3, 4)):
        roles, cpu, sent = _timed_roles(make_roles())
        sim = simulator.run(roles, timeout=900.0)
        if i == 0 and not cfg.tiny:
            continue  # warm-up
        runs.append((sim.seconds, cpu, sent, sim))
    runs.sort(key=lambda r: r[0])
    seconds, cpu, sent, sim = runs[len(runs) // 2]
    return {
        "sim_s": seconds,
        "cpu": cpu,
        "ser": {n: _serialization_seconds(p) for n, p in sent.items()},
        "bytes": {n: sum(payload_nbytes(x) for _, x in p) for n, p in sent.items()},
        "messages": {n: len(p) for n, p in sent.items()},
        "results": sim.results,
    }


def _breakdown(e2e: float, sim: dict[str, Any], parties: list[str], local_s: float,
               sequential: bool) -> dict[str, Any]:
    cpu, ser, byts = sim["cpu"], sim["ser"], sim["bytes"]
    hubs = [n for n in cpu if n not in parties]
    if sequential:
        cpu_path = sum(cpu.values())
        ser_path = sum(ser.values())
    else:
        cpu_path = max(cpu[p] for p in parties) + sum(cpu[h] for h in hubs)
        ser_path = max(ser[p] for p in parties) + sum(ser[h] for h in hubs)
    crypto = max(cpu_path - local_s, 0.0)
    return {
        "sim_s": sim["sim_s"],
        "local_s": local_s,
        "crypto_s": crypto,
        "serialization_s": ser_path,
        "network_s": e2e - local_s - crypto - ser_path,
        "cpu_by_role_s": {n: round(v, 6) for n, v in cpu.items()},
        "messages_by_node": sim["messages"],
        "bytes_per_party": max(byts[p] for p in parties),
        "bytes_by_node": byts,
        "bytes_total": sum(byts.values()),
    }


def _e2e(cfg: Config, fed: Fed, call: Callable[[], Any], nodes: list[str] | None = None
         ) -> tuple[Any, dict[str, Any], Any]:
    from smpc_bench import nodecpu, rss

    pids = {n: pid for n, pid in rss.party_pids(fed.directory).items()
            if n in (nodes or fed.parties)}  # the parties that take part in this case
    before = rss.reset_peaks(pids)  # the parties' peak RSS from here: this case's, on the table
    result = call()  # warm-up: caches parsed columns, opens channels
    offsets = _log_offsets(fed)
    every_node = nodecpu.node_pids(fed.directory)
    cpu_before = nodecpu.cpu_seconds(every_node)
    t = measure(call, min_repeats=cfg.pick(1, 3, 5), min_time=0.0, max_repeats=cfg.pick(1, 3, 5))
    cpu = nodecpu.per_call(cpu_before, nodecpu.cpu_seconds(every_node), t.repeats)
    time.sleep(0.05)  # let the nodes flush their log lines
    return t, {**_parse_logs(fed, offsets), **rss.summary(before, rss.peaks(pids)), **cpu}, \
        result


def _finish_row(case: str, op: str, params: dict[str, Any], t: Any, logs: dict[str, Any],
                bd: dict[str, Any], numpy_s: float, tls_s: float, items: int, unit: str,
                note: str, extra: dict[str, Any] | None = None) -> Row:
    floor = numpy_s + tls_s
    metrics = {
        "seconds": t.median, "best_s": t.best, "repeats": t.repeats,
        **bd,
        "numpy_s": numpy_s, "tls_stream_s": tls_s, "floor_s": floor,
        "vs_floor": t.median / floor, "vs_numpy": t.median / numpy_s,
        f"{unit}_per_s": items / t.median,
        **logs, **(extra or {}),
    }
    return row(SUITE, case, op, params, metrics, note)


# ---------------------------------------------------------------------------- protocols


def _holder(res: Resources) -> tuple[Any, Any]:
    from smpc import ckks

    def make() -> tuple[Any, Any]:
        h = ckks.KeyHolder("aggregate")
        return h, ckks.load_context(h.public_context())

    return res.get("ckks/holder/aggregate", make)


def _vector_sum(cfg: Config, res: Resources, backend: str, parties: int, length: int,
                case: str) -> list[Row]:
    from smpc import aggregate
    from smpc.encoding import FixedPoint
    from smpc.stats import StatSpec

    fed = _fed(cfg, res, parties, _stat_rows_for(cfg, parties), _samples_for(cfg, parties))
    k = max(1, math.ceil(length / MAX_BINS))
    spec = StatSpec("quantiles", tuple(f"c{j}" for j in range(k)), backend=backend,
                    bounds=(0.0, 100.0), resolution=length // k, probabilities=(0.5,))
    t, logs, _ = _e2e(cfg, fed, lambda: fed.client.compute(spec, where="idx < 10",
                                                             parties=fed.parties))
    gen = np.random.default_rng(11)
    vecs = gen.uniform(0.0, 100.0, (parties, length))
    codec = FixedPoint(16)
    names = [f"p{i}" for i in range(parties)]

    def make_roles() -> dict[str, Callable[[Any], Any]]:
        roles: dict[str, Callable[[Any], Any]] = {}
        if backend == "ss":
            for i, n in enumerate(names):
                roles[n] = lambda tr, v=vecs[i]: aggregate.ss_contribute(
                    tr, parties=names, recipient="coordinator", values=v, codec=codec, tag="vs")
            roles["coordinator"] = lambda tr: aggregate.ss_collect(
                tr, parties=names, shape=(length,), codec=codec, tag="vs")
        else:
            holder, public = _holder(res)
            for i, n in enumerate(names):
                roles[n] = lambda tr, v=vecs[i]: aggregate.ckks_contribute(
                    tr, aggregator="coordinator", public_context=public, values=v, tag="vs")
            roles["coordinator"] = lambda tr: aggregate.ckks_aggregate(
                tr, parties=names, keyholder="analyst", public_context=public, tag="vs")
            roles["analyst"] = lambda tr: aggregate.ckks_collect(
                tr, aggregator="coordinator", keyholder=holder, length=length, tag="vs")
        return roles

    sim = _simulate(cfg, make_roles)
    out = sim["results"]["coordinator" if backend == "ss" else "analyst"]
    err = float(np.max(np.abs(out - vecs.sum(axis=0))))
    # The proxy's own local work (the fine histogram of 10 rows): part of e2e, not of a sum.
    from smpc import stats

    rows10 = fed.tables[0][:10, :k]
    proxy_local = measure(lambda: stats.local_pass1(spec, rows10), min_repeats=3,
                          min_time=0.02).median
    bd = _breakdown(t.median, sim, names, 0.0, sequential=False)
    bd["local_s"] = proxy_local
    bd["network_s"] -= proxy_local
    numpy_s = measure(lambda: vecs.sum(axis=0), min_repeats=3, min_time=0.02).median
    tls_s = fed.sink.stream_seconds(bd["bytes_total"])
    params = {"backend": backend, "parties": parties, "length": length, "size": length}
    note = ("vector-sum e2e: the 'quantiles' statistic over k columns x L/k bins (a "
            "1 + L-element secure sum; the runtime has no vector_sum statistic); local = "
            "that proxy's histogram of 10 rows per party")
    return [_finish_row(case, "vector-sum", params, t, logs, bd, numpy_s, tls_s, length,
                        "elements", note, {"sim_max_abs_error": err})]


def _stat(cfg: Config, res: Resources, backend: str, statistic: str, rows: int,
          case: str) -> list[Row]:
    from smpc import stats
    from smpc.stats import StatSpec

    parties = 3
    fed = _fed(cfg, res, parties, rows, _samples_for(cfg, parties, rows))
    cols = tuple(f"c{j}" for j in range(N_STAT_COLUMNS))
    spec = StatSpec(statistic, cols, backend=backend)
    t, logs, result = _e2e(cfg, fed, lambda: fed.client.compute(spec, parties=fed.parties))
    tables = [tb[:, :N_STAT_COLUMNS] for tb in fed.tables]
    names = list(fed.parties)

    def make_roles() -> dict[str, Callable[[Any], Any]]:
        roles: dict[str, Callable[[Any], Any]] = {}
        public = None
        if backend == "ckks":
            holder, public = _holder(res)
            roles["coordinator"] = lambda tr: stats.run_aggregator_ckks(
                tr, spec, parties=names, keyholder="analyst", tag="st", public_context=public)
            roles["analyst"] = lambda tr: stats.run_keyholder_ckks(
                tr, spec, aggregator="coordinator", keyholder=holder, tag="st")
        else:
            roles["coordinator"] = lambda tr: stats.run_recipient_ss(tr, spec, parties=names,
                                                                    tag="st")
        for n, tb in zip(names, tables, strict=True):
            roles[n] = lambda tr, tb=tb: stats.run_party(
                tr, spec, tb, parties=names, recipient="coordinator", tag="st",
                public_context=public)
        return roles

    sim = _simulate(cfg, make_roles)
    pooled = np.vstack(tables)
    total = float(pooled.shape[0])
    shift = np.round(pooled.mean(axis=0) * 65536) / 65536

    def local() -> None:
        for tb in tables:
            stats.local_pass1(spec, tb)
            if spec.passes == 2:
                stats.local_pass2(spec, tb, shift, total)

    local_s = measure(local, min_repeats=3, min_time=0.02).median / len(tables)
    plain = {"mean": lambda: pooled.mean(axis=0),
             "var": lambda: pooled.var(axis=0, ddof=1),
             "cov": lambda: np.cov(pooled, rowvar=False)}[statistic]
    numpy_s = measure(plain, min_repeats=3, min_time=0.05).median
    bd = _breakdown(t.median, sim, names, local_s, sequential=False)
    tls_s = fed.sink.stream_seconds(bd["bytes_total"])
    ref = np.asarray(plain())
    err = float(np.max(np.abs(np.asarray(result.value) - ref)))
    params = {"backend": backend, "parties": parties, "rows": rows, "columns": N_STAT_COLUMNS,
              "size": rows}
    extra: dict[str, Any] = {"max_abs_error": err}
    if "party_peak_rss_bytes" in logs:  # the data a party selects: its rows x the columns
        extra["party_selected_bytes"] = rows * N_STAT_COLUMNS * 8
        extra["peak_rss_per_selected"] = logs["party_peak_rss_bytes"] / (rows * N_STAT_COLUMNS
                                                                          * 8)
    return [_finish_row(case, statistic, params, t, logs, bd, numpy_s, tls_s,
                        rows * parties, "rows", f"{N_STAT_COLUMNS} columns, rows per party",
                        extra)]


def _inference(cfg: Config, res: Resources, backend: str, kind: str, samples: int,
               case: str) -> list[Row]:
    from smpc import linear

    fed = _fed(cfg, res, 3, _stat_rows_for(cfg, 3), _samples_for(cfg, 3))
    assert fed.X is not None
    model_name = "lin" if kind == "linear" else "logit"
    model = fed.models[model_name]
    where = f"idx < {samples}" if samples < fed.X.shape[0] else None
    t, logs, pred = _e2e(cfg, fed, lambda: fed.client.predict(
        "do", "mo", model=model_name, backend=backend, where=where), nodes=["do", "mo"])
    X = fed.X[:samples]
    spec = linear.InferenceSpec(kind, samples, N_FEATURES, backend=backend)
    dealer = "coordinator" if backend == "ss" else None

    def make_roles() -> dict[str, Callable[[Any], Any]]:
        roles: dict[str, Callable[[Any], Any]] = {
            "do": lambda tr: linear.run_data_owner(tr, spec, X, model_owner="mo",
                                                   dealer=dealer, tag="inf"),
            "mo": lambda tr: linear.run_model_owner(tr, spec, model, data_owner="do",
                                                    dealer=dealer, tag="inf"),
        }
        if dealer:
            roles["coordinator"] = lambda tr: linear.run_dealer(
                tr, spec, data_owner="do", model_owner="mo", tag="inf")
        return roles

    sim = _simulate(cfg, make_roles)
    w = np.asarray(model.coefficients, dtype=np.float64)
    b = float(model.intercept)
    if kind == "linear":
        plain: Callable[[], Any] = lambda: X @ w + b  # noqa: E731
    else:
        plain = lambda: linear.sigmoid(X @ w + b)  # noqa: E731
    numpy_s = measure(plain, min_repeats=3, min_time=0.02).median
    err = float(np.max(np.abs(sim["results"]["do"] - plain())))
    bd = _breakdown(t.median, sim, ["do", "mo"], 0.0, sequential=True)
    bd["bytes_per_party"] = bd["bytes_by_node"]["do"]
    tls_s = fed.sink.stream_seconds(bd["bytes_total"])
    params = {"backend": backend, "kind": kind, "samples": samples, "features": N_FEATURES,
              "size": samples, "parties": 2}
    note = "bytes/party: the data owner's; e2e includes the data owner writing its CSV"
    return [_finish_row(case, f"{kind}-inference", params, t, logs, bd, numpy_s, tls_s,
                        samples, "samples", note,
                        {"sim_max_abs_error": err,
                         "n_predictions": getattr(pred, "n_predictions", None)})]


def _rpc_latency(cfg: Config, res: Resources, case: str) -> list[Row]:
    """One unary gRPC round trip over mutual TLS (Health, analyst -> coordinator): the
    per-message floor that every protocol step pays on this machine."""
    import grpc

    from parties._pb import smpc_pb2 as pb
    from parties._pb import smpc_pb2_grpc as pb_grpc
    from parties.federation.local import Layout
    from parties.transport import wire
    from parties.transport.tls import channel_credentials, channel_options

    fed = _fed(cfg, res, 3, _stat_rows_for(cfg, 3), _samples_for(cfg, 3))
    lay = Layout(fed.directory)
    node = lay.federation().node("coordinator")
    ch = grpc.secure_channel(node.address, channel_credentials(
        lay.analyst_cert, lay.analyst_key, lay.ca_cert),
        options=channel_options(node.name, wire.grpc_options()))
    try:
        stub = pb_grpc.NodeStub(ch)
        t = measure(lambda: stub.Health(pb.HealthRequest(), timeout=10.0), warmup=3,
                    min_repeats=cfg.pick(10, 50, 200), min_time=0.0,
                    max_repeats=cfg.pick(10, 50, 200))
    finally:
        ch.close()
    return [row(SUITE, case, "rpc-round-trip", {"backend": "grpc", "parties": 1, "size": 0},
                {"seconds": t.median, "best_s": t.best, "repeats": t.repeats},
                "unary Health call, analyst -> coordinator, mutual TLS, loopback")]


# ------------------------------------------------------------------------------- plan


def _stat_rows_for(cfg: Config, parties: int) -> int:
    return cfg.pick(1000, 10**4, 10**4)


def _samples_for(cfg: Config, parties: int, rows: int | None = None) -> int:
    if parties != 3 or (rows is not None and rows != _stat_rows_for(cfg, 3)):
        return 0
    return cfg.pick(4096, 16384, 65536)


def cases(cfg: Config, res: Resources) -> list[Case]:
    out: list[Case] = []

    def add(name: str, fn: Callable[[], list[Row]], weight: float, group: str) -> None:
        out.append(Case(name, fn, weight, group))

    main_key = _fed_key(3, _stat_rows_for(cfg, 3), _samples_for(cfg, 3))
    if cfg.tiny:
        vs_plan = [("ss", 3, 1000)]
        stat_plan = [("ss", "mean", 1000)]
        inf_plan = [("ss", "linear", 4096)]
    else:
        sizes = [10**3, 10**4, 10**5, 10**6]
        vs_plan = [("ss", 3, n) for n in sizes] + [("ckks", 3, n) for n in sizes[:3]]
        if not cfg.quick:
            vs_plan += [("ckks", 3, 10**6)]
            vs_plan += [(be, p, n) for p in (2, 4, 5) for be in ("ss", "ckks") for n in sizes
                        if be == "ss" or n <= 10**5]
        stat_rows = cfg.pick([1000], [10**4], [10**4, 10**5, 10**6])
        stat_plan = [(be, s, r) for r in stat_rows for s in ("mean", "var", "cov")
                     for be in ("ss", "ckks")]
        samples = cfg.pick([4096], [4096, 16384], [4096, 16384, 65536])
        inf_plan = [(be, kind, s) for s in samples for kind in ("linear", "logistic")
                    for be in ("ss", "ckks")
                    if be == "ss" or s == 4096 or not cfg.quick]
    # Ordered so that each federation's cases are contiguous: it is stopped after its last.
    add("proto/rpc-round-trip", lambda: _rpc_latency(cfg, res, "proto/rpc-round-trip"), 0.5,
        main_key)
    for be, p, n in vs_plan:
        if p != 3:
            continue
        name = f"proto/vector-sum/{be}/P={p}/L={size_label(n)}"
        add(name, lambda be=be, p=p, n=n, name=name: _vector_sum(cfg, res, be, p, n, name),
            1.0 + (n / 2e4 if be == "ckks" else n / 2e5), main_key)
    for be, s, r in sorted(stat_plan, key=lambda x: x[2]):
        name = f"proto/{s}/{be}/P=3/rows={size_label(r)}"
        key = _fed_key(3, r, _samples_for(cfg, 3, r))
        add(name, lambda be=be, s=s, r=r, name=name: _stat(cfg, res, be, s, r, name),
            1.0 + r / 2e5, key)
    for be, kind, s in inf_plan:
        name = f"proto/{kind}-inference/{be}/S={s}"
        add(name, lambda be=be, kind=kind, s=s, name=name: _inference(cfg, res, be, kind, s,
                                                                        name),
            1.0 + (s / 4096 if be == "ckks" else s / 32768), main_key)
    for be, p, n in vs_plan:
        if p == 3:
            continue
        name = f"proto/vector-sum/{be}/P={p}/L={size_label(n)}"
        add(name, lambda be=be, p=p, n=n, name=name: _vector_sum(cfg, res, be, p, n, name),
            1.0 + (n / 2e4 if be == "ckks" else n / 2e5),
            _fed_key(p, _stat_rows_for(cfg, p), _samples_for(cfg, p)))
    # stats on the main federation first (contiguous with its other cases)
    main = [c for c in out if c.group == main_key]
    return main + [c for c in out if c.group != main_key]
