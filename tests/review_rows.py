"""Rows of a committed batch run for the review tests (shared by store and web tests)."""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN = {"run_id": "run0001"}


def scores(n: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    score = np.sort(rng.uniform(0, 1, n))[::-1]
    band = np.where(score > 0.7, "high", np.where(score > 0.3, "review", "low"))
    return pd.DataFrame(
        {
            "account_id": [f"acc_{i:03d}" for i in range(n)],
            "score": score,
            "band": band,
            "model_version": "3",
            "model_sha256": "ab" * 32,
            "reason_1_feature": "vpn_tor_traffic_share_30d",
            "reason_1_value": 0.4,
            "reason_1_contribution": 0.8,
            "reason_1_sentence": "<b>40%</b> of traffic via VPN",
            "reason_2_feature": None,
        }
    )
