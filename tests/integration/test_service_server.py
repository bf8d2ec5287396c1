"""The real server: `exportguard serve` as a subprocess on 127.0.0.1, called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from serving_support import AUTH, TOKENS, account_rows

from exportguard.cli import main
from exportguard.serving.protocol import HEADER_TIMEOUT_ENV, MAX_PER_IP_ENV

HEADER_TIMEOUT_S = 2.0
MAX_PER_IP = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(
    tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    work = tmp_path_factory.mktemp("server")
    port = free_port()
    audit = work / "audit" / "decisions.jsonl"
    env = {**os.environ, "EXPORTGUARD_API_TOKENS": TOKENS, "BENTOML_DO_NOT_TRACK": "true"}
    env.update({HEADER_TIMEOUT_ENV: str(HEADER_TIMEOUT_S), MAX_PER_IP_ENV: str(MAX_PER_IP)})
    env.pop("EXPORTGUARD_API_TOKENS_FILE", None)
    cmd = [
        sys.executable, "-m", "exportguard.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--model", str(tiny_bundle), "--audit-log", str(audit), "--feature-store", str(work / "store"),
    ]  # fmt: skip
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not ready in 180 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, audit
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_real_server_scores_authenticates_and_audits(server: tuple[str, Path]) -> None:
    url, audit = server
    assert httpx.get(f"{url}/livez").status_code == 200
    assert httpx.post(f"{url}/score", json={"accounts": account_rows(1)}).status_code == 401
    meta = httpx.get(f"{url}/metadata", headers=AUTH).json()
    rows = account_rows(24, seed=3)

    def call(i: int) -> httpx.Response:
        return httpx.post(
            f"{url}/score", json={"accounts": rows[i : i + 3]}, headers=AUTH, timeout=30
        )

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(call, range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    bodies = [r.json() for r in responses]
    assert all(b["model"] == meta["model"] for b in bodies)
    bad = httpx.post(
        f"{url}/score",
        content=b'{"accounts":[{"account_id":"a","restricted_traffic_share_30d":NaN}]}',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert bad.status_code == 400
    assert bad.json()["field"] == "accounts.0.restricted_traffic_share_30d"
    pickled = httpx.post(
        f"{url}/score",
        content=b"\x80\x04N.",
        headers={**AUTH, "Content-Type": "application/vnd.bentoml+pickle"},
    )
    assert pickled.status_code == 415

    records = [json.loads(line) for line in audit.read_text().splitlines()]
    answered = sorted((b["request_id"], r["account_id"]) for b in bodies for r in b["results"])
    assert sorted((r["request_id"], r["account_id"]) for r in records) == answered
    assert main(["audit", "verify", str(audit)]) == 0


def _closed_after(sock: socket.socket, drip: bytes, limit_s: float) -> float | None:
    """Send `drip` one byte every 0.5 s; seconds until the server closed, None if it did not."""
    start = time.monotonic()
    sock.settimeout(0.5)
    i = 0
    while time.monotonic() - start < limit_s:
        try:
            if drip and i < len(drip):
                sock.sendall(drip[i : i + 1])
                i += 1
            if sock.recv(4096) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start
    return None


@pytest.mark.slow
@pytest.mark.parametrize("drip", [b"", b"POST /score HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200])
def test_slow_or_silent_connections_are_closed_within_the_header_timeout(
    server: tuple[str, Path], drip: bytes
) -> None:
    port = int(server[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        closed = _closed_after(sock, drip, limit_s=HEADER_TIMEOUT_S + 8)
    assert closed is not None, "connection still open"
    assert HEADER_TIMEOUT_S - 0.5 <= closed <= HEADER_TIMEOUT_S + 1.5


@pytest.mark.slow
def test_connections_beyond_the_per_ip_limit_are_refused(server: tuple[str, Path]) -> None:
    port = int(server[0].rsplit(":", 1)[1])
    time.sleep(HEADER_TIMEOUT_S + 1)  # earlier tests' idle connections have been closed
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_PER_IP)]
    try:
        with socket.create_connection(("127.0.0.1", port)) as extra:
            extra.settimeout(5)
            answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"too_many_connections" in answer
        held[0].sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")  # the held ones still work
        held[0].settimeout(5)
        assert held[0].recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        for sock in held:
            sock.close()


def test_serve_refuses_to_start_without_a_token(
    tiny_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("EXPORTGUARD_API_TOKENS", raising=False)
    monkeypatch.delenv("EXPORTGUARD_API_TOKENS_FILE", raising=False)
    code = main(["serve", "--model", str(tiny_bundle), "--audit-log", str(tmp_path / "a.jsonl")])
    assert code == 2 and "no API token configured" in capsys.readouterr().err


def test_serve_refuses_a_missing_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EXPORTGUARD_API_TOKENS", TOKENS)
    code = main(
        ["serve", "--model", str(tmp_path / "nothing"), "--audit-log", str(tmp_path / "a.jsonl")]
    )
    assert code == 2 and "metadata.json is missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "0"], ["serve", "--workers", "two"], ["serve", "--audit-sync", "never"]],
)
def test_serve_rejects_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "error" in capsys.readouterr().err


def test_serve_environment_passes_flags_to_the_workers(tmp_path: Path) -> None:
    from exportguard.cli import build_parser
    from exportguard.serving.cli import serve_environment

    args = build_parser().parse_args(
        ["serve", "--model", "m", "--audit-log", "a/log.jsonl", "--workers", "2"]
    )
    user = {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"exportguard": {"threads": 1}}})}
    env = serve_environment(args, user)
    assert env["EXPORTGUARD_MODEL"] == str(Path("m").absolute())
    assert env["EXPORTGUARD_AUDIT_LOG"] == str(Path("a/log.jsonl").absolute())
    assert "EXPORTGUARD_FEATURE_STORE" not in env and env["BENTOML_DO_NOT_TRACK"] == "true"
    assert "EXPORTGUARD_AUDIT_SYNC" not in env  # the service's default (fsync) applies
    sync = build_parser().parse_args(["serve", "--audit-sync", "write"])
    assert serve_environment(sync, {})["EXPORTGUARD_AUDIT_SYNC"] == "write"
    overrides = json.loads(env["BENTOML_CONFIG_OVERRIDES"])
    untraced = {"excluded_urls": ["/score"]}
    no_access_log = {"access": {"enabled": False}}
    assert overrides == {
        "services": {
            "exportguard": {
                "threads": 1,
                "workers": 2,
                "logging": no_access_log,
                "tracing": untraced,
            }
        }
    }
    on = build_parser().parse_args(["serve", "--access-log"])
    logging_cfg = json.loads(serve_environment(on, {})["BENTOML_CONFIG_OVERRIDES"])
    assert logging_cfg["services"]["exportguard"]["logging"] == {"access": {"enabled": True}}
    # An operator who configures a tracing exporter gets the scoring endpoints traced.
    traced = {"services": {"exportguard": {"tracing": {"exporter_type": "otlp"}}}}
    env = serve_environment(args, {"BENTOML_CONFIG_OVERRIDES": json.dumps(traced)})
    tracing = json.loads(env["BENTOML_CONFIG_OVERRIDES"])["services"]["exportguard"]["tracing"]
    assert tracing == {"exporter_type": "otlp"}
    with pytest.raises(ValueError, match="not valid JSON"):
        serve_environment(args, {"BENTOML_CONFIG_OVERRIDES": "{nope"})
