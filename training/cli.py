"""Subcommands of the training stage: `examples`, `train`, `evaluate` and `promote`.

Handlers parse arguments, call the library and write; heavy libraries are imported inside
them so `exportguard --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MLFLOW_UI = "mlflow ui --backend-store-uri sqlite:///mlflow.db"
PARAMS_HELP = "parameters (default: ./params.yaml if present, else built-in defaults)"


def _params(args: argparse.Namespace) -> Any:
    """params.yaml as typed Params (an explicit --params must exist)."""
    from exportguard.training.config import load_params

    path = args.params
    if path is None and Path("params.yaml").is_file():
        path = Path("params.yaml")
    return load_params(path)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
    tmp.replace(path)


def _feature_set(args: argparse.Namespace, params: Any) -> Any:
    from exportguard.errors import ExportguardError
    from exportguard.training.inputs import build_feature_set, load_feature_set

    if args.features is not None:
        if args.as_of:
            raise ExportguardError("--as-of cannot be combined with --features (fixed when built)")
        return load_feature_set(args.features, params, args.data)
    if args.data is None:
        raise ExportguardError(
            "give --data DIR (raw tables) or --features DIR (a saved feature set)"
        )
    return build_feature_set(args.data, params, args.as_of)


def _examples(args: argparse.Namespace) -> int:
    from exportguard.training.inputs import build_feature_set, save_feature_set

    params = _params(args)
    fs = build_feature_set(args.data, params, args.as_of, args.reviewed_labels)
    save_feature_set(fs, args.out, params)
    kinds = fs.examples["kind"].value_counts().to_dict()
    print(
        f"wrote {len(fs.examples):,} training examples {kinds} and {len(fs.population):,} "
        f"population rows as of {fs.as_of} to {args.out}"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from exportguard.training.inputs import read_truth
    from exportguard.training.pipeline import run_training
    from exportguard.training.provenance import git_commit
    from exportguard.training.report import render_table

    params = _params(args)
    truth = read_truth(args.truth) if args.truth else None
    fs = _feature_set(args, params)
    result = run_training(fs.examples, fs.population, fs.as_of, params, truth)
    project = Path.cwd()
    commit = git_commit(Path(__file__).resolve().parent.parent)
    metadata = {
        "model_name": params.registry.model_name,
        "model_version": "unregistered",
        "as_of": fs.as_of.isoformat(),
        "data_fingerprint": fs.fingerprint,
        "git_commit": commit,
        "trees": result.booster.current_iteration(),
        "metrics": {
            section: {m: result.metrics[section]["model"][m] for m in ("ap", "recall_at_k")}
            for section in ("test", "truth")
            if section in result.metrics
        },
        "train_params": params.train.model_dump(mode="json"),
        "trained_through": None
        if result.trained_through is None
        else result.trained_through.isoformat(),
        "recipe": {
            "digest": None if result.recipe is None else result.recipe.digest,
            "examples": result.metrics["refit"]["examples"],
            "fold_best_iterations": result.metrics["refit"]["fold_best_iterations"],
            "backtest_ap_mean": result.metrics["folds"]["model_ap_mean"],
            "backtest_recall_at_k_mean": result.metrics["folds"]["model_recall_at_k_mean"],
        },
    }
    logged = None
    if not args.no_track:
        from exportguard.training.tracking import log_run

        tags = {
            "data_fingerprint": fs.fingerprint,
            "git_commit": commit,
            "as_of": fs.as_of.isoformat(),
            "data_dir": str(args.data or args.features),
            "n_features": str(len(result.importance)),
        }
        logged = log_run(
            result, params, metadata, project_dir=project, tags=tags, register=not args.no_register
        )
        metadata.update(run_id=logged.run_id, model_version=logged.model_version or "unregistered")
    if args.out is not None:
        _write_run_dir(args.out, result, metadata, params.policy)
    if args.out_metrics is not None:
        _write_json(args.out_metrics, result.metrics)
    print(render_table(result.metrics))
    print()
    if logged is not None:
        registered = (
            f"registered as {params.registry.model_name} version {logged.model_version}"
            if logged.model_version
            else "not registered (--no-register)"
        )
        print(f"MLflow run {logged.run_id} ({logged.tracking_uri}), {registered}.")
        embedded = logged.tracking_uri == f"sqlite:///{project.resolve() / 'mlflow.db'}"
        print(f"Look at it: {MLFLOW_UI}" if embedded else f"Look at it in {logged.tracking_uri}")
        if logged.model_version:
            print(f"Promote it: exportguard promote --version {logged.model_version}")
    return 0


def _write_run_dir(out: Path, result: Any, metadata: dict[str, Any], policy: Any) -> None:
    """The run's local outputs: candidate bundle, holdout, population scores, baseline, metrics."""
    from exportguard.training.export import write_result_bundle

    out.mkdir(parents=True, exist_ok=True)
    write_result_bundle(out / "bundle", result, metadata, policy)
    result.holdout.to_parquet(out / "holdout.parquet", index=False)
    result.population.to_parquet(out / "population_scores.parquet", index=False)
    _write_json(out / "logistic.json", result.logistic.to_json())
    _write_json(out / "metrics.json", result.metrics)


def _evaluate(args: argparse.Namespace) -> int:
    from exportguard.training.evaluate import evaluate_run_dir
    from exportguard.training.inputs import read_truth
    from exportguard.training.report import render_table, summary

    params = _params(args)
    truth = read_truth(args.truth) if args.truth else None
    fs = _feature_set(args, params)
    metrics = evaluate_run_dir(args.run, fs, params, truth)
    if args.out_metrics is not None:
        _write_json(args.out_metrics, summary(metrics))
    print(render_table(metrics))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from exportguard.training.promote import promote

    params = _params(args)
    fs = _feature_set(args, params)
    result, bundle = promote(params, args.version, args.out, Path.cwd(), fs)
    name, alias = params.registry.model_name, params.registry.champion_alias
    c = result.candidate
    if result.champion is None:
        print(
            f"{name} version {bundle.version} is the first {alias} (its recipe's backtest: "
            f"AP {c['ap']:.4f}, recall@{c['k']} {c['recall_at_k']:.4f})."
        )
    else:
        print(
            f"{name} version {bundle.version} passed the gate and is now {alias}; recipes "
            f"backtested on today's folds: AP {c['ap']:.4f} vs {result.champion['ap']:.4f}, "
            f"recall@{c['k']} {c['recall_at_k']:.4f} vs {result.champion['recall_at_k']:.4f}; "
            f"the two models' top-{c['k']} lists overlap "
            f"{result.details['top_k_overlap']:.0%} on today's population."
        )
    print(f"SHAP additivity: max error {result.additivity_error:.1e}")
    print(f"Exported to {bundle.path} (bundle sha256 {bundle.sha256[:16]}…)")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, metavar="DIR", help="data directory (raw tables)")
    p.add_argument(
        "--features",
        type=Path,
        metavar="DIR",
        help="a feature set saved by `exportguard examples` (checked against --data if given)",
    )
    p.add_argument("--params", type=Path, metavar="params.yaml", help=PARAMS_HELP)
    p.add_argument("--truth", type=Path, metavar="PATH", help="ground truth (synthetic worlds)")
    p.add_argument("--as-of", metavar="T", help="the data's now (default: params, else horizon)")


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `exportguard` parser."""
    p = sub.add_parser(
        "examples",
        help="build the point-in-time training set (features at each label time)",
        description="Validate DIR and write OUT/examples.parquet (each labelled account as of "
        "its labelled_at, plus presumed negatives if enabled), OUT/population.parquet (every "
        "account as of the as-of time) and OUT/manifest.json.",
    )
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="data directory")
    p.add_argument("--params", type=Path, metavar="params.yaml", help=PARAMS_HELP)
    p.add_argument("--as-of", metavar="T", help="the data's now (default: params, else horizon)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output directory")
    p.add_argument(
        "--reviewed-labels",
        type=Path,
        metavar="FILE",
        help="labels decided in the review workspace (`exportguard review export-labels`), "
        "added to DIR's labels under the same contract checks",
    )
    p.set_defaults(handler=_examples)

    p = sub.add_parser(
        "train",
        help="train, evaluate against baselines, log to MLflow and register",
        description="Train the LightGBM model on a time split, calibrate it, derive bands from "
        "the review capacity, evaluate it next to a logistic regression and a red-flag count "
        f"rule, log the run to MLflow and register a new model version. See it: {MLFLOW_UI}",
    )
    _data_args(p)
    p.add_argument("--out-metrics", type=Path, metavar="FILE", help="write the metrics as JSON")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write the candidate bundle, holdout, baseline and metrics here",
    )
    p.add_argument("--no-register", action="store_true", help="log the run, register no version")
    p.add_argument("--no-track", action="store_true", help="no MLflow at all (dry run)")
    p.set_defaults(handler=_train)

    p = sub.add_parser(
        "evaluate",
        help="re-evaluate a trained candidate from its exported files",
        description="Load the candidate bundle written by `train --out RUN` (hashes checked), "
        "check it reproduces the training scores, and evaluate it with both baselines on the "
        "test labels and, with --truth, on every never-reviewed account.",
    )
    _data_args(p)
    p.add_argument("--run", type=Path, required=True, metavar="RUN", help="`train --out` directory")
    p.add_argument(
        "--out-metrics", type=Path, metavar="FILE", help="write the headline metrics as JSON"
    )
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser(
        "promote",
        help="gate a registered version against the champion and export it",
        description="Backtest the candidate's recipe and the champion's (parameters and "
        "feature list from their bundles) on the same rolling time folds of today's training "
        "set; move the champion alias only if the candidate's is not worse on mean AP and "
        "recall@k and its SHAP values add up; report the two models' top-k overlap; then "
        "export the champion bundle. Exits 1 with the reason when refused.",
    )
    p.add_argument("--version", metavar="V", help="registered version (default: the latest)")
    p.add_argument(
        "--features",
        type=Path,
        metavar="DIR",
        help="today's training set from `exportguard examples` (the folds the recipes run on)",
    )
    p.add_argument("--data", type=Path, metavar="DIR", help="or the raw tables to build it from")
    p.add_argument("--as-of", metavar="T", help="with --data: the data's now")
    p.add_argument("--params", type=Path, metavar="params.yaml", help=PARAMS_HELP)
    p.add_argument(
        "--out", type=Path, default=Path("models/champion"), metavar="DIR", help="export directory"
    )
    p.set_defaults(handler=_promote)
