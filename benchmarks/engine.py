"""The DuckDB engine at scale: secure mean and covariance against DuckDB on the pooled files.

Not part of ``--quick``; ``smpc bench --only engine`` runs it (``--engine-max-rows`` caps the
sweep, default 10^8 rows per party).  For each size (10^4 .. 10^8 rows per party, 3 parties):

* **data**: one Parquet file per party, 3 float64 columns written in row groups of 10^6 rows
  with pyarrow (generation stays within a few tens of MB whatever the size): ``a`` ~ normal
  around 1000 (a mean far from zero), ``b`` log-normal (skewed, income-like, around 3e4) and
  ``c`` correlated with both.  Written under the run's workdir, shared by the cases of that
  size, deleted after its last.
* **secure**: a federation (one process per node, gRPC + mutual TLS on loopback) with every
  party on ``data.engine = "duckdb"`` (its defaults: ``memory_limit`` 1GB, DuckDB's threads =
  one per core), exact answers allowed with the default exact safeguards (differencing
  history on: the row mask is built and kept, as a deployment would).  One warm-up call of
  each statistic (timed apart: the first call of a fresh node also checks the columns), then
  ``mean`` and ``cov`` over the 3 columns (``ss``), each the median of a few calls through the
  analyst :class:`~parties.analyst.client.Client`.  Each party's peak RSS (``VmHWM``, reset
  before each block of calls: :mod:`smpc_bench.rss`) around the warm-up, the means and the
  covariances.
* **DuckDB plaintext**, in this process, same run, same thread count (one per core), same
  ``memory_limit``: the same aggregates over the 3 pooled files in one query each --
  ``count(*), sum(a), sum(b), sum(c)`` for the mean; for the covariance DuckDB's one-pass
  ``covar_samp`` / ``var_samp`` (its streaming co-moment aggregates: the cheapest honest
  plaintext equivalent of a covariance matrix in one scan) and the two-pass form (sums, then
  centred cross products: what the secure protocol's passes compute); the faster of the two
  is the reference of the ratio (DuckDB's ``covar_samp`` is the slower one here).
* **where the time goes**: the party's SQL alone (one party, in this process, after the
  federation stopped): each statement the node runs for one request, timed (wall and CPU) on
  party 0's file through the engine's own code (:mod:`parties.data.sql`).
* **the memory engine**, at 10^6 rows: the same federation with ``engine = "memory"`` (the
  table loaded into numpy), for the contrast in peak RSS and time.

The parties' request limits are raised (``LIMITS``): the runtime's cost model estimates a
statistic's memory as its selected cells in memory (32 B a cell), which for 10^8 rows x 3
columns is 9.2 GB -- above the default 1024 MiB, so a DuckDB party would refuse it even though
its rows stay in the engine; the estimated CPU (90 s) is above the default 60 s too.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from smpc_bench.common import (
    Case,
    Config,
    Resources,
    Row,
    load_average,
    measure,
    row,
    size_label,
)

SUITE = "engine"
COLUMNS = ("a", "b", "c")
PARTIES = 3
ROW_GROUP = 10**6
ONE_GB = 10**9  # the target's 1 GB (DuckDB's "1GB" memory_limit is 1000^3 bytes too)
MEMORY_CONTRAST_ROWS = 10**6
#: The parties' request limits (module docstring: the cost model counts rows as in memory).
LIMITS = {"max_released_values": 100_000, "max_session_cpu_seconds": 7200.0,
          "max_request_memory_mb": 65536.0}
TIMEOUT = 7200.0


def sizes(cfg: Config) -> list[int]:
    top = cfg.engine_max_rows
    return [n for n in cfg.pick([2000], [], [10**k for k in range(4, 9)]) if n <= top]


def repeats(cfg: Config, rows: int) -> int:
    """Timed calls per statistic: medians of 5 up to 10^6 rows, 3 at 10^7, 2 at 10^8."""
    if cfg.tiny:
        return 1
    return 5 if rows <= 10**6 else (3 if rows <= 10**7 else 2)


def _contrast_rows(cfg: Config) -> int:
    return cfg.pick(2000, MEMORY_CONTRAST_ROWS, MEMORY_CONTRAST_ROWS)


# --------------------------------------------------------------------------------- data


def write_party_file(path: Path, rows: int, party: int) -> Path:
    """One party's Parquet file (module docstring), written in row groups of ``ROW_GROUP``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gen = np.random.default_rng([20240603, party, rows])  # benchmark data, public
    schema = pa.schema([(c, pa.float64()) for c in COLUMNS])
    with pq.ParquetWriter(path, schema) as w:
        for start in range(0, rows, ROW_GROUP):
            n = min(ROW_GROUP, rows - start)
            a = gen.normal(1000.0 + 10.0 * party, 50.0, n)
            b = gen.lognormal(10.0 + 0.1 * party, 0.8, n)
            c = 0.04 * a + 2e-4 * b + gen.normal(0.0, 5.0, n)
            w.write_table(pa.table({"a": a, "b": b, "c": c}, schema=schema),
                          row_group_size=n)
    return path


class Data:
    """The parties' files of one size (a shared resource; :meth:`close` deletes them)."""

    def __init__(self, cfg: Config, rows: int) -> None:
        self.rows = rows
        self.root = Path(cfg.workdir) / f"engine_R{rows}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.names = [f"p{i}" for i in range(PARTIES)]
        t0 = time.perf_counter()
        self.files = [write_party_file(self.root / f"{n}.parquet", rows, i)
                      for i, n in enumerate(self.names)]
        self.write_s = time.perf_counter() - t0
        self.file_bytes = sum(f.stat().st_size for f in self.files)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _data_key(rows: int) -> str:
    return f"engine/data/R{rows}"


def _data(cfg: Config, res: Resources, rows: int) -> Data:
    return res.get(_data_key(rows), lambda: Data(cfg, rows), lambda d: d.close())


# ------------------------------------------------------------------------------ secure


def _secure(cfg: Config, data: Data, engine: str) -> dict[str, Any]:
    """Start a federation on ``data`` with every party on ``engine``, warm up, time the mean
    and the covariance, read the parties' peak RSS; stop it.  Returns the measurements."""
    from parties.analyst.client import Client
    from parties.federation import local as federation
    from smpc.stats import StatSpec
    from smpc_bench import nodecpu, rss

    directory = data.root / f"federation-{engine}"
    t0 = time.perf_counter()
    federation.init_federation(directory, data.files, names=data.names, engine=engine,
                               allow_exact=True, session_timeout=TIMEOUT, overwrite=True,
                               limits=LIMITS)
    federation.up(directory, timeout=600.0)
    start_s = time.perf_counter() - t0
    client = Client(directory, timeout=TIMEOUT)
    out: dict[str, Any] = {"start_s": start_s}
    try:
        pids = rss.party_pids(directory)
        every = nodecpu.node_pids(directory)
        specs = {s: StatSpec(s, COLUMNS, backend="ss") for s in ("mean", "cov")}

        def call(stat: str) -> Any:
            return client.compute(specs[stat], parties=data.names)

        before = rss.reset_peaks(pids)
        out["rss_before"] = before
        for stat in ("mean", "cov"):  # warm-up: channels, column checks, first scans
            t = time.perf_counter()
            out[f"{stat}_value"] = np.asarray(call(stat).value, dtype=np.float64)
            out[f"{stat}_first_s"] = time.perf_counter() - t
        out["warmup_peak"] = rss.peaks(pids)
        reps = repeats(cfg, data.rows)
        for stat in ("mean", "cov"):
            rss.reset_peaks(pids)
            cpu0 = nodecpu.cpu_seconds(every)
            load0 = load_average()
            out[stat] = measure(lambda stat=stat: call(stat), min_repeats=reps, min_time=0.0,
                                max_repeats=reps)
            out[f"{stat}_peak"] = rss.peaks(pids)
            out[f"{stat}_cpu"] = nodecpu.per_call(cpu0, nodecpu.cpu_seconds(every), reps)
            out[f"{stat}_load"] = [load0, load_average()]
    finally:
        with contextlib.suppress(Exception):
            client.close()
        federation.down(directory)
        shutil.rmtree(directory, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- plaintext


def plaintext_queries(files: list[Path]) -> dict[str, str]:
    """The plaintext aggregates over the pooled files (DuckDB SQL)."""
    src = "read_parquet([" + ", ".join("'" + str(f).replace("'", "''") + "'"
                                        for f in files) + "])"
    a, b, c = COLUMNS
    pairs = [(a, a), (a, b), (a, c), (b, b), (b, c), (c, c)]
    one_pass = ", ".join(f"covar_samp({x}, {y})" if x != y else f"var_samp({x})"
                         for x, y in pairs)
    centred = ", ".join(f"sum(({x} - m.m{x}) * ({y} - m.m{y}))" for x, y in pairs)
    means = ", ".join(f"avg({x}) AS m{x}" for x in COLUMNS)
    return {
        "mean": f"SELECT count(*), sum({a}), sum({b}), sum({c}) FROM {src}",
        "cov": f"SELECT count(*), {one_pass} FROM {src}",
        "cov_two_pass": f"WITH m AS (SELECT count(*) AS n, {means} FROM {src}) "
                        f"SELECT any_value(m.n), {centred} FROM {src}, m",
    }


def _plaintext(cfg: Config, data: Data) -> dict[str, Any]:
    """DuckDB alone on the pooled files: the same aggregates, same threads, same memory."""
    import duckdb

    threads = cfg.threads_all
    con = duckdb.connect(":memory:", config={"threads": threads, "memory_limit": "1GB"})
    try:
        queries = plaintext_queries(data.files)
        # as many calls as the secure side (one more below 10^7 rows: they are cheap)
        reps = repeats(cfg, data.rows) + (1 if 1 < repeats(cfg, data.rows) < 5 else 0)
        out: dict[str, Any] = {"threads": int(con.execute(
            "SELECT current_setting('threads')").fetchone()[0])}
        for name, sql in queries.items():
            got = con.execute(sql).fetchone()  # warm-up (the files' metadata; the files were
            out[f"{name}_result"] = [float(x) for x in got]  # just read by the parties)
            c0 = time.process_time()  # this process: DuckDB's threads included
            out[name] = measure(lambda sql=sql: con.execute(sql).fetchone(), min_repeats=reps,
                                min_time=0.0, max_repeats=reps)
            out[f"{name}_cpu"] = (time.process_time() - c0) / out[name].repeats
        return out
    finally:
        con.close()


def _check(secure: dict[str, Any], plain: dict[str, Any]) -> dict[str, float]:
    """Largest relative difference of the secure answers from DuckDB's plaintext ones."""
    n, *sums = plain["mean_result"]
    mean = np.asarray(sums) / n
    _, aa, ab, ac, bb, bc, cc = plain["cov_result"]
    cov = np.array([[aa, ab, ac], [ab, bb, bc], [ac, bc, cc]])
    m = np.asarray(secure["mean_value"]).reshape(-1)
    c = np.asarray(secure["cov_value"]).reshape(3, 3)
    return {"mean_max_rel_error": float(np.max(np.abs(m - mean) / np.abs(mean))),
            "cov_max_rel_error": float(np.max(np.abs(c - cov)) / np.max(np.abs(cov)))}


# ------------------------------------------------------------------- where the time goes


def _party_sql(cfg: Config, data: Data) -> dict[str, float]:
    """Each statement a DuckDB party runs for one exact mean and one covariance, timed alone
    on party 0's file in this process (the node's code: :mod:`parties.data.sql`)."""
    from parties.data import filters
    from parties.data.sql.duck import open_duckdb
    from smpc.stats import StatSpec

    reps = 1 if data.rows >= 10**7 or cfg.tiny else 3
    out: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        value = None
        times, cpu = [], []
        for _ in range(reps):
            c0, t0 = time.process_time(), time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)  # this process: DuckDB's threads included
        out[name] = statistics.median(times)
        out[name[:-2] + "_cpu_s"] = statistics.median(cpu)
        return value

    t0 = time.perf_counter()
    table = open_duckdb(data.files[0])
    out["open_s"] = time.perf_counter() - t0
    try:
        cols = list(COLUMNS)
        t0 = time.perf_counter()
        table.check_values(cols)  # once per node (remembered): the infinity scans
        out["check_values_s"] = time.perf_counter() - t0
        timed("row_mask_s", lambda: table.row_mask(None))
        # not part of this request (it has no filter): the mask's cost when a filter is given
        keep_all = filters.parse("a > -1e300")
        timed("row_mask_filtered_s", lambda: table.row_mask(keep_all))
        mean, cov = StatSpec("mean", COLUMNS), StatSpec("cov", COLUMNS)
        # the exact mode's checks and pass 1 in one scan (SqlRows.counts), as the node runs it
        timed("mean_scan_s", lambda: table.local_rows(cols, None, "error").counts(mean))
        rows = table.local_rows(cols, None, "error")
        timed("cov_scan_s", lambda: rows.counts(cov))
        p1 = rows.pass1(cov)  # kept from the scan
        total = float(p1[0])
        shift = np.round(np.asarray(p1[1:4]) / total * 65536) / 65536
        timed("cov_spread_s", lambda: rows.spread(cov, shift, total))
        timed("cov_pass2_s", lambda: rows.pass2(cov, shift, total))
    finally:
        table.close()
    # what the node runs per request (parties.node.statistic_prepare._sql_rows, then the
    # passes): one scan for the checks' counts and pass 1, the row mask, the later passes
    for unit in ("_s", "_cpu_s"):
        out["mean_sql" + unit] = out["mean_scan" + unit] + out["row_mask" + unit]
        out["cov_sql" + unit] = (out["cov_scan" + unit] + out["row_mask" + unit]
                                 + out["cov_spread" + unit] + out["cov_pass2" + unit])
    return out


# ----------------------------------------------------------------------------- the case


def _worst(peaks: dict[str, int]) -> int:
    return max(peaks.values()) if peaks else 0


def _point(cfg: Config, res: Resources, rows: int, case: str) -> list[Row]:
    data = _data(cfg, res, rows)
    load0 = load_average()
    sec = _secure(cfg, data, "duckdb")
    plain = _plaintext(cfg, data)
    party = _party_sql(cfg, data)
    err = _check(sec, plain)
    peak_all = {n: max(sec[k].get(n, 0) for k in ("warmup_peak", "mean_peak", "cov_peak"))
                for n in data.names}
    params = {"engine": "duckdb", "backend": "ss", "parties": PARTIES, "rows": rows,
              "columns": len(COLUMNS), "size": rows}
    common = {"data_write_s": data.write_s, "file_bytes_per_party": data.file_bytes // PARTIES,
              "federation_start_s": sec["start_s"], "plain_threads": plain["threads"],
              "load_average_at_start": load0, **err}
    out: list[Row] = []
    for stat in ("mean", "cov"):
        t = sec[stat]
        ref, kind = plain[stat].median, ("count + sum" if stat == "mean" else
                                         "one-pass covar_samp / var_samp")
        ref_cpu = plain[f"{stat}_cpu"]
        if stat == "cov" and plain["cov_two_pass"].median < ref:
            ref, kind = plain["cov_two_pass"].median, "two-pass sums + centred products"
            ref_cpu = plain["cov_two_pass_cpu"]
        peak = sec[f"{stat}_peak"]
        m: dict[str, Any] = {
            "seconds": t.median, "best_s": t.best, "repeats": t.repeats,
            "first_call_s": sec[f"{stat}_first_s"],
            "duckdb_plain_s": ref, "duckdb_plain_kind": kind, "vs_duckdb": t.median / ref,
            "duckdb_plain_cpu_s": ref_cpu,
            "rows_per_s_per_party": rows / t.median,
            "rows_per_s": rows * PARTIES / t.median,
            "party_peak_rss_bytes": _worst(peak),
            "party_peak_rss_by_node": dict(sorted(peak.items())),
            "party_peak_rss_incl_warmup_bytes": _worst(peak_all),
            "party_rss_before_bytes": _worst(sec["rss_before"]),
            "peak_rss_per_gb": _worst(peak_all) / ONE_GB,
            "party_sql_alone_s": party[f"{stat}_sql_s"],
            "load_average": sec[f"{stat}_load"],
            **sec[f"{stat}_cpu"], **common,
        }
        if "node_cpu_s_per_call" in m:  # CPU of every node (3 parties + coordinator) per call
            m["cpu_vs_duckdb"] = m["node_cpu_s_per_call"] / ref_cpu
        if stat == "cov":
            m["duckdb_plain_one_pass_s"] = plain["cov"].median
            m["duckdb_plain_two_pass_s"] = plain["cov_two_pass"].median
        note = ("plaintext: DuckDB count(*), sum(a), sum(b), sum(c) over the 3 pooled files"
                if stat == "mean" else
                f"plaintext: DuckDB over the 3 pooled files, the faster of one-pass covar_samp "
                f"/ var_samp and two-pass sums + centred products (here: {kind})")
        out.append(row(SUITE, f"{case}/{stat}", f"secure-{stat}", params, m, note))
    for name in ("mean", "cov", "cov_two_pass"):
        t = plain[name]
        out.append(row(SUITE, f"{case}/duckdb-plain-{name.replace('_', '-')}",
                       f"duckdb-plain-{name.replace('_', '-')}",
                       {**params, "engine": "duckdb-plaintext", "threads": plain["threads"]},
                       {"seconds": t.median, "best_s": t.best, "repeats": t.repeats,
                        "cpu_s_per_call": plain[f"{name}_cpu"],
                        "rows_per_s": rows * PARTIES / t.median},
                       "one DuckDB over the 3 pooled Parquet files, in the bench process"))
    out.append(row(SUITE, f"{case}/party-sql", "party-sql", {**params, "parties": 1},
                   {"seconds": party["mean_sql_s"], **party},
                   "the statements one DuckDB party runs, timed on party 0's file alone "
                   "(mean: missing check + row mask + sums; cov: + its sums, spread, centred "
                   "products; the filtered row mask is for a request with a filter)"))
    return out


def _memory_point(cfg: Config, res: Resources, rows: int, case: str) -> list[Row]:
    data = _data(cfg, res, rows)
    sec = _secure(cfg, data, "memory")
    params = {"engine": "memory", "backend": "ss", "parties": PARTIES, "rows": rows,
              "columns": len(COLUMNS), "size": rows}
    out = []
    for stat in ("mean", "cov"):
        t, peak = sec[stat], sec[f"{stat}_peak"]
        worst = max(_worst(peak), _worst(sec["warmup_peak"]))
        out.append(row(SUITE, f"{case}/{stat}", f"memory-{stat}", params,
                       {"seconds": t.median, "best_s": t.best, "repeats": t.repeats,
                        "first_call_s": sec[f"{stat}_first_s"],
                        "rows_per_s_per_party": rows / t.median,
                        "party_peak_rss_bytes": _worst(peak),
                        "party_peak_rss_by_node": dict(sorted(peak.items())),
                        "party_peak_rss_incl_warmup_bytes": worst,
                        "party_rss_before_bytes": _worst(sec["rss_before"]),
                        "federation_start_s": sec["start_s"], **sec[f"{stat}_cpu"]},
                       "the memory engine (table loaded into numpy at start) on the same files"))
    return out


def cases(cfg: Config, res: Resources) -> list[Case]:
    if cfg.quick and not cfg.tiny:
        return []  # never part of --quick (CI); the full suite and --only engine run it
    out = []
    contrast = _contrast_rows(cfg)
    for n in sizes(cfg):
        name = f"engine/duckdb/rows={size_label(n)}"
        out.append(Case(name, lambda n=n, name=name: _point(cfg, res, n, name),
                        3.0 + n / 1e6, _data_key(n)))
        if n == contrast:
            mname = f"engine/memory/rows={size_label(n)}"
            out.append(Case(mname, lambda n=n, mname=mname: _memory_point(cfg, res, n, mname),
                            3.0 + n / 1e6, _data_key(n)))
    return out


# ------------------------------------------------------------------------------ output


def _secure_rows(rows: list[Row]) -> list[Row]:
    return sorted((r for r in rows if r["suite"] == SUITE and r["op"].startswith("secure-")
                   and "seconds" in r["metrics"]), key=lambda r: r["params"]["rows"])


def markdown(rows: list[Row]) -> list[str]:
    """The engine section of results.md."""
    from smpc_bench.common import human_bytes, human_rate, human_seconds

    sec = _secure_rows(rows)
    if not sec:
        return []
    by: dict[int, dict[str, Row]] = {}
    for r in sec:
        by.setdefault(r["params"]["rows"], {})[r["op"]] = r
    body = []
    for n, d in sorted(by.items()):
        mean, cov = d.get("secure-mean"), d.get("secure-cov")
        if mean is None or cov is None:
            continue
        mm, cm = mean["metrics"], cov["metrics"]
        body.append([
            size_label(n), human_seconds(mm["seconds"]), human_seconds(cm["seconds"]),
            human_seconds(mm["duckdb_plain_s"]), human_seconds(cm["duckdb_plain_s"]),
            f"{mm['vs_duckdb']:.1f}x", f"{cm['vs_duckdb']:.1f}x",
            " / ".join(f"{m['cpu_vs_duckdb']:.1f}x" if "cpu_vs_duckdb" in m else "—"
                       for m in (mm, cm)),
            f"{human_rate(mm['rows_per_s_per_party'], '/s')} / "
            f"{human_rate(cm['rows_per_s_per_party'], '/s')}",
            f"{human_bytes(mm['party_peak_rss_incl_warmup_bytes'])} "
            f"({mm['peak_rss_per_gb']:.2f} of 1 GB)",
            human_seconds(mm["first_call_s"]) + " / " + human_seconds(cm["first_call_s"]),
            " / ".join(f"{x:.1f}" for x in mm["load_average"] + cm["load_average"][1:]),
        ])
    out = ["## DuckDB engine: secure mean / covariance vs DuckDB plaintext (3 columns, "
           "3 parties, Parquet)", "",
           "secure: median end-to-end client time (after one warm-up call each), every party "
           "on `data.engine = \"duckdb\"` (memory_limit 1GB, one DuckDB thread per core), exact "
           "answers with the default safeguards.  DuckDB plain: one DuckDB in the bench "
           "process over the 3 pooled files, same threads: `count(*), sum(a), sum(b), sum(c)` "
           "for the mean; for the covariance the faster of one-pass `covar_samp` / `var_samp` "
           "and two-pass sums + centred products (both below the table).  rows/s: rows "
           "per party / secure time (mean / cov).  Peak RSS: the worst party's VmHWM over the "
           "warm-up and all calls.  Load: 1-min load average before / after the means / after "
           "the covariances; it counts the suite's own runnable threads (3 parties x their "
           "DuckDB threads while they scan: about 6 at 10^8 rows), so compare it with the "
           "load before the run in the header for other work on the machine.  CPU ratio: "
           "CPU seconds per call of every node (3 parties + the coordinator) / DuckDB "
           "plaintext's (all its threads): what the secure call costs the machine, less "
           "sensitive to other load than wall time.", "",
           "| rows per party | secure mean | secure cov | DuckDB plain mean | DuckDB plain cov "
           "| mean / plain | cov / plain | CPU ratio (mean / cov) | rows/s per party "
           "| party peak RSS | first call (mean / cov) | load |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    out.append("")
    party = sorted((r for r in rows if r["suite"] == SUITE and r["op"] == "party-sql"),
                   key=lambda r: r["params"]["rows"])
    if party:
        keys = [("check_values_s", "column checks (first call)"),
                ("row_mask_s", "row mask"),
                ("row_mask_filtered_s", "(row mask with a filter)"),
                ("mean_scan_s", "mean: checks + sums (one scan)"),
                ("cov_scan_s", "cov: checks + sums (one scan)"), ("cov_spread_s", "cov: spread"),
                ("cov_pass2_s", "cov: centred products")]
        out += ["### Where a party's time goes: its SQL alone", "",
                "Each statement a DuckDB party runs for one exact request, timed in the bench "
                "process on party 0's file after its federation stopped (the node's own code, "
                "one DuckDB, its default threads); the totals also as CPU seconds of all its "
                "threads, which other load on the machine inflates less than wall time.  "
                "mean = one scan for the exact mode's counts (cohort, missing values) and the "
                "sums + row mask (no filter: no query); cov: its counts and sums in one scan, "
                "the spread and the centred products.  The row mask with a filter (`a > "
                "-1e300`, every row) is not part of these requests: its cost when one is "
                "given.", "",
                "| rows | " + " | ".join(k[1] for k in keys) + " | mean total | cov total |",
                "|" + "---|" * (len(keys) + 3)]
        for r in party:
            m = r["metrics"]
            out.append(f"| {size_label(r['params']['rows'])} | "
                       + " | ".join(human_seconds(m[k]) if k in m else "-" for k, _ in keys)
                       + f" | {human_seconds(m['mean_sql_s'])} "
                       f"(CPU {human_seconds(m['mean_sql_cpu_s'])}) | "
                       f"{human_seconds(m['cov_sql_s'])} "
                       f"(CPU {human_seconds(m['cov_sql_cpu_s'])}) |")
        out.append("")
    mem = [r for r in rows if r["suite"] == SUITE and r["op"].startswith("memory-")]
    for r in mem:
        n = r["params"]["rows"]
        duck = by.get(n, {}).get(r["op"].replace("memory-", "secure-"))
        m = r["metrics"]
        line = (f"- memory engine, {r['op'][7:]} at {size_label(n)} rows per party: "
                f"{human_seconds(m['seconds'])}, party peak RSS "
                f"{human_bytes(m['party_peak_rss_incl_warmup_bytes'])}")
        if duck:
            dm = duck["metrics"]
            line += (f" (DuckDB engine: {human_seconds(dm['seconds'])}, "
                     f"{human_bytes(dm['party_peak_rss_incl_warmup_bytes'])})")
        out.append(line)
    for r in sec:
        m = r["metrics"]
        if r["op"] == "secure-cov" and "duckdb_plain_two_pass_s" in m:
            out.append(f"- {size_label(r['params']['rows'])}: DuckDB plain covariance one-pass "
                       f"{human_seconds(m['duckdb_plain_one_pass_s'])}, two-pass "
                       f"{human_seconds(m['duckdb_plain_two_pass_s'])} (the faster is the "
                       f"reference); largest relative difference from "
                       f"plaintext: mean {m['mean_max_rel_error']:.1e}, cov "
                       f"{m['cov_max_rel_error']:.1e}; data written in "
                       f"{human_seconds(m['data_write_s'])} "
                       f"({human_bytes(m['file_bytes_per_party'])} per party)")
    return [*out, ""]


def plot(rows: list[Row], save: Any, plt: Any) -> None:
    """engine.png: time against rows (log-log) and the parties' peak RSS against rows."""
    sec = _secure_rows(rows)
    if not sec:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))

    def pts(op: str, key: str = "seconds") -> tuple[list[int], list[float]]:
        rs = sorted((r for r in rows if r["suite"] == SUITE and r["op"] == op
                     and key in r["metrics"]), key=lambda r: r["params"]["rows"])
        return [r["params"]["rows"] for r in rs], [r["metrics"][key] for r in rs]

    for op, key, style, label in (
            ("secure-mean", "seconds", "o-", "secure mean (3 parties, DuckDB engine)"),
            ("secure-cov", "seconds", "s-", "secure cov (3 parties, DuckDB engine)"),
            ("secure-mean", "duckdb_plain_s", "o:", "DuckDB plaintext mean (pooled files)"),
            ("secure-cov", "duckdb_plain_s", "s:", "DuckDB plaintext cov (pooled files; the "
                                                    "faster of one- and two-pass)")):
        xs, ys = pts(op, key)
        if xs:
            ax.plot(xs, ys, style, label=label)
    ax.set(xscale="log", yscale="log", xlabel="rows per party (3 columns)", ylabel="seconds",
           title="Secure mean / cov vs DuckDB plaintext")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    xs, ys = pts("secure-cov", "party_peak_rss_incl_warmup_bytes")
    ax2.plot(xs, [y / 1e6 for y in ys], "o-", label="DuckDB engine (worst party)")
    xm, ym = pts("memory-cov", "party_peak_rss_incl_warmup_bytes")
    if xm:
        ax2.plot(xm, [y / 1e6 for y in ym], "x", markersize=9, label="memory engine")
    ax2.axhline(ONE_GB / 1e6, color="k", linestyle="--", linewidth=1, label="1 GB")
    ax2.set(xscale="log", xlabel="rows per party", ylabel="peak RSS (MB)",
            title="Party peak RSS", ylim=(0, None))
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    save(fig, "engine")
