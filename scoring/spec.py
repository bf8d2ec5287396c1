"""The feature spec that travels with a model: which features, computed under which policy.

A model is only right on features computed the way it was trained on them. The spec
pins that: the declared feature records (name, family, sentence template, monotone
direction, in column order) and their sha256, the policy's sha256, the horizon rule
(how a data directory's default as-of time is found) and a format version.
`write_bundle` records it as the bundle's `feature_spec` metadata key (hashed like every
other key); `scoring.bundle.checked_bundle` loads a bundle for scoring and refuses it, naming the
feature or policy key, when the spec does not match this code or the policy given.
Training (`evaluate`, `promote`), batch, the snapshot writer and the service all load
their model through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from exportguard.digest import json_digest
from exportguard.errors import BundleError
from exportguard.features.horizon import horizon_rule
from exportguard.features.policy import Policy, policy_differences
from exportguard.features.registry import FEATURES

if TYPE_CHECKING:  # bundle.py records the spec at export, so it imports this module
    from exportguard.scoring.bundle import Bundle

SPEC_FORMAT = 1
#: the Feature fields a spec pins (fmt only changes how a value is printed)
PINNED_FIELDS = ("name", "family", "doc", "monotone")


def feature_records() -> list[dict[str, Any]]:
    """features.json: the declared list in model column order, with display formats."""
    return [
        {"name": f.name, "family": f.family, "doc": f.doc, "monotone": f.monotone, "fmt": f.fmt}
        for f in FEATURES
    ]


def feature_spec(features: list[dict[str, Any]], policy: Policy) -> dict[str, Any]:
    """The spec of a feature list computed under a policy (what a bundle records)."""
    pinned = [{k: rec.get(k) for k in PINNED_FIELDS} for rec in features]
    return {
        "format": SPEC_FORMAT,
        "registry_sha256": json_digest(pinned),
        "n_features": len(pinned),
        "policy_sha256": json_digest(policy.model_dump(mode="json")),
        "horizon": horizon_rule(),
    }


def code_spec(policy: Policy) -> dict[str, Any]:
    """The spec this code computes features by, under `policy`."""
    return feature_spec(feature_records(), policy)


def _feature_mismatch(bundle: Bundle) -> str:
    """The first feature whose pinned fields differ between the bundle and this code."""
    ours = {r["name"]: r for r in feature_records()}
    theirs = {str(r.get("name")): r for r in bundle.features}
    for name in theirs:
        if name not in ours:
            return f"feature `{name}` is in the model but not declared by this code"
    for name in ours:
        if name not in theirs:
            return f"feature `{name}` is declared by this code but the model has none"
    for name, rec in theirs.items():
        for key in PINNED_FIELDS:
            if rec.get(key) != ours[name].get(key):
                return (
                    f"feature `{name}` changed its {key} "
                    f"(model: {rec.get(key)!r}, code: {ours[name].get(key)!r})"
                )
    return "the features are in another column order"


def check_spec(bundle: Bundle, policy: Policy | None = None) -> None:
    """Refuse a bundle whose feature spec differs from this code's or whose policy is not `policy`.

    `policy=None` means "the bundle's own policy" (what `batch --data` and the service use).
    """
    recorded = bundle.metadata.get("feature_spec")
    where = f"model {bundle.name} v{bundle.version} at {bundle.path}"
    if not isinstance(recorded, dict):
        raise BundleError(
            f"{where} records no feature spec (exported by an older release); re-export it "
            "with `exportguard promote` or retrain"
        )
    if recorded.get("format") != SPEC_FORMAT:
        raise BundleError(
            f"{where}: feature spec format {recorded.get('format')!r}, this code reads {SPEC_FORMAT}"
        )
    ours = code_spec(bundle.policy)
    if recorded.get("policy_sha256") != ours["policy_sha256"]:
        raise BundleError(f"{where}: policy.json does not match the policy its feature spec pins")
    if recorded.get("registry_sha256") != ours["registry_sha256"]:
        raise BundleError(
            f"{where} was trained on other feature definitions than this code computes: "
            f"{_feature_mismatch(bundle)}; retrain, or run the release the model was built with"
        )
    if recorded.get("horizon") != ours["horizon"]:
        raise BundleError(
            f"{where}: the as-of horizon rule differs (model: {recorded.get('horizon')}, code: "
            f"{ours['horizon']}); retrain, or run the release the model was built with"
        )
    if policy is not None:
        differ = policy_differences(policy, bundle.policy)
        if differ:
            raise BundleError(
                f"policy key(s) {differ} differ from the policy {where} was trained with "
                "(features must be computed under the model's policy; omit the policy to use "
                "the model's, or retrain with this one)"
            )
