"""The HTTP contract in process (BentoML's ASGI app): scoring, auth, health, validation, media types."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import AUTH, OTHER_TOKEN, account_rows, rows_frame, running_app, service_env

from exportguard.features.policy import Policy
from exportguard.features.registry import FEATURE_NAMES, FEATURES
from exportguard.scoring.scorer import Scorer
from exportguard.scoring.spec import code_spec
from exportguard.serving.schemas import MAX_ACCOUNTS, MAX_BODY_BYTES
from exportguard.serving.snapshot import write_snapshot

#: the feature spec of the test bundle (the default policy)
SPEC = code_spec(Policy())

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service")


@pytest.fixture(scope="module")
def client(tiny_bundle: Path, work: Path) -> Any:
    with running_app(service_env(tiny_bundle, work)) as c:
        yield c


@pytest.fixture(scope="module")
def scorer(tiny_bundle: Path) -> Scorer:
    return Scorer.from_path(tiny_bundle)


# --- health and auth ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/livez", "/healthz", "/readyz"])
def test_health_endpoints_are_open(client: Any, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"), [("post", "/score"), ("post", "/score_accounts"), ("get", "/metadata")]
)
def test_missing_token_is_401_wrong_is_403(client: Any, method: str, path: str) -> None:
    body = {"json": {"account_ids": ["a"]}} if method == "post" else {}
    resp = getattr(client, method)(path, **body)
    assert resp.status_code == 401 and resp.json()["code"] == "unauthorized"
    assert resp.headers["www-authenticate"] == "Bearer"
    resp = getattr(client, method)(
        path, headers={"Authorization": "Bearer nope-nope-nope-nope"}, **body
    )
    assert resp.status_code == 403 and resp.json()["code"] == "forbidden"


def test_refusals_are_logged_with_request_id_and_never_the_token(client: Any) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("exportguard.serving.middleware")
    logger.addHandler(handler)
    # Another in-process app may have reconfigured logging (disabling existing loggers).
    level, disabled = logger.level, logger.disabled
    logger.setLevel(logging.INFO)
    logger.disabled = False
    try:
        resp = client.post(
            "/score",
            json={"accounts": []},
            headers={"Authorization": "Bearer wrong-secret-value", "X-Request-Id": "req-12345678"},
        )
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.disabled = disabled
    assert resp.status_code == 403
    lines = [r.getMessage() for r in records]
    assert any("req-12345678 POST /score" in m and "403 forbidden" in m for m in lines), lines
    assert not any("wrong-secret-value" in m for m in lines)


def test_second_configured_token_is_accepted(client: Any) -> None:
    resp = client.get("/metadata", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
    assert resp.status_code == 200


def test_refuses_to_start_without_tokens(tiny_bundle: Path, tmp_path: Path) -> None:
    from exportguard.serving.auth import AuthConfigError

    env = service_env(tiny_bundle, tmp_path, EXPORTGUARD_API_TOKENS="")
    with pytest.raises(AuthConfigError, match="no API token configured"):
        with running_app(env):
            pass


# --- contract ------------------------------------------------------------------------------


def test_metadata(client: Any, scorer: Scorer) -> None:
    body = client.get("/metadata", headers=AUTH).json()
    assert body["model"] == {
        "name": scorer.bundle.name,
        "version": scorer.bundle.version,
        "sha256": scorer.bundle.sha256,
    }
    assert body["metrics"] == {"ap": 0.5} and body["bands"] == {"high": 0.8, "review": 0.3}
    assert [f["name"] for f in body["features"]] == list(FEATURE_NAMES)
    assert all(f["description"] and f["family"] for f in body["features"])
    assert body["limits"]["max_accounts"] == MAX_ACCOUNTS


def test_score_matches_the_in_process_scorer(client: Any, scorer: Scorer) -> None:
    rows = account_rows(20)
    resp = client.post(
        "/score",
        json={"accounts": rows, "explain": True, "top_k": 3},
        headers={**AUTH, "X-Request-ID": "caller-req-0001"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["request_id"] == resp.headers["x-request-id"] == "caller-req-0001"
    assert body["model"]["sha256"] == scorer.bundle.sha256
    batch = scorer.score(rows_frame(rows), explain=True)
    assert [r["account_id"] for r in body["results"]] == [r["account_id"] for r in rows]
    for i, res in enumerate(body["results"]):
        assert res["score"] == pytest.approx(batch.prob[i], abs=1e-12)
        assert res["raw_score"] == pytest.approx(batch.raw[i], abs=1e-12)
        assert res["band"] == batch.band[i]
        contrib = np.array([res["contributions"][n] for n in FEATURE_NAMES])
        np.testing.assert_allclose(contrib, batch.contributions[i], atol=1e-12)
        assert contrib.sum() + res["base_value"] == pytest.approx(res["raw_score"], abs=1e-9)
        fam = res["family_contributions"]
        assert sum(fam.values()) == pytest.approx(contrib.sum(), abs=1e-9)
        assert [r["feature"] for r in res["reasons"]] == [r.feature for r in batch.reasons(i, 3)]
        assert len(res["reasons"]) <= 3
        cs = [r["contribution"] for r in res["reasons"]]
        assert cs == sorted(cs, reverse=True) and all(c > 0 for c in cs)
        assert all(r["sentence"] and "{value}" not in r["sentence"] for r in res["reasons"])


def test_default_response_omits_full_contributions(client: Any) -> None:
    res = client.post("/score", json={"accounts": account_rows(1)}, headers=AUTH).json()["results"][
        0
    ]
    assert res["contributions"] is None and res["family_contributions"] is None
    assert 0.0 <= res["score"] <= 1.0 and res["band"] in {"high", "review", "low"}
    assert len(res["reasons"]) <= 5


def test_omitted_and_null_features_are_scored_as_missing(client: Any, scorer: Scorer) -> None:
    only_id = {"account_id": "sparse_1"}
    nulls = {"account_id": "sparse_2", **{n: None for n in FEATURE_NAMES}}
    body = client.post("/score", json={"accounts": [only_id, nulls]}, headers=AUTH).json()
    a, b = body["results"]
    expected = scorer.score(pd.DataFrame({n: [np.nan] for n in FEATURE_NAMES}), explain=False)
    assert a["score"] == b["score"] == pytest.approx(expected.prob[0], abs=1e-12)
    assert a["raw_score"] == b["raw_score"]


def test_score_accounts_uses_the_snapshot_and_reports_unknown_ids(client: Any, work: Path) -> None:
    rows = account_rows(6, seed=21)
    write_snapshot(
        rows_frame(rows), work / "store", pd.Timestamp("2026-06-01"), "test", feature_spec=SPEC
    )
    ids = [rows[4]["account_id"], "acc_unknown_1", rows[1]["account_id"]]
    resp = client.post("/score_accounts", json={"account_ids": ids, "explain": True}, headers=AUTH)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert [r["account_id"] for r in body["results"]] == [ids[0], ids[2]]
    assert body["errors"] == [
        {
            "account_id": "acc_unknown_1",
            "code": "unknown_account",
            "error": body["errors"][0]["error"],
        }
    ]
    assert "not in the feature snapshot" in body["errors"][0]["error"]
    assert body["snapshot"]["rows"] == 6 and body["snapshot"]["as_of"].startswith("2026-06-01")
    direct = client.post(
        "/score", json={"accounts": [rows[4], rows[1]], "explain": True}, headers=AUTH
    ).json()["results"]
    for via_id, via_values in zip(body["results"], direct, strict=True):
        assert (
            via_id["score"] == via_values["score"]
            and via_id["raw_score"] == via_values["raw_score"]
        )
        assert via_id["contributions"] == via_values["contributions"]


def test_score_accounts_refuses_a_snapshot_of_another_feature_spec(client: Any, work: Path) -> None:
    rows = account_rows(3, seed=5)
    other = {**SPEC, "policy_sha256": "0" * 64}  # features computed under another policy
    write_snapshot(
        rows_frame(rows), work / "store", pd.Timestamp("2026-06-01"), "t", feature_spec=other
    )
    ids = [rows[0]["account_id"]]
    resp = client.post("/score_accounts", json={"account_ids": ids}, headers=AUTH)
    assert resp.status_code == 503 and resp.json()["code"] == "snapshot_mismatch"
    assert "another policy" in resp.json()["error"] and "rerun batch" in resp.json()["error"]
    meta = client.get("/metadata", headers=AUTH).json()
    assert meta["feature_spec"] == SPEC
    write_snapshot(
        rows_frame(rows), work / "store", pd.Timestamp("2026-06-01"), "t", feature_spec=SPEC
    )
    resp = client.post("/score_accounts", json={"account_ids": ids}, headers=AUTH)
    assert resp.status_code == 200 and len(resp.json()["results"]) == 1


def test_score_accounts_with_only_unknown_ids(client: Any, work: Path) -> None:
    write_snapshot(
        rows_frame(account_rows(2)),
        work / "store",
        pd.Timestamp("2026-06-01"),
        "t",
        feature_spec=SPEC,
    )
    body = client.post("/score_accounts", json={"account_ids": ["ghost"]}, headers=AUTH).json()
    assert body["results"] == [] and body["errors"][0]["code"] == "unknown_account"


def test_score_accounts_without_snapshot_is_503(tiny_bundle: Path, tmp_path: Path) -> None:
    with running_app(service_env(tiny_bundle, tmp_path)) as c:
        resp = c.post("/score_accounts", json={"account_ids": ["a1"]}, headers=AUTH)
    assert resp.status_code == 503 and resp.json()["code"] == "no_snapshot"


# --- bad input ------------------------------------------------------------------------------

SHARE = "restricted_traffic_share_30d"
COUNT = "api_keys_30d"
FLAG = "research_exemption"


def _one(**values: Any) -> dict[str, Any]:
    return {"accounts": [{"account_id": "acc_1", **values}]}


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"accounts":[{"account_id":"a","restricted_traffic_share_30d":NaN}]}', SHARE),
        (b'{"accounts":[{"account_id":"a","restricted_traffic_share_30d":Infinity}]}', SHARE),
        (b'{"accounts":[{"account_id":"a","restricted_traffic_share_30d":-Infinity}]}', SHARE),
        (b'{"accounts":[{"account_id":"a","token_growth_30d":1e999}]}', "token_growth_30d"),
    ],
)
def test_non_finite_numbers_are_refused(client: Any, raw: bytes, field: str) -> None:
    resp = client.post("/score", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["field"] == f"accounts.0.{field}"


@pytest.mark.parametrize(
    ("body", "loc", "kind"),
    [
        (_one(**{SHARE: "0.5"}), ["accounts", 0, SHARE], "float_type"),
        (_one(**{SHARE: True}), ["accounts", 0, SHARE], "float_type"),
        (_one(**{SHARE: 1.5}), ["accounts", 0, SHARE], "less_than_equal"),
        (_one(**{COUNT: -1}), ["accounts", 0, COUNT], "greater_than_equal"),
        (_one(**{FLAG: 0.5}), ["accounts", 0, FLAG], "value_error"),
        (
            _one(**{"account_age_days": -2e9}),
            ["accounts", 0, "account_age_days"],
            "greater_than_equal",
        ),
        (_one(surprise=1), ["accounts", 0, "surprise"], "extra_forbidden"),
        ({"accounts": [{SHARE: 0.1}]}, ["accounts", 0, "account_id"], "missing"),
        ({"accounts": [{"account_id": ""}]}, ["accounts", 0, "account_id"], "string_too_short"),
        ({"accounts": [{"account_id": 7}]}, ["accounts", 0, "account_id"], "string_type"),
        (
            {"accounts": [{"account_id": "a b"}]},
            ["accounts", 0, "account_id"],
            "string_pattern_mismatch",
        ),
        ({"accounts": []}, ["accounts"], "too_short"),
        (
            {"accounts": [{"account_id": f"a{i}"} for i in range(MAX_ACCOUNTS + 1)]},
            ["accounts"],
            "too_long",
        ),
        ({"accounts": [{"account_id": "a"}, {"account_id": "a"}]}, ["accounts"], "value_error"),
        ({"accounts": [{"account_id": "a"}], "top_k": 0}, ["top_k"], "greater_than_equal"),
        ({"accounts": [{"account_id": "a"}], "explain": "yes"}, ["explain"], "bool_type"),
        ({"accounts": [{"account_id": "a"}], "extra": 1}, ["extra"], "extra_forbidden"),
        ({}, ["accounts"], "missing"),
        ({"accounts": {"account_id": "a"}}, ["accounts"], "list_type"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field(
    client: Any, body: dict[str, Any], loc: list[Any], kind: str
) -> None:
    resp = client.post("/score", json=body, headers=AUTH)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["code"] == "invalid_request" and body["error"].startswith(body["field"])
    path = ".".join(map(str, loc))
    assert any(e["field"] == path and e["type"] == kind for e in body["errors"]), body
    assert "IODescriptor" not in resp.text and "pydantic" not in resp.text


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"account_ids": []}, ["account_ids"]),
        ({"account_ids": ["a", "a"]}, ["account_ids"]),
        ({"account_ids": [1]}, ["account_ids", 0]),
        ({"account_ids": ["a"], "ids": ["b"]}, ["ids"]),
    ],
)
def test_invalid_id_requests_are_400(client: Any, body: dict[str, Any], loc: list[Any]) -> None:
    resp = client.post("/score_accounts", json=body, headers=AUTH)
    path = ".".join(map(str, loc))
    assert resp.status_code == 400 and any(e["field"] == path for e in resp.json()["errors"])


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b"[1, 2]", b"null", b'{"accounts": [', b"\xff\xfe"]
)
def test_malformed_json_is_400(client: Any, raw: bytes) -> None:
    resp = client.post("/score", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["code"] in ("invalid_json", "invalid_request")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"accounts":[{"account_id":"a1","account_id":"a2"}]}', "account_id"),
        (b'{"accounts":[{"account_id":"a1"}],"top_k":1,"top_k":9}', "top_k"),
        (b'{"account_ids":["a1"],"account_ids":["a2"]}', "account_ids"),
    ],
)
def test_duplicate_json_keys_are_refused_naming_the_key(client: Any, raw: bytes, key: str) -> None:
    path = "/score_accounts" if b"account_ids" in raw else "/score"
    resp = client.post(path, content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json() == {
        "error": f"key {key!r} appears twice in one JSON object",
        "code": "duplicate_key",
        "field": key,
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("POST", "/nowhere", 404, "not_found"),
        ("GET", "/score", 405, "method_not_allowed"),
        ("PUT", "/metadata", 405, "method_not_allowed"),
    ],
)
def test_framework_errors_have_the_documented_json_shape(
    client: Any, method: str, path: str, status: int, code: str
) -> None:
    resp = client.request(method, path, headers=AUTH, json={} if method != "GET" else None)
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["code"] == code and resp.json()["error"]


def test_declared_oversize_body_is_413(client: Any) -> None:
    resp = client.post(
        "/score",
        content=b"{" + b" " * (MAX_BODY_BYTES + 10) + b"}",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert resp.status_code == 413 and resp.json()["code"] == "body_too_large"


def test_streamed_oversize_body_without_length_is_413(client: Any) -> None:
    def chunks():  # no Content-Length: sent chunked
        yield b'{"accounts": ['
        for _ in range(MAX_BODY_BYTES // 1000 + 2):
            yield b" " * 1000
        yield b"]}"

    resp = client.post(
        "/score", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status_code == 413 and resp.json()["code"] == "body_too_large"


class _Tripwire:
    """Unpickling this creates a marker file: proof that a body was deserialised."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize(
    "ctype",
    [
        "application/vnd.bentoml+pickle",
        "multipart/form-data; boundary=xyz",
        "text/plain",
        "application/x-www-form-urlencoded",
        None,
    ],
)
def test_only_json_is_accepted_and_nothing_else_deserialised(
    client: Any, tmp_path: Path, ctype: str | None
) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"accounts": [_Tripwire(marker)]})
    headers = dict(AUTH) if ctype is None else {**AUTH, "Content-Type": ctype}
    for path in ("/score", "/score_accounts"):
        resp = client.post(path, content=payload, headers=headers)
        assert resp.status_code == 415 and resp.json()["code"] == "unsupported_media_type"
    assert not marker.exists()


# --- property-based: junk never yields a 5xx ---------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_value = st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5) | _json
_account = st.fixed_dictionaries(
    {},
    optional={
        "account_id": st.text(max_size=12) | st.integers(),
        **{f.name: _value for f in FEATURES[:12]},
        "junk": _value,
    },
)
_body = st.one_of(
    _json,
    st.fixed_dictionaries(
        {"accounts": st.lists(_account, max_size=4) | _json},
        optional={"explain": _value, "top_k": _value},
    ),
    st.fixed_dictionaries(
        {"account_ids": st.lists(st.text(max_size=10) | _json, max_size=4) | _json}
    ),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_body, path=st.sampled_from(["/score", "/score_accounts"]))
def test_random_json_never_yields_5xx(client: Any, body: Any, path: str) -> None:
    raw = json.dumps(body).encode()  # NaN / Infinity literals included, as a careless client sends
    resp = client.post(path, content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code < 500, (resp.status_code, resp.text)
    if resp.status_code >= 400:
        assert "error" in resp.json()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_yield_5xx(client: Any, raw: bytes) -> None:
    resp = client.post("/score", content=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code in (400, 413) or resp.status_code == 200
