"""Batch row logic: quarantine rules, flat reason columns equal to the Scorer's reasons, schema."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from exportguard.batch.rows import (
    RunInfo,
    output_schema,
    process_chunk,
    quarantine_reasons,
    quarantine_schema,
    reason_columns,
)
from exportguard.features.registry import FEATURE_NAMES
from exportguard.scoring.scorer import Scorer

from factories import make_feature_table

INFO = RunInfo("r1", pd.Timestamp("2026-10-01"), "m", "3", "ab" * 32, top_k=4)


def test_quarantine_lists_every_problem_of_a_row():
    frame = make_feature_table(7, seed=1)
    frame.loc[0, "account_id"] = None
    frame.loc[1, "restricted_traffic_share_30d"] = 1.2
    frame.loc[1, "log_tokens_30d"] = -np.inf
    frame.loc[2, "api_keys_30d"] = -3.0
    frame.loc[3, "is_organization"] = 2.0
    frame.loc[6, "research_exemption"] = 0.5  # a yes/no feature is 0 or 1, nothing between
    frame.loc[4, "account_age_days"] = 5e9  # collides with the missing-value sentinel
    reasons = quarantine_reasons(frame, duplicate_ids={"acc_1_000005"})
    assert reasons[0] == "null account_id"
    assert reasons[1] == (
        "non-finite log_tokens_30d=-inf; restricted_traffic_share_30d=1.2 outside [0, 1]"
        if FEATURE_NAMES.index("log_tokens_30d")
        < FEATURE_NAMES.index("restricted_traffic_share_30d")
        else "restricted_traffic_share_30d=1.2 outside [0, 1]; non-finite log_tokens_30d=-inf"
    )
    assert reasons[2] == "api_keys_30d=-3 outside [0, 1e+08]"
    assert reasons[3] == "is_organization=2 outside [0, 1]"
    assert reasons[4].startswith("account_age_days=5e+09 outside")
    assert reasons[5] == "duplicate account_id"
    assert reasons[6] == "research_exemption=0.5 outside [0, 1]"


def test_missing_values_are_not_quarantined(feature_table):
    frame = feature_table.copy()
    frame.loc[:, list(FEATURE_NAMES)] = np.nan
    assert all(r is None for r in quarantine_reasons(frame))


def test_reason_columns_equal_scorer_reasons(tiny_bundle, feature_table):
    batch = Scorer.from_path(tiny_bundle).score(feature_table)
    cols = reason_columns(batch, k=4)
    for i in range(len(batch)):
        expected = batch.reasons(i, k=4)
        for slot in range(4):
            feat = cols[f"reason_{slot + 1}_feature"][i]
            if slot >= len(expected):
                assert feat is None and np.isnan(cols[f"reason_{slot + 1}_contribution"][i])
                continue
            r = expected[slot]
            assert feat == r.feature
            assert cols[f"reason_{slot + 1}_contribution"][i] == r.contribution
            assert cols[f"reason_{slot + 1}_sentence"][i] == r.sentence
            value = cols[f"reason_{slot + 1}_value"][i]
            assert (np.isnan(value) and r.value is None) or value == r.value


def test_process_chunk_splits_rows_and_keeps_positions(tiny_bundle, feature_table):
    frame = feature_table.copy()
    frame.loc[5, "failed_payment_rate"] = np.inf
    scorer = Scorer.from_path(tiny_bundle)
    positions = np.arange(1000, 1000 + len(frame))
    res = process_chunk(scorer, frame, positions, INFO)
    assert len(res.scored) + len(res.quarantined) == len(frame)
    assert res.quarantined["input_row"].tolist() == [1005]
    assert res.quarantined["account_id"].tolist() == [frame.loc[5, "account_id"]]
    direct = scorer.score(frame.drop(index=5))
    np.testing.assert_array_equal(res.scored["score"].to_numpy(), direct.prob)
    np.testing.assert_array_equal(res.scored["raw_score"].to_numpy(), direct.raw)
    assert set(res.scored["run_id"]) == {"r1"} and set(res.scored["model_version"]) == {"3"}
    # the fixed schemas accept the frames as they are
    pa.Table.from_pandas(res.scored, schema=output_schema(INFO), preserve_index=False)
    pa.Table.from_pandas(res.quarantined, schema=quarantine_schema(), preserve_index=False)


def test_contribution_columns_are_optional_and_additive(tiny_bundle, feature_table):
    scorer = Scorer.from_path(tiny_bundle)
    info = RunInfo("r", pd.Timestamp("2026-10-01"), "m", "1", "0" * 64, contributions=True)
    res = process_chunk(scorer, feature_table, np.arange(len(feature_table)), info)
    contrib = res.scored[[f"contrib_{n}" for n in FEATURE_NAMES]].to_numpy()
    total = contrib.sum(axis=1) + res.scored["base_value"].to_numpy()
    np.testing.assert_allclose(total, res.scored["raw_score"].to_numpy(), atol=1e-9)
    assert (
        "contrib_api_keys_30d"
        not in process_chunk(
            scorer, feature_table, np.arange(len(feature_table)), INFO
        ).scored.columns
    )


def test_empty_chunk_yields_empty_frames(tiny_bundle, feature_table):
    res = process_chunk(Scorer.from_path(tiny_bundle), feature_table.iloc[:0], np.arange(0), INFO)
    assert len(res.scored) == 0 and len(res.quarantined) == 0
    assert (
        pa.Table.from_pandas(res.scored, schema=output_schema(INFO), preserve_index=False).num_rows
        == 0
    )


@pytest.mark.parametrize("k", [1, 3])
def test_output_schema_has_k_reason_slots(k):
    info = RunInfo("r", pd.Timestamp("2026-10-01"), "m", "1", "0" * 64, top_k=k)
    names = output_schema(info).names
    assert f"reason_{k}_sentence" in names and f"reason_{k + 1}_feature" not in names
