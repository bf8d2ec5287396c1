"""Benchmark: point-in-time account features against a floor, at 100k (and 25k) accounts.

Run by hand, never in CI:

    .venv/bin/python bench/features.py --accounts 100000            # also runs 25000
    .venv/bin/python bench/features.py --accounts 20000 --compare-accounts 5000 --repeats 1

For each world size a synthetic world is generated (exportguard.synth.generate_world) and
written as Parquet to a temporary directory. Each measurement then runs in its own
subprocess, so its peak RSS (ru_maxrss from wait4) is its own:

* floor    - read the same tables (pd.read_parquet) + one groupby-sum of api_usage tokens
             by account: the least any per-account feature job must do;
* features - the same reads, then `account_features` as of the end of the timeline;
* contract - `contract.read_tables` (read + coerce + validate) then `account_features`,
             i.e. what `exportguard features` does, when the reader exists.

With `--relational` (the families ported to `features.sql` so far, as of the end):

* duck_floor - DuckDB reading api_usage.parquet + one group-by sum of tokens by account;
* numpy_ported  - the same reads, then the numpy engine's families that are ported:
               `geo_features` (its 8 api_usage features plus 4 from logins and accounts),
               `payment_features` (7) and `reseller_features` (8);
* duckdb_ported - the same reads, then every `features.sql` family on DuckDB (23 features);
* spark_ported  - the same on Spark local[*] (SparkSession start-up timed separately).

Reported: wall time (median of --repeats), peak RSS, and ratios to the floor.
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


def measure(kind: str, data: Path) -> dict:
    """One timed measurement (runs inside the child process)."""
    import pandas as pd

    as_of = _as_of(data)
    if kind != "floor":  # imports are not part of the timed work
        from exportguard.features.compute import account_features
        from exportguard.features.tables import RawTables  # noqa: F401
    if kind == "contract":
        from exportguard.features.contract import read_tables
    if kind in ("numpy_ported", "duckdb_ported", "spark_ported", "duck_floor"):
        return measure_relational(kind, data, as_of)
    t0 = time.perf_counter()
    if kind == "floor":
        tables = _read_raw(data)
        u = tables.api_usage
        sums = (u["input_tokens"] + u["output_tokens"]).groupby(u["account_id"]).sum()
        return {"seconds": time.perf_counter() - t0, "rows": int(len(u)), "out": int(len(sums))}
    if kind == "features":
        tables = _read_raw(data)
    else:
        tables = read_tables(data)
        tables = tables[0] if isinstance(tables, tuple) else tables
    t1 = time.perf_counter()
    frame = account_features(tables, pd.Timestamp(as_of))
    t2 = time.perf_counter()
    return {"seconds": t2 - t0, "read": t1 - t0, "compute": t2 - t1, "out": int(len(frame))}


def measure_relational(kind: str, data: Path, as_of) -> dict:
    """The relational families against the numpy engine's same family (child process)."""
    import numpy as np
    import pandas as pd

    from exportguard.features.sql import DuckDBEngine, SparkEngine, sql_features

    t0 = time.perf_counter()
    if kind == "duck_floor":
        eng = DuckDBEngine()
        path = str(data / "api_usage.parquet").replace("'", "''")
        sums = eng.query(
            f"SELECT account_id, sum(input_tokens + output_tokens) AS t FROM '{path}' GROUP BY 1"
        )
        return {"seconds": time.perf_counter() - t0, "out": int(len(sums))}
    tables = _read_raw(data)
    t1 = time.perf_counter()
    alive = tables.accounts.loc[pd.to_datetime(tables.accounts["created_at"]) < as_of]
    start = 0.0
    if kind == "numpy_ported":
        from exportguard.features.context import Context, index_codes, timestamp_ns
        from exportguard.features.geo import geo_features
        from exportguard.features.payments import payment_features
        from exportguard.features.policy import Policy
        from exportguard.features.reseller import reseller_features

        acc = index_codes(alive["account_id"], pd.Index(tables.accounts["account_id"]))
        asof = np.full(len(acc), timestamp_ns(as_of), dtype=np.int64)
        ctx = Context(tables, acc, asof, Policy(), Policy().max_prefix_accounts)
        geo, pay, res = geo_features(ctx), payment_features(ctx), reseller_features(ctx)
        out = len(geo["distinct_asns_30d"])
        assert len(pay["failed_payment_rate"]) == out == len(res["api_keys_30d"])
    else:
        requests = pd.DataFrame({"account_id": alive["account_id"], "as_of": as_of})
        if kind == "spark_ported":
            from exportguard.batch.spark import spark_session

            # the tables travel from the driver as Arrow: Spark's 1 GiB default heap is too small
            os.environ.setdefault("PYSPARK_SUBMIT_ARGS", "--driver-memory 12g pyspark-shell")
            spark = spark_session()
            spark.conf.set("spark.sql.session.timeZone", "UTC")
            spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
            start = time.perf_counter() - t1
            engine = SparkEngine(spark)
        else:
            engine = DuckDBEngine()
        out = len(sql_features(tables, requests, engine=engine))
    t2 = time.perf_counter()
    return {"seconds": t2 - t0 - start, "read": t1 - t0, "compute": t2 - t1 - start,
            "startup": start, "out": int(out)}  # fmt: skip


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
    result["peak_rss_mib"] = usage.ru_maxrss / 1024.0
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


def run_size(
    n: int, seed: int, repeats: int, with_contract: bool, relational: bool = False
) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"eg-bench-{n}-") as tmp:
        data = Path(tmp)
        t0 = time.perf_counter()
        rows = _generate(n, seed, data)
        gen_s = time.perf_counter() - t0
        mib = sum(p.stat().st_size for p in data.iterdir()) / 2**20
        print(
            f"[{n:,} accounts] generated in {gen_s:.0f}s: {rows:,} api_usage rows, {mib:.0f} MiB parquet",
            flush=True,
        )
        kinds = ["floor", "features"] + (["contract"] if with_contract else [])
        if relational:
            kinds = ["floor", "duck_floor", "numpy_ported", "duckdb_ported", "spark_ported"]
        runs: dict[str, list[dict]] = {k: [] for k in kinds}
        for i in range(repeats):
            for kind in kinds:
                runs[kind].append(_child(kind, data))
                r = runs[kind][-1]
                print(
                    f"  run {i + 1} {kind:8s} {r['seconds']:7.2f}s  peak {r['peak_rss_mib']:7.0f} MiB",
                    flush=True,
                )
    summary = {"accounts": n, "api_usage_rows": rows}
    for kind, rs in runs.items():
        summary[kind] = {
            key: statistics.median(r[key] for r in rs)
            for key in ("seconds", "peak_rss_mib", "read", "compute", "startup")
            if key in rs[0]
        }
    return summary


def _report(results: list[dict]) -> None:
    print(
        "\naccounts  usage_rows  measure    wall_s  (read_s  compute_s)  x_floor  peak_MiB  x_floor_rss"
    )
    for res in results:
        floor = res["floor"]
        for kind in ("floor", "features", "contract", "duck_floor", "numpy_ported", "duckdb_ported",
                     "spark_ported"):  # fmt: skip
            if kind not in res:
                continue
            m = res[kind]
            split = f"({m['read']:6.2f}  {m['compute']:8.2f})" if "read" in m else " " * 19
            print(
                f"{res['accounts']:8,}  {res['api_usage_rows']:10,}  {kind:8s} {m['seconds']:8.2f}  {split}"
                f"  {m['seconds'] / floor['seconds']:7.1f}  {m['peak_rss_mib']:8.0f}"
                f"  {m['peak_rss_mib'] / floor['peak_rss_mib']:11.1f}"
            )
    if len(results) > 1 and all("features" in r for r in results):
        small, big = sorted(results, key=lambda r: r["accounts"])[:: len(results) - 1]
        data_growth = big["api_usage_rows"] / small["api_usage_rows"]
        rss_growth = big["features"]["peak_rss_mib"] / small["features"]["peak_rss_mib"]
        print(
            f"\nfrom {small['accounts']:,} to {big['accounts']:,} accounts: api_usage rows x{data_growth:.2f}, "
            f"features peak RSS x{rss_growth:.2f}, features wall x"
            f"{big['features']['seconds'] / small['features']['seconds']:.2f}"
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
    p.add_argument("--no-contract", action="store_true", help="skip the read_tables measurement")
    p.add_argument(
        "--relational",
        action="store_true",
        help="measure the families ported to features.sql against the numpy engine",
    )
    kinds = (
        "floor",
        "features",
        "contract",
        "duck_floor",
        "numpy_ported",
        "duckdb_ported",
        "spark_ported",
    )
    p.add_argument("--measure", choices=kinds, help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.data)))
        return 0
    try:
        import exportguard.features.contract  # noqa: F401

        with_contract = not args.no_contract
    except ImportError:
        with_contract = False
    sizes = sorted({args.accounts, args.compare_accounts} - {0})
    results = [run_size(n, args.seed, args.repeats, with_contract, args.relational) for n in sizes]
    _report(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
