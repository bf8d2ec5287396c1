"""The two maps every score goes through after the model: calibration and review bands.

Fitted in training (`training.calibrate`), stored in the bundle, applied by the Scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from exportguard.errors import BundleError

BAND_NAMES = ("high", "review", "low")

CALIBRATION_METHODS = ("isotonic", "platt")


@dataclass(frozen=True)
class Calibration:
    """A monotone raw-score -> probability map stored as knots and applied with np.interp.

    `method` records how the knots were fitted: "isotonic" (np.interp reproduces sklearn's
    predict exactly) or "platt" (a sigmoid tabulated on a dense grid of raw scores).
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = "isotonic"

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise BundleError(f"unsupported calibration method {self.method!r}")
        if len(self.x) != len(self.y) or len(self.x) < 2:
            raise BundleError("calibration needs two or more (x, y) knots of equal count")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise BundleError("calibration x knots must be non-decreasing")
        if any(b < a for a, b in zip(self.y, self.y[1:], strict=False)) or not (
            0.0 <= self.y[0] and self.y[-1] <= 1.0
        ):
            raise BundleError("calibration y knots must be non-decreasing probabilities")

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(raw, dtype=float), self.x, self.y)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        if data.get("method") not in CALIBRATION_METHODS:
            raise BundleError(f"unsupported calibration method {data.get('method')!r}")
        return cls(
            tuple(float(v) for v in data["x"]),
            tuple(float(v) for v in data["y"]),
            str(data["method"]),
        )


@dataclass(frozen=True)
class Bands:
    """Probability thresholds: >= high -> 'high', >= review -> 'review', else 'low'."""

    high: float
    review: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.high <= 1.0:
            raise BundleError(f"band thresholds must satisfy 0 <= review <= high <= 1, got {self}")

    def assign(self, prob: np.ndarray) -> np.ndarray:
        prob = np.asarray(prob, dtype=float)
        return np.where(prob >= self.high, "high", np.where(prob >= self.review, "review", "low"))
