"""The end of a batch run: reconcile counts, enforce the quarantine limit, report, commit.

Shared by both engines: given the finished chunks' sidecars it checks that scored plus
quarantined rows equal the input rows, refuses the run (before anything becomes visible)
when the quarantined share is above the limit, merges the quarantined rows into one file,
writes the summary and drift report, and commits with the manifest written last.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from exportguard.batch.plan import Plan
from exportguard.batch.rows import ID, QUARANTINE_REASON, quarantine_schema
from exportguard.batch.store import (
    FORMAT_VERSION,
    LOCK,
    MANIFEST,
    BatchError,
    atomic_write,
    committed_runs,
)
from exportguard.digest import sha256_file
from exportguard.monitoring.drift import band_rises, drift_section, merge_stats

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.parquet"


def reason_category(reason: str) -> str:
    """Group a quarantine reason without its value: 'non-finite x', 'x out of range', ..."""
    if m := re.match(r"non-finite (\w+)=", reason):
        return f"non-finite {m.group(1)}"
    if m := re.match(r"(\w+)=\S+ outside ", reason):
        return f"{m.group(1)} out of range"
    return reason


def quarantine_breakdown(base: Path, metas: list[dict[str, Any]]) -> dict[str, int]:
    """Quarantined rows per reason category (a row with several problems counts in each)."""
    counts: Counter[str] = Counter()
    for m in metas:
        if m["quarantine"]["rows"]:
            col = pq.read_table(base / m["quarantine"]["file"], columns=[QUARANTINE_REASON])
            for text in col.column(0).to_pylist():
                counts.update(reason_category(r) for r in text.split("; "))
    return dict(counts.most_common())


def _merge_quarantine(base: Path, metas: list[dict[str, Any]]) -> dict[str, Any]:
    """One quarantine file (rows in input order) from the chunks' files."""
    path = base / QUARANTINE_FILE
    schema = quarantine_schema()

    def write(fh: Any) -> None:
        with pq.ParquetWriter(fh, schema) as writer:
            for m in sorted(metas, key=lambda m: m["first_row"]):
                if m["quarantine"]["rows"]:
                    writer.write_table(pq.read_table(base / m["quarantine"]["file"], schema=schema))

    atomic_write(path, write)
    return {
        "file": QUARANTINE_FILE,
        "rows": sum(m["quarantine"]["rows"] for m in metas),
        "sha256": sha256_file(path),
    }


def _band_changes(plan: Plan, base: Path, metas: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Compare bands with the latest committed run in OUT (None if there is none)."""
    from exportguard.batch.store import read_batch_output

    previous = [m for m in committed_runs(plan.config.out) if m["run_id"] != plan.info.run_id]
    if not previous:
        return None
    prev = previous[-1]
    cols = [ID, "band", "score"]
    before = read_batch_output(plan.config.out, prev["run_id"], columns=cols)
    tables = [pq.read_table(base / m["part"]["file"], columns=cols) for m in metas]
    now = pa.concat_tables(tables).to_pandas() if tables else pd.DataFrame(columns=cols)
    out = band_rises(now, before)
    out["previous_run_id"] = prev["run_id"]
    out["previous_as_of"] = prev.get("as_of")
    return out


def finalize(plan: Plan, metas: list[dict[str, Any]]) -> dict[str, Any]:
    """Check, report and commit a run whose chunks are all finished; returns the manifest."""
    from exportguard.monitoring.report import log_to_mlflow, write_report

    base = plan.staging.dir
    rows_in = sum(m["rows_in"] for m in metas)
    scored = sum(m["part"]["rows"] for m in metas)
    quarantined = sum(m["quarantine"]["rows"] for m in metas)
    if rows_in != plan.input.rows or scored + quarantined != rows_in:
        raise BatchError(
            f"row counts do not reconcile: input {plan.input.rows}, chunks read {rows_in}, "
            f"scored {scored} + quarantined {quarantined}; rerun to recompute the staging dir {base}"
        )
    share = quarantined / rows_in if rows_in else 0.0
    breakdown = quarantine_breakdown(base, metas)
    limit = plan.config.max_quarantine_share
    if share > limit:
        top = ", ".join(f"{k}: {v}" for k, v in list(breakdown.items())[:5])
        raise BatchError(
            f"{quarantined} of {rows_in} rows ({share:.2%}) could not be scored, above the allowed "
            f"{limit:.2%} (--max-quarantine-share); nothing was committed. Reasons: {top}. "
            f"The quarantined rows are in {base}/quar-*.parquet"
        )
    _remove_strays(base, metas)
    quarantine = _merge_quarantine(base, metas)
    stats = merge_stats(m["stats"] for m in metas)
    summary = {
        "run_id": plan.info.run_id,
        "as_of": plan.info.as_of.isoformat(),
        "engine": plan.config.engine,
        "model": {
            "name": plan.bundle.name,
            "version": plan.bundle.version,
            "sha256": plan.bundle.sha256,
        },
        "counts": {"input": rows_in, "scored": scored, "quarantined": quarantined},
        "quarantine_share": share,
        "quarantine_reasons": breakdown,
        "bands": stats["bands"],
        "reference_bands": plan.bundle.reference.get("bands"),
        "score": {
            "mean": stats["score_sum"] / scored if scored else None,
            "histogram": {"range": [0.0, 1.0], "counts": stats["score_hist"]},
        },
        "drift": drift_section(stats, plan.bundle.reference),
        "top_accounts": stats["top"],
        "band_changes": _band_changes(plan, base, metas),
    }
    report_files = write_report(base, summary, stats, plan.bundle.reference)
    manifest = {
        "format_version": FORMAT_VERSION,
        "run_id": plan.info.run_id,
        "as_of": plan.info.as_of.isoformat(),
        "engine": plan.config.engine,
        "committed_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "model": {**summary["model"], "path": str(plan.bundle.path)},
        "input": {
            "source": plan.source,
            "path": str(plan.input.path),
            "fingerprint_sha256": plan.fingerprint,
            "rows": rows_in,
        },
        "options": {
            "chunk_rows": plan.config.chunk_rows,
            "top_k": plan.config.top_k,
            "contributions": plan.config.contributions,
        },
        "counts": summary["counts"],
        "parts": [
            {"file": m["part"]["file"], "rows": m["part"]["rows"], "sha256": m["part"]["sha256"]}
            for m in sorted(metas, key=lambda m: m["first_row"])
        ],
        "quarantine": quarantine,
        "reports": {name: sha256_file(base / name) for name in report_files},
    }
    final = plan.staging.commit(manifest)
    for m in metas:  # merged into quarantine.parquet / the summary; not part of the run
        (final / m["quarantine"]["file"]).unlink(missing_ok=True)
        (final / f"{Path(m['part']['file']).stem}.json").unlink(missing_ok=True)
    log.info(
        "committed run %s to %s: %d scored, %d quarantined (%.2f%%); bands %s",
        plan.info.run_id,
        final,
        scored,
        quarantined,
        100 * share,
        stats["bands"],
    )
    log_to_mlflow(final, summary)
    return {**manifest, "_dir": str(final)}


def _remove_strays(base: Path, metas: list[dict[str, Any]]) -> None:
    """Delete chunk files of an earlier, differently partitioned attempt (never committed)."""
    keep = {MANIFEST, "plan.json", LOCK}
    for m in metas:
        keep |= {m["part"]["file"], m["quarantine"]["file"], f"{Path(m['part']['file']).stem}.json"}
    for f in base.iterdir():
        stray = f.name.startswith(("part-", "quar-")) and f.name not in keep
        if f.is_file() and (stray or (f.name.startswith(".") and f.name.endswith(".tmp"))):
            log.info("removing %s left by an earlier attempt", f.name)
            f.unlink()
