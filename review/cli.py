"""`exportguard review`: the analysts' case store from the command line.

`review serve` runs the analysts' web workspace; `review add-user` adds a user;
`review sync` opens cases for the latest committed batch run's review and high bands (with
each case's rise since the run before, and with `--data DIR` its declared country and
sign-up time);
`review export-labels` writes the decided cases as rows of the `labels` table (merged with
an existing one); `review audit verify` checks the hash chain of every claim, decision,
approval and export.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from exportguard.cliargs import int_in_range

if TYPE_CHECKING:  # the store's libraries load only when a review command runs
    from exportguard.review.store import Actor, ReviewStore


def _store(args: argparse.Namespace) -> ReviewStore:
    from exportguard.review.db import open_database
    from exportguard.review.store import ReviewStore
    from exportguard.settings import Settings

    url = args.db or Settings.from_env().review_db.get_secret_value()
    return ReviewStore(open_database(url))


def _system_actor() -> Actor:
    from exportguard.review.store import Actor

    return Actor(f"cli:{getpass.getuser()}", "supervisor")


def _sync(args: argparse.Namespace) -> int:
    from exportguard.batch.store import committed_runs, read_batch_output

    runs = committed_runs(args.scores)
    if not runs:
        from exportguard.batch.store import BatchError

        raise BatchError(f"{args.scores}: no committed batch run (run `exportguard batch` first)")
    run = runs[-1]
    scores = read_batch_output(args.scores, run_id=run["run_id"])
    previous = (  # the run before: each new case's rise
        read_batch_output(args.scores, run_id=runs[-2]["run_id"], columns=["account_id", "score"])
        if len(runs) > 1
        else None
    )
    profiles = None
    if args.data is not None:  # declared country and sign-up time: the queue's filters
        from exportguard.features.contract import read_tables

        profiles = read_tables(args.data)[0].accounts
    opened = _store(args).sync_run(scores, run, _system_actor(), previous, profiles)
    print(f"run {run['run_id']}: {opened} new case(s) from the review and high bands")
    return 0


def _export(args: argparse.Namespace) -> int:
    from exportguard.features.contract import read_tables
    from exportguard.fileio import atomic_write
    from exportguard.review.store import merge_labels

    store = _store(args)
    new = store.labels()
    existing = None
    if args.data is not None:  # the contract's checks apply to the table merged in
        tables, _report = read_tables(args.data)
        existing = tables.labels
    merged = merge_labels(existing, new)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "labels.parquet"
    atomic_write(target, lambda fh: merged.to_parquet(fh, index=False))
    store.record_export(_system_actor(), str(target), len(new))
    print(f"{len(new)} reviewed label(s), {len(merged)} in all, written to {target}")
    return 0


def _add_user(args: argparse.Namespace) -> int:
    import sys

    from exportguard.review.users import add_user
    from exportguard.settings import Settings

    path = args.users or Settings.from_env().review_users
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            from exportguard.review.users import UsersError

            raise UsersError("the two passwords differ")
    user = add_user(path, args.name, args.role, password)
    print(f"{user.name} ({user.role}) saved in {path}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging
    import secrets

    import uvicorn

    from exportguard.review.users import load_users
    from exportguard.review.web import create_app
    from exportguard.settings import Settings

    settings = Settings.from_env()
    users = args.users or settings.review_users
    load_users(users)  # a missing or malformed users file fails here, with its message
    secret = settings.review_secret.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(32)
        logging.getLogger(__name__).warning(
            "EXPORTGUARD_REVIEW_SECRET is not set: sessions end when this process stops"
        )
    accounts = None
    if args.data is not None:  # the raw tables behind the case page's profile, usage, links
        from exportguard.features.contract import read_tables
        from exportguard.features.policy import Policy
        from exportguard.review.accounts import AccountData
        from exportguard.scoring.bundle import load_bundle

        policy = (
            load_bundle(args.model).policy if (args.model / "metadata.json").is_file() else Policy()
        )
        accounts = AccountData(read_tables(args.data)[0], policy)
    app = create_app(_store(args), users, secret, https_only=args.https_only, accounts=accounts)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False)
    return 0


def _verify(args: argparse.Namespace) -> int:
    n = _store(args).verify_audit()
    print(f"review audit trail intact: {n} event(s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `review` to the `exportguard` parser."""
    p = sub.add_parser(
        "review",
        help="the analysts' review workspace: web pages, users, cases from batch runs, labels out",
        description="The analysts' review workspace (`review serve`) and its store: SQLite by "
        "default, PostgreSQL with EXPORTGUARD_REVIEW_DB=postgresql+psycopg://...; migrated on "
        "open. Decided cases become `labels` rows (`review export-labels`).",
    )
    p.add_argument("--db", metavar="URL", help="SQLAlchemy URL (default $EXPORTGUARD_REVIEW_DB "
                   "or sqlite:///data/review.db)")  # fmt: skip
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("sync", help="open cases for the latest run's review and high bands")
    s.add_argument("--scores", type=Path, default=Path("data/scores"), metavar="OUT",
                   help="batch output directory (default data/scores)")  # fmt: skip
    s.add_argument("--data", type=Path, metavar="DIR",
                   help="raw data directory: each case's declared country and sign-up time "
                        "(the queue's country and account-age filters)")  # fmt: skip
    s.set_defaults(handler=_sync)
    e = actions.add_parser("export-labels", help="decided cases as `labels` rows (source review)")
    e.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="writes DIR/labels.parquet"
    )
    e.add_argument("--data", type=Path, metavar="DIR",
                   help="raw data directory whose labels table is merged in (duplicates dropped)")  # fmt: skip
    e.set_defaults(handler=_export)
    w = actions.add_parser("serve", help="the analysts' web workspace (login, queue, cases)")
    w.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    w.add_argument("--port", type=int_in_range(1, 65535), default=8080, help="port (default 8080)")
    w.add_argument("--users", type=Path, metavar="FILE",
                   help="users file (default $EXPORTGUARD_REVIEW_USERS or review-users.yaml)")  # fmt: skip
    w.add_argument("--data", type=Path, metavar="DIR",
                   help="raw data directory: account profile, usage chart and linked accounts")  # fmt: skip
    w.add_argument("--model", type=Path, default=Path("models/champion"), metavar="PATH",
                   help="bundle whose policy marks restricted owners (default models/champion)")  # fmt: skip
    w.add_argument("--https-only", action="store_true",
                   help="mark the session cookie Secure (behind TLS)")  # fmt: skip
    w.set_defaults(handler=_serve)
    u = actions.add_parser("add-user", help="add or replace a user (argon2 password hash)")
    u.add_argument("name")
    u.add_argument("--role", choices=("analyst", "supervisor", "auditor"), required=True)
    u.add_argument("--users", type=Path, metavar="FILE",
                   help="users file (default $EXPORTGUARD_REVIEW_USERS or review-users.yaml)")  # fmt: skip
    u.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    u.set_defaults(handler=_add_user)
    a = actions.add_parser("audit", help="the review audit trail")
    verbs = a.add_subparsers(dest="verb", metavar="VERB", required=True)
    v = verbs.add_parser("verify", help="recompute the hash chain; exit 1 at the first broken link")
    v.set_defaults(handler=_verify)
