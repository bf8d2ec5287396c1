"""Subcommands of the `serving` stage: `serve` (the BentoML service) and `audit verify`."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path

from exportguard.cliargs import int_in_range

log = logging.getLogger(__name__)

SERVICE_IMPORT = "exportguard.serving.service:ExportGuard"
#: Paths not traced unless a tracing exporter is configured ("/score" matches /score_accounts).
UNTRACED_WITHOUT_EXPORTER = ("/score",)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this stage's subcommands to the `exportguard` parser."""
    serve = sub.add_parser(
        "serve",
        help="start the authenticated, audited HTTP scoring service (BentoML)",
        description=(
            "Verify the model bundle, the API tokens and the audit log, then start the BentoML "
            "service. Tokens come only from EXPORTGUARD_API_TOKENS (comma-separated `id:token`) "
            "or EXPORTGUARD_API_TOKENS_FILE / --tokens-file; the service never runs without one."
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=3000, help="port (default 3000)")
    serve.add_argument(
        "--model",
        type=Path,
        default=None,
        help="bundle directory ($EXPORTGUARD_MODEL, else models/champion)",
    )
    serve.add_argument(
        "--feature-store",
        type=Path,
        default=None,
        help="snapshot store for /score_accounts ($EXPORTGUARD_FEATURE_STORE, else data/feature_store)",
    )
    serve.add_argument(
        "--audit-log",
        type=Path,
        default=None,
        help="audit log ($EXPORTGUARD_AUDIT_LOG, else audit/decisions.jsonl)",
    )
    serve.add_argument(
        "--audit-sync",
        choices=("fsync", "write"),
        default=None,
        help=(
            "audit durability ($EXPORTGUARD_AUDIT_SYNC, else fsync): fsync = each answer waits "
            "until its records are on disk; write = each answer waits until its records are "
            "written to the log file (safe if the service dies) and a background fsync runs "
            "every second (a host crash can lose that last second)"
        ),
    )
    serve.add_argument(
        "--tokens-file", type=Path, default=None, help="file of API tokens, one per line"
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help=(
            "log every HTTP request (BentoML's access log); off by default: every scored "
            "decision is in the audit log, every refused request in the server log, and "
            "latencies in /metrics"
        ),
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        help="worker processes (default 1; use the CPU count)",
    )
    serve.set_defaults(handler=run_serve)

    audit = sub.add_parser("audit", help="audit log tools")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = audit_sub.add_parser(
        "verify", help="check the audit log's hash chain; name the first broken record"
    )
    verify.add_argument("path", type=Path, help="audit log (JSON lines)")
    verify.add_argument(
        "--expect-hash",
        dest="expect",
        action="append",
        default=[],
        type=_sha256_hex,
        metavar="HASH",
        help="a record hash noted earlier (e.g. the last hash a previous verify printed) that "
        "must still be in the log; catches records cut from its end. Repeatable",
    )
    verify.set_defaults(handler=run_audit_verify)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _sha256_hex(text: str) -> str:
    value = text.strip().lower()
    if not _HEX64.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a SHA-256 hash (64 hex digits)")
    return value


_port = int_in_range(1, 65535)
_workers = int_in_range(1, 64)


def serve_environment(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    """The environment the BentoML processes get: flags become EXPORTGUARD_* variables."""
    from exportguard.serving.settings import MODEL_ENV, SERVICE_NAME
    from exportguard.telemetry import TELEMETRY_OFF

    env = {**TELEMETRY_OFF, **base}
    for flag, var in (
        (args.model, MODEL_ENV),
        (args.feature_store, "EXPORTGUARD_FEATURE_STORE"),
        (args.audit_log, "EXPORTGUARD_AUDIT_LOG"),
        (args.tokens_file, "EXPORTGUARD_API_TOKENS_FILE"),
    ):
        if flag is not None:
            env[var] = str(Path(flag).absolute())
    if args.audit_sync is not None:
        env["EXPORTGUARD_AUDIT_SYNC"] = args.audit_sync
    raw = env.get("BENTOML_CONFIG_OVERRIDES", "").strip()
    try:
        overrides = json.loads(raw) if raw else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"BENTOML_CONFIG_OVERRIDES is not valid JSON ({exc.msg})") from None
    if not isinstance(overrides, dict):
        raise ValueError("BENTOML_CONFIG_OVERRIDES must be a JSON object")
    service = overrides.setdefault("services", {}).setdefault(SERVICE_NAME, {})
    service["workers"] = args.workers
    access = service.setdefault("logging", {}).setdefault("access", {})
    if args.access_log:
        access["enabled"] = True
    else:  # one log line per request costs ~0.5 ms of the event loop; see --help
        access.setdefault("enabled", False)
    tracing = service.setdefault("tracing", {})
    if isinstance(tracing, dict) and not tracing.get("exporter_type"):
        # No exporter: BentoML would still build (and drop) an OpenTelemetry span for every
        # request, a third of the event loop's time per answer. Configure an exporter and
        # the scoring endpoints are traced again.
        tracing.setdefault("excluded_urls", list(UNTRACED_WITHOUT_EXPORTER))
    env["BENTOML_CONFIG_OVERRIDES"] = json.dumps(overrides)
    return env


def run_serve(args: argparse.Namespace) -> int:
    """Check everything a worker needs (clear errors here), then replace this process with BentoML."""
    from exportguard.scoring.bundle import checked_bundle
    from exportguard.serving.audit import AuditLog
    from exportguard.serving.auth import TokenStore
    from exportguard.serving.balance import TABLE_ENV, balancing_enabled, create_table
    from exportguard.serving.protocol import connection_limits
    from exportguard.serving.settings import ServeSettings

    env = serve_environment(args, dict(os.environ))
    tokens = TokenStore.from_env(env)
    settings = ServeSettings.from_env(env)
    connection_limits(env)  # a bad EXPORTGUARD_HEADER_TIMEOUT_S fails here, not in a worker
    if balancing_enabled(env) and args.workers > 1:
        env[TABLE_ENV] = str(create_table(args.port, args.workers))
    bundle = checked_bundle(settings.model_path)
    AuditLog(settings.audit_log, sync=settings.audit_sync)
    log.info(
        "serving %s v%s (sha256 %s) on http://%s:%d with %d worker(s), %d token(s); "
        "audit log %s (%s)",
        bundle.name,
        bundle.version,
        bundle.sha256[:12],
        args.host,
        args.port,
        args.workers,
        len(tokens.token_ids),
        settings.audit_log,
        settings.audit_sync,
    )
    argv = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE_IMPORT,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)
    return 0  # pragma: no cover - execve does not return


def run_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain is intact (and holds every expected hash), 1 otherwise."""
    from exportguard.serving.audit import verify

    result = verify(args.path, expect=args.expect)
    if result.ok:
        found = f", all {len(set(args.expect))} expected hash(es) present" if args.expect else ""
        print(
            f"{args.path}: intact, {result.records} record(s){found}; last hash {result.last_hash}"
        )
        return 0
    if result.line is None:
        print(
            f"{args.path}: {result.reason} (the {result.records} record(s) present form an "
            f"intact chain); missing: {', '.join(result.missing)}",
            file=sys.stderr,
        )
        return 1
    print(
        f"{args.path}: line {result.line}: {result.reason} "
        f"({result.records} record(s) before it are intact)",
        file=sys.stderr,
    )
    return 1
