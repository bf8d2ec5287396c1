"""Benchmark: detection quality over several seeds and both world scenarios.

Run by hand, never in CI (about 3-4 minutes per world at 20k accounts on 2 cores):

    .venv/bin/python bench/quality.py                          # 3 seeds x {default, hard}, 20k
    .venv/bin/python bench/quality.py --seeds 1 2 --scenarios hard --accounts 10000

For each world (generated into --workdir and reused unless --fresh), exactly what
`exportguard train --truth` does, then five scorers on the accounts never reviewed before the
as-of time, against the ground truth:

* candidate   - the recipe refitted on every matured label (what `train` deploys);
* fold_model  - the latest backtest fold's model (what was deployed before the refit);
* no_new_fam  - the candidate's recipe without the added families and flags
                (registry.ADDED_FAMILIES / ADDED_FLAGS), backtested and refitted the same way;
* logistic    - the logistic-regression baseline on the same examples;
* red_flags   - the red-flag count.

With --ablate, also the candidate's recipe without each added family and without the
added flags, one group at a time (the change in AP and recall@1% against the candidate).

Reported per world and as mean +- sd over seeds: AP, recall@1% and precision@100, plus the
candidate's recall@1% per typology. Results are also written as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from exportguard.telemetry import disable_telemetry

SCORERS = ("candidate", "fold_model", "no_new_fam", "logistic", "red_flags")


def _metrics(y: np.ndarray, score: np.ndarray, typ: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import average_precision_score

    n = len(y)
    k1 = max(1, int(round(0.01 * n)))
    order = np.argsort(-score, kind="stable")
    top1, top100 = order[:k1], order[:100]
    out: dict[str, Any] = {
        "ap": float(average_precision_score(y, score)),
        "recall_at_1pct": float(y[top1].sum() / max(1, y.sum())),
        "precision_at_100": float(y[top100].mean()),
    }
    per = {}
    for t in sorted(set(typ[y == 1])):
        m = (typ == t) & (y == 1)
        per[t] = {"n": int(m.sum()), "recall_at_1pct": float(m[top1].sum() / m.sum())}
    out["by_typology"] = per
    return out


def _one_world(
    accounts: int, seed: int, scenario: str, days: int, work: Path, fresh: bool, ablate: bool
) -> dict[str, Any]:
    from exportguard.features.matrix import model_matrix
    from exportguard.features.registry import ADDED_FAMILIES, ADDED_FLAGS, BY_NAME, FEATURE_NAMES
    from exportguard.synth.world import generate_world, write_world
    from exportguard.training.config import load_params
    from exportguard.training.inputs import build_feature_set, read_truth
    from exportguard.training.pipeline import run_training, use_presumed_negatives
    from exportguard.training.recipe import Recipe, backtest, matured_rows, refit, refit_trees

    params = load_params(None)
    world = work / f"world_{scenario}_{accounts}_{seed}"
    truth_path = work / f"world_{scenario}_{accounts}_{seed}_truth.parquet"
    if fresh or not (world / "accounts.parquet").exists() or not truth_path.exists():
        w = generate_world(accounts, seed, days=days, scenario=scenario)
        write_world(w, world, truth_path)
    t0 = time.perf_counter()
    truth = read_truth(truth_path)
    fs = build_feature_set(world, params)
    result = run_training(fs.examples, fs.population, fs.as_of, params, truth)
    pop = result.population  # account_id, reviewed_before, raw, score_logistic, score_red_flags
    frame = fs.population.set_index("account_id").loc[pop["account_id"]].reset_index()

    ex = use_presumed_negatives(fs.examples, params)

    def without(drop: set[str]) -> np.ndarray:
        """The candidate's recipe without `drop`, backtested and refitted the same way."""
        subset = tuple(n for n in FEATURE_NAMES if n not in drop)
        recipe = Recipe(params.train, features=subset)
        bt = backtest(recipe, ex, fs.as_of, params)
        rows = matured_rows(ex, fs.as_of, params)
        small = refit(recipe, ex, rows, refit_trees(bt, len(rows), params.train))
        return small.predict(model_matrix(frame, subset), raw_score=True)

    groups = {f: {n for n in FEATURE_NAMES if BY_NAME[n].family == f} for f in ADDED_FAMILIES}
    groups["added_flags"] = set(ADDED_FLAGS)
    added = set().union(*groups.values())
    scores = {
        "candidate": pop["raw"].to_numpy(),
        "fold_model": result.fold_booster.predict(model_matrix(frame), raw_score=True),
        "no_new_fam": without(added),
        "logistic": pop["score_logistic"].to_numpy(),
        "red_flags": pop["score_red_flags"].to_numpy(dtype=float),
    }
    if ablate:
        for name, drop in groups.items():
            scores[f"minus_{name}"] = without(drop)
    keep = ~pop["reviewed_before"].to_numpy(dtype=bool)
    t = truth.set_index("account_id").loc[pop["account_id"]]
    y = t["is_circumvention"].to_numpy(dtype=bool)[keep].astype(int)
    typ = t["typology"].fillna("none").astype(str).to_numpy(dtype=object)[keep]
    out = {name: _metrics(y, s[keep], typ) for name, s in scores.items()}
    return {
        "scenario": scenario,
        "seed": seed,
        "accounts": accounts,
        "never_reviewed": int(keep.sum()),
        "never_reviewed_positives": int(y.sum()),
        "labelled": int((fs.examples["kind"] == "label").sum()),
        "backtest_ap_mean": result.metrics["folds"].get("model_ap_mean"),
        "seconds": round(time.perf_counter() - t0, 1),
        "scorers": out,
    }


def _summary(runs: list[dict[str, Any]], scenario: str) -> list[str]:
    rows = [r for r in runs if r["scenario"] == scenario]
    if not rows:
        return []
    seeds = ", ".join(str(r["seed"]) for r in rows)
    lines = [
        f"\n{scenario} scenario, seeds {seeds} (mean +- sd over seeds; never-reviewed accounts)"
    ]
    lines.append(f"  {'scorer':12s} {'AP':>15s} {'recall@1%':>15s} {'P@100':>15s}")
    for name in SCORERS:
        cells = []
        for metric in ("ap", "recall_at_1pct", "precision_at_100"):
            v = np.array([r["scorers"][name][metric] for r in rows])
            cells.append(f"{v.mean():7.3f} +- {v.std(ddof=1) if len(v) > 1 else 0.0:5.3f}")
        lines.append(f"  {name:12s} " + " ".join(f"{c:>15s}" for c in cells))
    extra = [n for n in rows[0]["scorers"] if n.startswith("minus_")]
    for name in extra:
        d = np.array([r["scorers"][name]["ap"] - r["scorers"]["candidate"]["ap"] for r in rows])
        dr = np.array(
            [
                r["scorers"][name]["recall_at_1pct"] - r["scorers"]["candidate"]["recall_at_1pct"]
                for r in rows
            ]
        )
        lines.append(
            f"  {name:24s} AP change {d.mean():+.3f} +- {d.std(ddof=1) if len(d) > 1 else 0.0:.3f}, "
            f"recall@1% change {dr.mean():+.3f} (vs candidate, per seed)"
        )
    wins = [r["scorers"]["candidate"]["ap"] > r["scorers"]["fold_model"]["ap"] for r in rows]
    lines.append(f"  candidate AP > fold model AP on {sum(wins)}/{len(wins)} seeds")
    typs = sorted({t for r in rows for t in r["scorers"]["candidate"]["by_typology"]})
    for t in typs:
        v = [
            r["scorers"]["candidate"]["by_typology"].get(t, {}).get("recall_at_1pct") for r in rows
        ]
        v = [x for x in v if x is not None]
        n = sum(r["scorers"]["candidate"]["by_typology"].get(t, {}).get("n", 0) for r in rows)
        lines.append(f"  candidate recall@1% {t:16s} {np.mean(v):.3f} (positives over seeds {n})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--accounts", type=int, default=20000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument(
        "--scenarios", nargs="+", choices=("default", "hard"), default=["default", "hard"]
    )
    p.add_argument("--workdir", type=Path, default=Path("bench/out/quality"))
    p.add_argument(
        "--out", type=Path, default=None, help="JSON results (default WORKDIR/quality.json)"
    )
    p.add_argument("--fresh", action="store_true", help="regenerate the worlds")
    p.add_argument(
        "--ablate",
        action="store_true",
        help="also refit without each added family (network_mix, language_mix, rhythm) and "
        "without the added flags, one at a time",
    )
    args = p.parse_args(argv)
    disable_telemetry()
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for scenario in args.scenarios:
        for seed in args.seeds:
            r = _one_world(args.accounts, seed, scenario, args.days, work, args.fresh, args.ablate)
            runs.append(r)
            c = r["scorers"]
            print(
                f"{scenario} seed {seed}: never-reviewed {r['never_reviewed']:,} "
                f"({r['never_reviewed_positives']} circumventers), {r['seconds']} s; AP "
                + ", ".join(f"{n} {c[n]['ap']:.3f}" for n in SCORERS),
                flush=True,
            )
    out = args.out or work / "quality.json"
    out.write_text(json.dumps(runs, indent=2))
    for scenario in args.scenarios:
        print("\n".join(_summary(runs, scenario)))
    print(f"\nresults: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
