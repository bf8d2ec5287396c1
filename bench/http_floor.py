"""Benchmark: what one single-account round trip costs before any scoring, against the model.

Run by hand, never in CI:

    .venv/bin/python bench/http_floor.py                      # models/champion
    .venv/bin/python bench/http_floor.py --model PATH --rounds 7

The target "single-account p50 within 2x the in-process Scorer call" (issue 4) leaves the
service one in-process call's worth of time for everything that is not scoring. This
measures that budget's floor on this machine, with the client of bench/serve.py (lean
asyncio, one keep-alive connection, concurrency 1, 1-account `POST /score` bodies), on
four servers that answer a fixed JSON body without scoring or auditing, each one worker:

- `raw-asyncio`: a bare asyncio HTTP server (bench/floor_servers.py), the cheapest
  Python server;
- `uvicorn-starlette`: uvicorn + Starlette, the ASGI stack BentoML runs on;
- `bentoml-bare`: the `@bentoml.api` service of bench/null_service.py without
  exportguard's middleware (no auth, no body or content-type checks);
- `bentoml-null`: the same with exportguard's middleware, as bench/serve.py measures it.

In the same run, in alternating rounds with them: the in-process Scorer call on the same
accounts (`score_values` + exact SHAP + top-5 reasons), the target's denominator; and
exportguard's own request work without HTTP (`engine-write`, `engine-fsync`): parse and
validate the JSON body, score, build the results and audit records, append them to an
audit log in a temporary directory (written, or written and fsynced), serialise the
answer. Each figure is the median over rounds of a round's p50; per server also the
range over rounds of its p50 / the same round's in-process p50. A server's floor above
the in-process p50 means a service built on it cannot meet the 2x target with this
model, whatever it does: floor + scoring > 2 x scoring.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from serve import (  # noqa: E402
    Interleaved,
    account_rows,
    bench_env,
    free_port,
    launch,
    load,
    null_service_env,
)

SERVERS = ("raw-asyncio", "uvicorn-starlette", "bentoml-bare", "bentoml-null")


def start(name: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start one canned-answer server (one worker) on a free port; wait until it answers."""
    port = free_port()
    env = bench_env()
    if name == "raw-asyncio":
        cmd = [sys.executable, "floor_servers.py", "raw", str(port)]
    elif name == "uvicorn-starlette":
        cmd = [sys.executable, "-m", "uvicorn", "floor_servers:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]  # fmt: skip
    else:
        env = null_service_env(env, workers=1)
        if name == "bentoml-bare":
            env["EXPORTGUARD_BENCH_NO_GUARD"] = "1"
        cmd = [sys.executable, "-m", "bentoml", "serve", "null_service:NullScore",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return launch(cmd, ROOT / "bench", env, log, port, timeout=120, name=name,
                  readyz=name != "raw-asyncio")  # fmt: skip


def inprocess_p50(call: Callable[[int], object], n: int) -> float:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        call(i)
        lat.append(time.perf_counter() - t)
    return 1e3 * statistics.median(lat)


class EngineProbe:
    """exportguard's request work without HTTP: parse, score, audit (one sync mode), dump."""

    def __init__(self, model: Path, audit_log: Path, sync: str, bodies: list[bytes]) -> None:
        from exportguard.serving.engine import Engine, RequestInfo
        from exportguard.serving.schemas import ScoreRequest
        from exportguard.serving.settings import ServeSettings

        settings = ServeSettings(
            model_path=model, feature_store=audit_log.parent / "store", audit_log=audit_log,
            deadline_s=20.0, audit_sync=sync,
        )  # fmt: skip
        self.engine = Engine(settings)
        self.engine.start()
        self.parse, self.info, self.bodies = ScoreRequest.model_validate_json, RequestInfo, bodies

    def call(self, i: int) -> None:
        info = self.info(f"bench-{i}", "bench", time.monotonic(), "score")
        request = self.parse(self.bodies[i % len(self.bodies)])
        answer = self.engine.commit(info, self.engine.prepare_score(request, info))
        answer.model_dump_json()

    def close(self) -> None:
        assert self.engine.audit is not None
        self.engine.audit.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "champion",
                        help="bundle for the in-process Scorer (default models/champion)")  # fmt: skip
    parser.add_argument("--requests", type=int, default=300, help="requests (and calls) per round")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating rounds (figures: medians)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "http_floor.json")
    args = parser.parse_args()
    if args.requests < 20 or args.rounds < 1:
        parser.error("--requests must be at least 20 and --rounds at least 1")
    if not (args.model / "metadata.json").is_file():
        parser.error(f"--model {args.model}: no bundle there (metadata.json is missing)")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

    rows = account_rows(2000)
    singles = [json.dumps({"accounts": [r]}).encode() for r in rows]
    probe = Interleaved(args.model.resolve(), rows)
    local = ("in-process", "engine-write", "engine-fsync")
    p50s: dict[str, list[float]] = {name: [] for name in (*local, *SERVERS)}
    errors = dict.fromkeys(SERVERS, 0)
    with tempfile.TemporaryDirectory(prefix="eg-bench-floor-") as tmp:
        procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        engines = {
            sync: EngineProbe(
                args.model.resolve(), Path(tmp) / f"audit-{sync}.jsonl", sync, singles
            )
            for sync in ("write", "fsync")
        }
        try:
            for name in SERVERS:  # all up at once; only the one under load is busy
                procs[name] = start(name, Path(tmp) / f"{name}.log")
            for proc, url in procs.values():  # warm-up, not recorded
                asyncio.run(load(url, singles, 1, 1, 50, proc.pid))
            for _ in range(args.rounds):
                p50s["in-process"].append(inprocess_p50(probe.call, args.requests))
                for sync, engine in engines.items():
                    p50s[f"engine-{sync}"].append(inprocess_p50(engine.call, args.requests))
                for name, (proc, url) in procs.items():
                    run = asyncio.run(load(url, singles, 1, 1, args.requests, proc.pid))
                    p50s[name].append(run["p50_ms"])
                    errors[name] += run["errors"]
        finally:
            for proc, _ in procs.values():
                proc.terminate()
                proc.wait(30)
            for engine in engines.values():
                engine.close()
    med = {name: statistics.median(v) for name, v in p50s.items()}
    scoring = med["in-process"]
    print(
        f"model {args.model}, {args.rounds} rounds x {args.requests} requests, concurrency 1, 1 account"
    )
    print(
        f"  in-process Scorer call p50 {scoring:.3f} ms (rounds: {', '.join(f'{v:.3f}' for v in p50s['in-process'])})"
    )
    for sync in ("write", "fsync"):
        name = f"engine-{sync}"
        print(f"  {name:18s} p50 {med[name]:.3f} ms = {med[name] / scoring:.2f}x the in-process call "
              f"(exportguard's request work, no HTTP; audit {sync})")  # fmt: skip
    print(
        "  servers answering a fixed body (c1 p50; ratio to the in-process call: median, range over rounds):"
    )
    for name in SERVERS:
        ratios = [a / b for a, b in zip(p50s[name], p50s["in-process"], strict=True)]
        print(f"  {name:18s} p50 {med[name]:.3f} ms = {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}x); errors {errors[name]}")  # fmt: skip
    print(
        "  a service on a server meets the 2x target only if server floor + engine work <= 2 x in-process:"
    )
    for name in SERVERS:
        for sync in ("write", "fsync"):
            total = med[name] + med[f"engine-{sync}"]
            print(f"    {name} + engine-{sync}: {total:.3f} ms = {total / scoring:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "model": str(args.model), "rounds": args.rounds, "requests": args.requests,
        "p50_ms_median": med, "p50_ms_rounds": p50s, "errors": errors,
    }  # fmt: skip
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")
    return 0 if not any(errors.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
