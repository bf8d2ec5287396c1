"""Probability calibration and risk bands.

Platt scaling or (centred) isotonic regression from raw score (log-odds) to probability,
fitted on a slice later in time than the training data, stored as knots
(`bundle.Calibration`) that serving interpolates with `np.interp`: no pickle.

Bands come from analyst capacity, not from a probability someone picked: ranking the
population scored at training time, 'review' starts at the k-th account where k is the
weekly review capacity, and 'high' at the top `high_share_of_capacity` of that.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from exportguard.scoring.calibration import Bands, Calibration
from exportguard.training.config import BandsParams

log = logging.getLogger(__name__)


def fit_calibration(
    raw: np.ndarray, y: np.ndarray, weight: np.ndarray | None = None
) -> Calibration:
    """Centred isotonic map raw score -> probability in [0, 1], as interpolation knots.

    Plain isotonic regression is a step function: whole ranges of raw scores share one
    probability, so accounts the model ranks apart would tie and capacity-based bands could
    not split them. Centred isotonic regression (Oron & Flournoy, 2017) keeps the isotonic
    fit's values but places each plateau's knot at the weighted mean score of its examples
    and interpolates linearly between knots: strictly increasing inside the fitted range,
    same calibration quality, far fewer ties.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=float)
    w = np.ones_like(raw) if weight is None else np.asarray(weight, dtype=float)
    if len(raw) != len(y) or len(raw) != len(w) or len(raw) < 2:
        raise ValueError("calibration needs two or more scored examples with labels")
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0, increasing=True)
    order = np.argsort(raw, kind="stable")
    raw, y, w = raw[order], y[order], w[order]
    fitted = np.clip(iso.fit(raw, y, sample_weight=w).predict(raw), 0.0, 1.0)
    starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
    x_knots = np.add.reduceat(raw * w, starts) / np.add.reduceat(w, starts)
    y_knots = fitted[starts]
    if len(x_knots) < 2:  # a constant fit: one probability over the observed range
        x_knots = np.array([raw[0], max(raw[-1], raw[0] + 1e-9)])
        y_knots = np.repeat(y_knots[:1], 2)
    return Calibration(tuple(map(float, x_knots)), tuple(map(float, y_knots)))


def fit_platt(
    raw: np.ndarray,
    y: np.ndarray,
    span: tuple[float, float],
    weight: np.ndarray | None = None,
    n_knots: int = 257,
) -> Calibration:
    """Platt scaling p = sigmoid(a * raw + b), tabulated on `n_knots` raw scores over `span`.

    Two parameters suit a small calibration window (isotonic regression needs many examples
    per plateau); the map is strictly increasing, so no two ranked accounts tie.
    """
    raw = np.asarray(raw, dtype=float)
    y = np.asarray(y, dtype=int)
    if len(raw) != len(y) or len(np.unique(y)) < 2:
        raise ValueError("Platt scaling needs scored examples of both classes")
    lr = LogisticRegression(C=1e4, max_iter=1000)
    lr.fit(raw.reshape(-1, 1), y, sample_weight=weight)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not a > 0:
        raise ValueError(
            f"Platt slope {a:.3g} is not positive: higher model scores are not riskier on the "
            "calibration window (use calibration.method: isotonic, or check the data)"
        )
    lo, hi = float(min(span[0], raw.min())), float(max(span[1], raw.max()))
    grid = np.linspace(lo - 1.0, hi + 1.0, n_knots)
    prob = 1.0 / (1.0 + np.exp(-(a * grid + b)))
    return Calibration(tuple(map(float, grid)), tuple(map(float, prob)), "platt")


def calibrate(method: str, raw: np.ndarray, y: np.ndarray, scored: np.ndarray) -> Calibration:
    """Fit `method` on (raw, y); Platt's table spans every score in `scored` too."""
    if method == "platt":
        scored = np.asarray(scored, dtype=float)
        span = (float(np.min(scored, initial=0.0)), float(np.max(scored, initial=0.0)))
        return fit_platt(raw, y, span)
    if method == "isotonic":
        return fit_calibration(raw, y)
    raise ValueError(f"unknown calibration method {method!r} (expected 'platt' or 'isotonic')")


def bands_from_capacity(population_prob: np.ndarray, params: BandsParams) -> Bands:
    """Thresholds so a weekly rescoring puts about `review_capacity_per_week` accounts in review+high."""
    prob = np.sort(np.asarray(population_prob, dtype=float))[::-1]
    if len(prob) == 0:
        raise ValueError("cannot derive bands from an empty population")
    k_review = min(params.review_capacity_per_week, len(prob))
    k_high = max(1, min(k_review, int(round(params.high_share_of_capacity * k_review))))
    review = float(prob[k_review - 1])
    high = float(prob[k_high - 1])
    flagged = int((prob >= review).sum())
    if flagged > 2 * k_review:
        log.warning(
            "calibrated scores tie at the review threshold: %d accounts reach 'review' for a "
            "capacity of %d per week",
            flagged,
            k_review,
        )
    return Bands(high=high, review=min(review, high))
