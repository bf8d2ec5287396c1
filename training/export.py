"""Write a trained model as a bundle (the format serving loads), and replace one atomically."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from exportguard.features.policy import Policy
from exportguard.scoring.bundle import (
    COMPUTED_SECTIONS,
    DERIVED_KEYS,
    Bundle,
    checked_bundle,
    write_bundle,
)
from exportguard.scoring.spec import feature_records
from exportguard.training.pipeline import TrainingResult

log = logging.getLogger(__name__)


def write_result_bundle(
    out_dir: Path, result: TrainingResult, metadata: dict[str, Any], policy: Policy
) -> Path:
    """Write the run's model, calibration, features, reference, policy and metadata.

    The metadata always records the recipe (`train_params`, with the feature list in
    features.json) and `trained_through`, the latest label time the model learned from.
    """
    metadata = dict(metadata)
    if result.recipe is not None:
        metadata["train_params"] = result.recipe.train.model_dump(mode="json")
        metadata["recipe_digest"] = result.recipe.digest
    if result.trained_through is not None:
        metadata["trained_through"] = result.trained_through.isoformat()
    return write_bundle(
        out_dir,
        model_text=result.booster.model_to_string(),
        calibration=result.calibration,
        bands=result.bands,
        features=feature_records(),
        reference=result.reference,
        metadata=metadata,
        policy=policy,
    )


def replace_bundle(bundle: Bundle, out_dir: Path, metadata_updates: dict[str, Any]) -> Bundle:
    """Export `bundle` (with updated metadata) to `out_dir`, swapping the directory in at once."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        k: v for k, v in bundle.metadata.items() if k not in (*DERIVED_KEYS, *COMPUTED_SECTIONS)
    }
    meta.update(metadata_updates)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    staging.chmod(0o755)  # mkdtemp makes 0700; serving may run as another user
    write_bundle(
        staging,
        model_text=bundle.model_text,
        calibration=bundle.calibration,
        bands=bundle.bands,
        features=list(bundle.features),
        reference=bundle.reference,
        metadata=meta,
        policy=bundle.policy,
    )
    checked_bundle(staging)  # verify before it becomes visible
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)
    log.info("exported %s version %s to %s", bundle.name, meta.get("model_version"), out_dir)
    return checked_bundle(out_dir)
