"""Benchmark: point-in-time account features (DuckDB, Spark) against floors measured alike.

Run by hand, never in CI:

    .venv/bin/python bench/features.py --accounts 100000            # also runs 25000
    .venv/bin/python bench/features.py --accounts 100000 --compare-accounts 0 --world DIR
    .venv/bin/python bench/features.py --accounts 20000 --kinds floor,duckdb --repeats 1

For each world size a synthetic world is generated (exportguard.synth.generate_world) and
written as Parquet to a temporary directory (or to/from `--world DIR`, kept for later runs).
Each measurement then runs in its own subprocess, so its peak RSS is its own: ru_maxrss of
the child plus, for Spark, the peak RSS (VmHWM) of each of its live descendants (the JVM):

* floor        - read the tables (pd.read_parquet) + one groupby-sum of api_usage tokens by
                 account: the least a per-account feature job on pandas must do;
* duck_floor   - DuckDB reading api_usage.parquet + one group-by sum of tokens by account;
* duckdb       - the same reads, then `account_features()` (DuckDB, with ownership chains,
                 name screening and graph components beside it) as of the end;
* contract     - `contract.read_tables` (read + coerce + validate, every table in memory)
                 then `account_features`;
* out_of_core  - `contract.scan_tables` (the activity tables validated in chunks and left
                 on disk for DuckDB to scan) then `account_features`: what `exportguard
                 features` does; set EXPORTGUARD_DUCKDB_MEMORY_LIMIT to bound DuckDB;
* train_duckdb - the training pass: `training.dataset.example_requests` (every label at
                 its own decision time plus the presumed negatives, default params) then
                 `features_at`;
* spark_sql    - the relational families on Spark local[*] (`features.sql.SparkEngine`;
                 SparkSession start-up timed separately), vs duckdb_sql, the same families
                 on DuckDB.

Reported: wall time (median of --repeats), peak RSS, and ratios to the floor (and to
duck_floor when measured). `--chunk-accounts K` generates a large world as independent
worlds of K accounts (seeds seed, seed+1, ...; ids prefixed per chunk, so no two chunks
share an account, organisation, device or instrument) joined table by table by DuckDB,
which streams them: the generator holds one chunk in memory, not the whole world. The former
numpy engine's figures (kinds numpy, train_numpy) were measured with this script at commit
c5101f8, before its removal; they are in the closing note of issue 14.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TABLES = (
    "accounts",
    "organizations",
    "ownership",
    "payments",
    "api_usage",
    "logins",
    "labels",
    "restricted_entities",
)


def _read_raw(data: Path):
    """The tables as pd.read_parquet gives them (what the floor reads too)."""
    import pandas as pd

    from exportguard.features.tables import RawTables

    frames = {
        t: pd.read_parquet(data / f"{t}.parquet")
        for t in TABLES
        if (data / f"{t}.parquet").exists()
    }
    return RawTables(**frames)


def _as_of(data: Path):
    """End of the timeline: one hour after the last api_usage hour (every row is before it)."""
    import pandas as pd
    import pyarrow.parquet as pq

    hours = pq.read_table(data / "api_usage.parquet", columns=["hour"]).column(0)
    return pd.Timestamp(hours.to_pandas().max()) + pd.Timedelta(hours=1)


KINDS = (
    "floor",
    "duck_floor",
    "duckdb",
    "contract",
    "out_of_core",
    "train_duckdb",
    "duckdb_sql",
    "spark_sql",
)
DEFAULT_KINDS = ("floor", "duck_floor", "duckdb", "contract", "out_of_core", "train_duckdb")


def _descendants_hwm_mib() -> float:
    """Sum of the peak RSS (VmHWM) of this process's live descendants, e.g. Spark's JVM."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - mine
        mine |= frontier
    total_kib = 0
    for pid in mine:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
    return total_kib / 1024.0


def measure(kind: str, data: Path) -> dict:
    """One timed measurement (runs inside the child process)."""
    import pandas as pd

    as_of = pd.Timestamp(_as_of(data))
    # imports are not part of the timed work
    from exportguard.features.compute import account_features, features_at
    from exportguard.features.contract import read_tables, scan_tables
    from exportguard.training.config import ExamplesParams
    from exportguard.training.dataset import example_requests

    t0 = time.perf_counter()
    if kind == "floor":
        tables = _read_raw(data)
        u = tables.api_usage
        sums = (u["input_tokens"] + u["output_tokens"]).groupby(u["account_id"]).sum()
        return {"seconds": time.perf_counter() - t0, "rows": int(len(u)), "out": int(len(sums))}
    if kind == "duck_floor":
        from exportguard.features.sql import DuckDBEngine

        path = str(data / "api_usage.parquet").replace("'", "''")
        sums = DuckDBEngine().query(
            f"SELECT account_id, sum(input_tokens + output_tokens) AS t FROM '{path}' GROUP BY 1"
        )
        return {"seconds": time.perf_counter() - t0, "out": int(len(sums))}
    if kind == "contract":
        tables = read_tables(data)[0]
    elif kind == "out_of_core":
        tables = scan_tables(data)[0]
    else:
        tables = _read_raw(data)
    t1 = time.perf_counter()
    start = 0.0
    if kind in ("duckdb", "contract", "out_of_core"):
        out = len(account_features(tables, as_of))
    elif kind == "train_duckdb":
        requests = example_requests(tables, as_of, ExamplesParams())
        keys = requests.loc[:, ["account_id", "as_of"]].drop_duplicates(ignore_index=True)
        t1 = time.perf_counter()  # the requests are not the feature pass
        out = len(features_at(tables, keys))
    else:
        from exportguard.features.sql import DuckDBEngine, SparkEngine, sql_features

        alive = tables.accounts.loc[pd.to_datetime(tables.accounts["created_at"]) < as_of]
        requests = pd.DataFrame({"account_id": alive["account_id"], "as_of": as_of})
        if kind == "spark_sql":
            from exportguard.batch.spark import spark_session

            # the tables travel from the driver as Arrow: Spark's 1 GiB default heap is too small
            os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 12g pyspark-shell")
            spark = spark_session()
            spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
            start = time.perf_counter() - t1
            engine = SparkEngine(spark)
        else:
            engine = DuckDBEngine()
        out = len(sql_features(tables, requests, engine=engine))
    t2 = time.perf_counter()
    return {"seconds": t2 - t0 - start, "read": t1 - t0, "compute": t2 - t1 - start,
            "startup": start, "out": int(out), "descendants_mib": _descendants_hwm_mib()}  # fmt: skip


def _child(kind: str, data: Path) -> dict:
    """Run one measurement in a fresh interpreter; add its own peak RSS (MiB)."""
    cmd = [sys.executable, __file__, "--measure", kind, "--data", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {kind} failed with exit code {proc.returncode}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024.0 + result.get("descendants_mib", 0.0)
    return result


def _generate(n: int, seed: int, out: Path) -> int:
    """Write a generated world as Parquet in a child process; return api_usage rows."""
    code = (
        "import sys; from pathlib import Path; from exportguard.synth.world import generate_world\n"
        f"w = generate_world({n}, {seed}); out = Path({str(out)!r})\n"
        "for name, df in w.tables.items(): df.to_parquet(out / f'{name}.parquet', index=False)\n"
        "print(len(w.tables['api_usage']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(res.stdout.strip().splitlines()[-1])


#: the id columns made distinct per chunk by `_generate_chunked`
CHUNK_IDS = ("account_id", "org_id", "payment_id", "instrument_id", "api_key_id", "device_id")


def _generate_chunked(n: int, chunk: int, seed: int, out: Path) -> int:
    """A world of `n` accounts as independent worlds of `chunk` accounts, joined per table."""
    import duckdb
    import pyarrow.parquet as pq

    parts = []
    for i, start in enumerate(range(0, n, chunk)):
        part = out / "_chunks" / str(i)
        if not (part / "api_usage.parquet").exists():
            part.mkdir(parents=True, exist_ok=True)
            _generate(min(chunk, n - start), seed + i, part)
        parts.append(part)
        print(f"  chunk {i + 1}: {min(chunk, n - start):,} accounts", flush=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    for table in TABLES:
        files = [p / f"{table}.parquet" for p in parts if (p / f"{table}.parquet").exists()]
        if not files:
            continue
        if table == "restricted_entities":  # one list, the same in every world
            files = files[:1]
        names = pq.read_schema(files[0]).names
        selects = []
        for i, f in enumerate(files):
            cols = [f"'c{i}_' || {c} AS {c}" if c in CHUNK_IDS else c for c in names]
            selects.append(f"SELECT {', '.join(cols)} FROM read_parquet('{f}')")
        target = out / f"{table}.parquet"
        con.execute(f"COPY ({' UNION ALL '.join(selects)}) TO '{target}' (FORMAT parquet)")
    con.close()
    return pq.read_metadata(out / "api_usage.parquet").num_rows


def run_size(
    n: int, seed: int, repeats: int, kinds: list[str], world: Path | None, chunk: int = 0
) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"eg-bench-{n}-") as tmp:
        data = world / str(n) if world else Path(tmp)
        data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        if world and (data / "api_usage.parquet").exists():
            import pyarrow.parquet as pq

            rows = pq.read_metadata(data / "api_usage.parquet").num_rows
            print(f"[{n:,} accounts] world read from {data}", flush=True)
        else:
            if chunk and chunk < n:
                rows = _generate_chunked(n, chunk, seed, data)
            else:
                rows = _generate(n, seed, data)
            print(f"[{n:,} accounts] generated in {time.perf_counter() - t0:.0f}s", flush=True)
        mib = sum(p.stat().st_size for p in data.glob("*.parquet")) / 2**20
        print(f"  {rows:,} api_usage rows, {mib:.0f} MiB parquet", flush=True)
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for i in range(repeats):
            for kind in kinds:
                runs[kind].append(_child(kind, data))
                r = runs[kind][-1]
                print(
                    f"  run {i + 1} {kind:12s} {r['seconds']:7.2f}s  peak {r['peak_rss_mib']:7.0f} MiB",
                    flush=True,
                )
    summary: dict = {"accounts": n, "api_usage_rows": rows}
    for kind, rs in runs.items():
        summary[kind] = {
            key: statistics.median(r[key] for r in rs)
            for key in ("seconds", "peak_rss_mib", "read", "compute", "startup")
            if key in rs[0]
        }
    return summary


def _report(results: list[dict]) -> None:
    print(
        "\naccounts  usage_rows  measure       wall_s  (read_s  compute_s)  x_floor  peak_MiB  x_floor_rss"
    )
    for res in results:
        floor = res.get("floor")
        for kind in KINDS:
            if kind not in res:
                continue
            m = res[kind]
            split = f"({m['read']:6.2f}  {m['compute']:8.2f})" if "read" in m else " " * 19
            x_wall = f"{m['seconds'] / floor['seconds']:7.1f}" if floor else "      -"
            x_rss = f"{m['peak_rss_mib'] / floor['peak_rss_mib']:11.1f}" if floor else "          -"
            print(
                f"{res['accounts']:8,}  {res['api_usage_rows']:10,}  {kind:12s} {m['seconds']:8.2f}"
                f"  {split}  {x_wall}  {m['peak_rss_mib']:8.0f}  {x_rss}"
            )
        duck = res.get("duck_floor")
        for kind in ("duckdb", "contract", "out_of_core"):
            if duck and kind in res:
                print(
                    f"  {kind} vs duck_floor: wall x{res[kind]['seconds'] / duck['seconds']:.1f}, "
                    f"peak RSS x{res[kind]['peak_rss_mib'] / duck['peak_rss_mib']:.2f}"
                )
        for base, new in (("duckdb_sql", "spark_sql"),):
            if base in res and new in res:
                print(
                    f"  {new} vs {base}: wall x{res[base]['seconds'] / res[new]['seconds']:.2f} "
                    f"faster, peak RSS x{res[new]['peak_rss_mib'] / res[base]['peak_rss_mib']:.2f}"
                )
    if len(results) > 1:
        small, big = sorted(results, key=lambda r: r["accounts"])[:: len(results) - 1]
        growth = big["api_usage_rows"] / small["api_usage_rows"]
        for kind in ("duckdb", "contract", "out_of_core"):
            if kind in small and kind in big:
                print(
                    f"from {small['accounts']:,} to {big['accounts']:,} accounts: api_usage rows "
                    f"x{growth:.2f}, {kind} peak RSS "
                    f"x{big[kind]['peak_rss_mib'] / small[kind]['peak_rss_mib']:.2f}, wall "
                    f"x{big[kind]['seconds'] / small[kind]['seconds']:.2f}"
                )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accounts", type=int, default=100_000, help="world size (default 100000)")
    p.add_argument(
        "--compare-accounts",
        type=int,
        default=25_000,
        help="a second, smaller size to show memory growth (0 = skip; default 25000)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (median)")
    p.add_argument(
        "--kinds",
        default=",".join(DEFAULT_KINDS),
        help=f"comma-separated measurements, of {', '.join(KINDS)} "
        f"(default {','.join(DEFAULT_KINDS)})",
    )
    p.add_argument(
        "--world",
        type=Path,
        help="keep generated worlds in DIR/<accounts>/ and reuse them on later runs",
    )
    p.add_argument(
        "--chunk-accounts",
        type=int,
        default=0,
        metavar="K",
        help="generate worlds larger than K accounts as chunks of K (see above; default: whole)",
    )
    p.add_argument("--measure", choices=KINDS, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.data)))
        return 0
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        p.error(f"--kinds: unknown measurement(s) {unknown}; choose from {', '.join(KINDS)}")
    sizes = sorted({args.accounts, args.compare_accounts} - {0})
    results = [
        run_size(n, args.seed, args.repeats, kinds, args.world, args.chunk_accounts) for n in sizes
    ]
    _report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
