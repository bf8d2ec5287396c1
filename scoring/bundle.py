"""The exported model bundle: what serving and batch load, with no unpickling.

A bundle is a directory (by default `models/champion/`) holding

- `model.txt`        LightGBM text model (raw score = log-odds),
- `calibration.json` the isotonic map from raw score to probability, as interpolation knots,
- `features.json`    the feature list the model was trained on, in column order,
- `reference.json`   training-time reference distributions (drift reports),
- `policy.json`      the export-control policy the model's features were computed with,
- `metadata.json`    name, version, run id, bands, metrics, the feature spec
                     (`scoring.spec`: feature definitions, policy, horizon rule), the sha256 of each file above
                     and the sha256 of every other metadata key (its "sections").

`load_bundle` recomputes every hash before anything is parsed, so a tampered or
half-copied bundle is refused with the name of the file or metadata key that does not
match. `Bundle.sha256` is one digest over all file and section hashes: it changes when any
value that can change a decision (model, calibration, bands, features, policy) or any
other recorded fact changes, and batch run ids are derived from it. The hashes detect
edits and partial copies; they are not a signature (someone who rewrites the hashes too
makes a bundle with a new sha256, which is what serving and batch report).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exportguard.digest import json_digest, lines_digest
from exportguard.errors import BundleError
from exportguard.features.policy import Policy
from exportguard.fileio import ArtifactError, Writer, verify_files, write_files, write_manifest
from exportguard.scoring.calibration import Bands, Calibration
from exportguard.scoring.spec import check_spec, feature_records, feature_spec

log = logging.getLogger(__name__)

BUNDLE_FILES = (
    "model.txt",
    "calibration.json",
    "features.json",
    "reference.json",
    "policy.json",
)
#: Version 2 hashes every metadata key and carries policy.json; version 1 hashed files only.
FORMAT_VERSION = 2
#: metadata keys write_bundle computes itself (everything else is a hashed section)
DERIVED_KEYS = ("files", "sections", "bundle_sha256", "format_version")
#: hashed sections write_bundle derives from its arguments (never copied from old metadata)
COMPUTED_SECTIONS = ("bands", "feature_spec")


def section_hashes(metadata: dict[str, Any]) -> dict[str, str]:
    """sha256 of each metadata key's canonical JSON (derived keys excluded)."""
    return {key: json_digest(value) for key, value in metadata.items() if key not in DERIVED_KEYS}


def bundle_digest(file_hashes: dict[str, str], sections: dict[str, str]) -> str:
    """One sha256 over the sorted `file name:hash` and `meta key:hash` lines."""
    lines = [f"file {name}:{file_hashes[name]}" for name in sorted(file_hashes)]
    lines += [f"meta {key}:{sections[key]}" for key in sorted(sections)]
    return lines_digest(lines)


@dataclass(frozen=True)
class Bundle:
    path: Path
    model_text: str
    calibration: Calibration
    bands: Bands
    feature_names: tuple[str, ...]
    features: tuple[dict[str, Any], ...]
    reference: dict[str, Any]
    metadata: dict[str, Any]
    policy: Policy
    file_hashes: dict[str, str] = field(default_factory=dict)
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return bundle_digest(self.file_hashes, self.sections)

    @property
    def name(self) -> str:
        return str(self.metadata.get("model_name", "exportguard"))

    @property
    def version(self) -> str:
        return str(self.metadata.get("model_version", "unregistered"))


def _text(text: str) -> Writer:
    return lambda fh: fh.write(text.encode("utf-8"))


def write_bundle(
    out_dir: Path,
    *,
    model_text: str,
    calibration: Calibration,
    bands: Bands,
    features: list[dict[str, Any]],
    reference: dict[str, Any],
    metadata: dict[str, Any],
    policy: Policy,
) -> Path:
    """Write a bundle; metadata.json (with every file's and key's sha256) is written last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = {
        "model.txt": model_text,
        "calibration.json": json.dumps(calibration.to_json(), indent=1),
        "features.json": json.dumps(features, indent=1),
        "reference.json": json.dumps(reference, indent=1, sort_keys=True),
        "policy.json": json.dumps(policy.model_dump(mode="json"), indent=1, sort_keys=True),
    }
    hashes = write_files(out_dir, {name: _text(text) for name, text in contents.items()})
    meta = {k: v for k, v in metadata.items() if k not in DERIVED_KEYS}
    meta["bands"] = {"high": bands.high, "review": bands.review}
    meta["feature_spec"] = feature_spec(features, policy)
    meta = json.loads(json.dumps(meta))  # hash exactly what load_bundle will read back
    sections = section_hashes(meta)
    meta.update(
        format_version=FORMAT_VERSION,
        files=hashes,
        sections=sections,
        bundle_sha256=bundle_digest(hashes, sections),
    )
    write_manifest(out_dir / "metadata.json", meta)  # last: the bundle's commit point
    return out_dir


def verify_sections(meta: dict[str, Any], where: Path) -> dict[str, str]:
    """Recompute every metadata key's hash; raise naming the first key edited after export."""
    recorded = meta.get("sections")
    if not isinstance(recorded, dict):
        raise BundleError(f"{where}: no `sections` hashes recorded (malformed metadata)")
    actual = section_hashes(meta)
    for key in sorted(set(recorded) | set(actual)):
        if key not in actual:
            raise BundleError(f"{where}: metadata key `{key}` was removed after export")
        if key not in recorded:
            raise BundleError(f"{where}: metadata key `{key}` was added after export")
        if actual[key] != recorded[key]:
            raise BundleError(
                f"{where}: metadata key `{key}` changed after export (sha256 {actual[key][:12]}… "
                f"vs the recorded {str(recorded[key])[:12]}…)"
            )
    return actual


def load_bundle(
    path: Path, expected_features: tuple[str, ...] | None = None, *, legacy_ok: bool = False
) -> Bundle:
    """Verify every file's and metadata key's sha256, then parse; BundleError names what is wrong.

    `legacy_ok` reads a format-1 bundle (file hashes only, no policy.json, default policy)
    for comparison by the promotion gate; serving and batch never pass it.
    """
    path = Path(path)
    meta_path = path / "metadata.json"
    if not meta_path.is_file():
        raise BundleError(
            f"no model bundle at {path}: metadata.json is missing (run `exportguard promote` to export the champion)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        listed = dict(meta["files"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable bundle metadata ({exc})") from None
    legacy = legacy_ok and "format_version" not in meta
    if legacy:
        log.warning(
            "%s: reading a format-1 bundle (metadata not hash-checked) for comparison", path
        )
    elif meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{meta_path}: bundle format {meta.get('format_version', 1)!r}, this code reads "
            f"format {FORMAT_VERSION} (metadata and policy inside the digest); re-export it with "
            "`exportguard promote` or retrain"
        )
    names = tuple(n for n in BUNDLE_FILES if not (legacy and n == "policy.json"))
    missing = [n for n in names if n not in listed]
    if missing:
        raise BundleError(f"{meta_path}: no hash recorded for {missing}")
    try:
        verify_files(path, {name: listed[name] for name in names}, "model bundle")
    except ArtifactError as exc:
        raise BundleError(str(exc)) from None
    sections = section_hashes(meta) if legacy else verify_sections(meta, meta_path)
    if not legacy and meta.get("bundle_sha256") != bundle_digest(listed, sections):
        raise BundleError(f"{meta_path}: bundle_sha256 does not match the file and key hashes")
    try:
        features = tuple(json.loads((path / "features.json").read_text(encoding="utf-8")))
        names = tuple(str(f["name"]) for f in features)
        calibration = Calibration.from_json(
            json.loads((path / "calibration.json").read_text(encoding="utf-8"))
        )
        reference = json.loads((path / "reference.json").read_text(encoding="utf-8"))
        bands = Bands(float(meta["bands"]["high"]), float(meta["bands"]["review"]))
        policy = (
            Policy()
            if legacy
            else Policy.model_validate(
                json.loads((path / "policy.json").read_text(encoding="utf-8"))
            )
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{path}: malformed bundle file ({exc})") from None
    if expected_features is not None and names != tuple(expected_features):
        extra = sorted(set(names) - set(expected_features))
        lacking = sorted(set(expected_features) - set(names))
        raise BundleError(
            f"{path}: the model's feature list differs from this code's "
            f"(model only: {extra[:5]}, code only: {lacking[:5]}, or a different order); retrain or use a matching release"
        )
    return Bundle(
        path=path,
        model_text=(path / "model.txt").read_text(encoding="utf-8"),
        calibration=calibration,
        bands=bands,
        feature_names=names,
        features=features,
        reference=reference,
        metadata=meta,
        policy=policy,
        file_hashes=listed,
        sections=sections,
    )


def checked_bundle(path: Path | str, policy: Policy | None = None) -> Bundle:
    """Load a bundle for scoring: hashes verified, then its feature list and feature spec
    checked against this code (and its policy against `policy`, when one is given)."""
    bundle = load_bundle(Path(path), expected_features=tuple(r["name"] for r in feature_records()))
    check_spec(bundle, policy)
    return bundle
