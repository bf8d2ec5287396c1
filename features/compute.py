"""Point-in-time account features: the entry points every later stage calls.

`features_at` computes the declared features (registry.FEATURES) of many (account, as_of)
requests in one pass: each dated table is joined to the requests by account and only rows
dated strictly before the request's as_of are kept; windows (30 d, 90 d) are
[as_of - w, as_of). `account_features` is the same for every account created before one
time. Ownership and restricted_entities carry no dates and are used as the current
snapshot; an organisation incorporated at or after as_of is unknown at as_of.

Engines: `"duckdb"` (the default) runs the relational families (`features.sql`: 84 of the
88 features, and the graph's links) in embedded DuckDB; `"spark"` (or a
`features.sql.SparkEngine`) runs the same queries in Spark. Effective ownership and name
screening (`features.org`: per organisation, small) and the graph's components (union-find
over the links the queries extract, `features.graph`) run on numpy beside either. Both
engines give the same features (tests/integration/test_sql_features.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Union

import numpy as np
import pandas as pd

from exportguard.features.context import Context, index_codes, timestamp_ns, to_ns
from exportguard.features.graph import component_features
from exportguard.features.org import org_chain_features
from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES
from exportguard.features.tables import RawTables

if TYPE_CHECKING:
    from exportguard.features.graph import Links
    from exportguard.features.sql import Engine

log = logging.getLogger(__name__)

FamilyFunction = Callable[[Context], dict[str, np.ndarray]]

#: the engines a command can name (`--engine`); "spark" uses the active SparkSession, or a
#: new one configured by spark-submit / SPARK_* (else local[*])
ENGINES = ("duckdb", "spark")

EngineChoice = Union[str, "Engine"]


def account_features(
    tables: RawTables,
    as_of: pd.Timestamp,
    policy: Policy | None = None,
    *,
    max_prefix_accounts: int | None = None,
    engine: EngineChoice = "duckdb",
) -> pd.DataFrame:
    """One row per account created before `as_of`: ["account_id", *FEATURE_NAMES], by account_id."""
    t = timestamp_ns(as_of)
    acc = tables.accounts
    created = to_ns(acc["created_at"])
    alive = np.flatnonzero(created < t)
    ids = acc["account_id"].to_numpy(dtype=object)[alive]
    alive = alive[np.argsort(ids.astype(str), kind="stable")]
    req_asof = np.full(len(alive), t, dtype=np.int64)
    values = _compute(tables, alive.astype(np.int64), req_asof, policy, max_prefix_accounts, engine)
    frame = _assemble(acc["account_id"].to_numpy(dtype=object)[alive], None, values)
    return frame.drop(columns="as_of")


def features_at(
    tables: RawTables,
    requests: pd.DataFrame,
    policy: Policy | None = None,
    *,
    max_prefix_accounts: int | None = None,
    engine: EngineChoice = "duckdb",
) -> pd.DataFrame:
    """Features of each (account_id, as_of) request as of its own time, in request order."""
    missing = [c for c in ("account_id", "as_of") if c not in requests.columns]
    if missing:
        raise ValueError(f"requests lack column(s) {missing}; expected account_id and as_of")
    as_of = requests["as_of"]
    if as_of.isna().any():
        raise ValueError(f"requests: {int(as_of.isna().sum())} row(s) have no as_of time")
    req_asof = to_ns(as_of)
    req_acc = index_codes(requests["account_id"], pd.Index(tables.accounts["account_id"]))
    unknown = req_acc < 0
    if unknown.any():
        examples = requests["account_id"][unknown].astype(str).unique()[:5].tolist()
        raise ValueError(
            f"requests: {int(unknown.sum())} row(s) name an account not in accounts, e.g. {examples}"
        )
    created = to_ns(tables.accounts["created_at"])[req_acc]
    early = created >= req_asof
    if early.any():
        ex = requests.loc[early, ["account_id", "as_of"]].head(5)
        examples = [f"{a} as of {t}" for a, t in ex.itertuples(index=False)]
        raise ValueError(
            f"requests: {int(early.sum())} row(s) ask for an account as of a time before it was "
            f"created (no features exist then), e.g. {examples}"
        )
    values = _compute(tables, req_acc, req_asof, policy, max_prefix_accounts, engine)
    return _assemble(requests["account_id"].to_numpy(dtype=object), req_asof, values)


def _compute(
    tables: RawTables,
    req_acc: np.ndarray,
    req_asof: np.ndarray,
    policy: Policy | None,
    max_prefix_accounts: int | None,
    engine: EngineChoice = "duckdb",
) -> dict[str, np.ndarray]:
    policy = policy or Policy()
    if max_prefix_accounts is None:
        max_prefix_accounts = policy.max_prefix_accounts
    if max_prefix_accounts < 1:
        raise ValueError(f"max_prefix_accounts must be >= 1, got {max_prefix_accounts}")
    if isinstance(engine, str) and engine not in ENGINES:
        raise ValueError(f"unknown feature engine {engine!r}; choose one of {list(ENGINES)}")
    ctx = Context(tables, req_acc, req_asof, policy, max_prefix_accounts)
    values: dict[str, np.ndarray] = {}
    relational, links = _relational(tables, req_acc, req_asof, policy, engine)
    values.update(relational)

    def components(ctx: Context) -> dict[str, np.ndarray]:
        return component_features(ctx, links)

    # what is not relational: per organisation (chains of ownership, name screening) and
    # union-find over the graph's links
    families: list[FamilyFunction] = [org_chain_features, components]
    for family in families:
        part = family(ctx)
        clash = set(part) & set(values)
        if clash:
            raise RuntimeError(f"{family.__name__} recomputes {sorted(clash)}")
        values.update(part)
        log.debug("%s: %d feature(s) for %d request(s)", family.__name__, len(part), ctx.n_req)
    return values


def _relational(
    tables: RawTables,
    req_acc: np.ndarray,
    req_asof: np.ndarray,
    policy: Policy,
    engine: EngineChoice,
) -> tuple[dict[str, np.ndarray], dict[str, Links]]:
    """The relational families' features of the requests, by DuckDB or the engine given,
    and the graph's links for the components (answered on numpy: union-find)."""
    from exportguard.features.sql import SQL_FEATURES, DuckDBEngine, graph_links, sql_features

    if engine == "spark":
        from exportguard.batch.spark import spark_session
        from exportguard.features.sql import SparkEngine

        eng: Engine = SparkEngine(spark_session())
    elif engine == "duckdb":
        import tempfile

        from exportguard.settings import Settings

        settings = Settings.from_env()  # EXPORTGUARD_DUCKDB_MEMORY_LIMIT, _THREADS, SCAN_DIR
        # DuckDB spills here past its memory limit, not into the working directory
        spill = tempfile.TemporaryDirectory(prefix="exportguard-duckdb-", dir=settings.scan_dir)
        eng = DuckDBEngine(
            threads=settings.duckdb_threads,
            memory_limit=settings.duckdb_memory_limit,
            temp_directory=spill.name,
        )
    else:
        assert not isinstance(engine, str)
        eng = engine
    requests = pd.DataFrame(
        {
            "account_id": tables.accounts["account_id"].to_numpy(dtype=object)[req_acc],
            "as_of": pd.to_datetime(req_asof, unit="ns"),
        }
    )
    try:
        frame = sql_features(tables, requests, policy, eng, derive=["links_prefix"])
        links = graph_links(eng)
    finally:
        if engine == "duckdb" and isinstance(eng, DuckDBEngine):
            eng.close()
            spill.cleanup()
    return {name: frame[name].to_numpy(dtype=np.float64) for name in SQL_FEATURES}, links


def _assemble(
    account_ids: np.ndarray, req_asof: np.ndarray | None, values: dict[str, np.ndarray]
) -> pd.DataFrame:
    """The output frame, checked: exactly the declared features, float64, one row per request."""
    declared = set(FEATURE_NAMES)
    if set(values) != declared:
        raise RuntimeError(
            f"feature families disagree with the registry: missing "
            f"{sorted(declared - set(values))}, undeclared {sorted(set(values) - declared)}"
        )
    n = len(account_ids)
    columns: dict[str, object] = {"account_id": pd.array(account_ids.astype(str), dtype="str")}
    columns["as_of"] = pd.to_datetime(req_asof, unit="ns") if req_asof is not None else np.zeros(n)
    for name in FEATURE_NAMES:
        col = np.asarray(values[name], dtype=np.float64)
        if col.shape != (n,):
            raise RuntimeError(f"feature {name} has shape {col.shape}, expected ({n},)")
        if np.isinf(col).any():
            raise RuntimeError(f"feature {name} has infinite values")
        columns[name] = col
    return pd.DataFrame(columns)
