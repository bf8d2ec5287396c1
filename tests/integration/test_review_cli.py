"""From a committed batch run to reviewed labels the pipeline can read, through the CLI."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from exportguard.cli import main
from exportguard.features.contract import read_tables
from exportguard.review.db import open_database
from exportguard.review.store import Actor, ReviewStore
from exportguard.scoring.bundle import load_bundle, write_bundle
from exportguard.scoring.calibration import Bands
from exportguard.synth.world import generate_world, write_world


@pytest.mark.slow
def test_sync_decide_export_and_verify(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b = load_bundle(tiny_bundle)  # the test model with a wider review band: more cases
    model = write_bundle(
        tmp_path / "model", model_text=b.model_text, calibration=b.calibration,
        bands=Bands(high=0.5, review=0.02), features=list(b.features), reference=b.reference,
        metadata={"model_name": "exportguard-test", "model_version": "7"}, policy=b.policy,
    )  # fmt: skip
    world = generate_world(600, seed=21, days=60)
    write_world(world, tmp_path / "data", tmp_path / "truth.parquet")
    out = tmp_path / "scores"
    horizon = read_tables(tmp_path / "data")[1].horizon
    earlier = (horizon - pd.Timedelta(days=25)).isoformat()
    assert main(["batch", "--data", str(tmp_path / "data"), "--out", str(out), "--as-of", earlier,
                 "--model", str(model), "--no-snapshot"]) == 0  # fmt: skip
    capsys.readouterr()
    db = f"sqlite:///{tmp_path}/review.db"
    assert main(["review", "--db", db, "sync", "--scores", str(out)]) == 0
    opened = int(capsys.readouterr().out.rsplit(": ", 1)[1].split()[0])
    assert opened >= 2
    data = ["--data", str(tmp_path / "data")]  # idempotent; fills country and sign-up time
    assert main(["review", "--db", db, "sync", "--scores", str(out), *data]) == 0
    assert ": 0 new case(s)" in capsys.readouterr().out
    accounts = read_tables(tmp_path / "data")[0].accounts.set_index("account_id")
    synced = ReviewStore(open_database(db)).queue(status=None, limit=10_000)
    assert {c.country for c in synced} == set(accounts.loc[[c.account_id for c in synced],
                                                           "declared_country"])  # fmt: skip
    assert all(c.signed_up_at is not None and c.rise is None for c in synced)  # no run before

    decided = (horizon - pd.Timedelta(days=10)).to_pydatetime()  # decisions inside the data's time
    store = ReviewStore(open_database(db), clock=lambda: decided)
    ana, sue, sam = Actor("ana", "analyst"), Actor("sue", "supervisor"), Actor("sam", "supervisor")
    first = store.claim_next(ana)
    second = store.claim_next(sue)
    assert first is not None and second is not None
    store.decide(first.id, ana, "clear", "benign traveller", first.version)
    proposed = store.decide(second.id, sue, "confirm", "relay", second.version, "reseller")
    store.review_confirmation(second.id, sam, True, "agreed", proposed.version)

    labels_out = tmp_path / "reviewed"
    args = ["review", "--db", db, "export-labels", "--data", str(tmp_path / "data")]
    assert main([*args, "--out", str(labels_out)]) == 0
    merged = pd.read_parquet(labels_out / "labels.parquet")
    before = read_tables(tmp_path / "data")[0].labels
    assert len(merged) == len(before) + 2
    reviewed = merged.loc[merged["source"] == "review"].set_index("account_id")
    assert reviewed.loc[first.account_id, "label"] == 0
    assert reviewed.loc[second.account_id, "label"] == 1
    assert reviewed.loc[second.account_id, "typology"] == "reseller"
    # the merged table passes the data contract in place of the original one
    before_bytes = (tmp_path / "data" / "labels.parquet").read_bytes()
    (tmp_path / "data" / "labels.parquet").write_bytes((labels_out / "labels.parquet").read_bytes())
    tables, report = read_tables(tmp_path / "data")
    assert len(tables.labels) == len(merged)
    capsys.readouterr()
    assert main(["review", "--db", db, "audit", "verify"]) == 0
    assert "intact: 8 event(s)" in capsys.readouterr().out  # 2 syncs, 2 claims, 3 decisions, export

    # the pipeline's way in: review-only labels, added to the world's by `examples`
    only = tmp_path / "only"
    assert main(["review", "--db", db, "export-labels", "--out", str(only)]) == 0
    (tmp_path / "data" / "labels.parquet").write_bytes(before_bytes)
    from exportguard.training.config import Params
    from exportguard.training.inputs import build_feature_set

    plain = build_feature_set(tmp_path / "data", Params())
    grown = build_feature_set(tmp_path / "data", Params(), None, only / "labels.parquet")
    n_plain = int((plain.examples["kind"] == "label").sum())
    assert int((grown.examples["kind"] == "label").sum()) == n_plain + 2
    stray = pd.read_parquet(only / "labels.parquet").assign(account_id="acc_not_there")
    stray.to_parquet(tmp_path / "stray.parquet", index=False)
    code = main(["examples", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ts"),
                 "--reviewed-labels", str(tmp_path / "stray.parquet")])  # fmt: skip
    assert code == 2 and "refers to an account not in accounts" in capsys.readouterr().err
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    for bad, message in (("missing.parquet", "does not exist"), ("junk.parquet", "cannot read")):
        code = main(["examples", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ts"),
                     "--reviewed-labels", str(tmp_path / bad)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and message in err and "Traceback" not in err

    # a later run: its new cases carry their rise since the run before
    from exportguard.batch.store import read_batch_output

    first_run = read_batch_output(out, columns=["account_id", "score"])
    assert main(["batch", "--data", str(tmp_path / "data"), "--out", str(out),
                 "--model", str(model), "--no-snapshot"]) == 0  # fmt: skip
    assert main(["review", "--db", db, "sync", "--scores", str(out)]) == 0
    later = [c for c in ReviewStore(open_database(db)).queue(status=None, limit=10_000)
             if c.id not in {s.id for s in synced}]  # fmt: skip
    before_score = first_run.set_index("account_id")["score"]
    risen = [c for c in later if c.account_id in before_score.index]
    assert risen and all(c.rise == pytest.approx(c.score - before_score[c.account_id])
                         for c in risen)  # fmt: skip


def test_review_commands_refuse_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path}/review.db"
    assert main(["review", "--db", db, "sync", "--scores", str(tmp_path / "none")]) == 2
    assert "no committed batch run" in capsys.readouterr().err
    assert main(["review", "--db", "mysql+nodriver://x", "audit", "verify"]) == 2
    err = capsys.readouterr().err
    assert "review database URL" in err and "Traceback" not in err


def test_a_fresh_database_is_migrated_quietly(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = f"sqlite:///{tmp_path}/review.db"  # a new process: Alembic is imported afresh
    code = "import sys; from exportguard.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "review", "--db", db, "audit", "verify"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and "intact: 0 event(s)" in done.stdout
    assert "alembic" not in done.stderr, done.stderr  # no plugin list at INFO


def test_add_user_stores_only_a_hash_and_serve_needs_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from exportguard.review.users import authenticate, load_users

    users = tmp_path / "users.yaml"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    argv = ["review", "add-user", "ana", "--role", "analyst", "--users", str(users)]
    assert main([*argv, "--password-stdin"]) == 0
    text = users.read_text()
    assert "a long enough secret" not in text and "$argon2id$" in text
    assert oct(users.stat().st_mode & 0o777) == "0o600"
    assert authenticate(load_users(users), "ana", "a long enough secret") is not None
    assert authenticate(load_users(users), "ana", "wrong") is None
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main([*argv, "--password-stdin"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    bad_name = ["review", "add-user", "Ana Smith", "--role", "analyst", "--users", str(users)]
    assert main([*bad_name, "--password-stdin"]) == 2
    assert "lower-case letters" in capsys.readouterr().err
    assert list(load_users(users)) == ["ana"]  # nothing else written
    db = f"sqlite:///{tmp_path}/r.db"
    assert main(["review", "--db", db, "serve", "--users", str(tmp_path / "none.yaml")]) == 2
    assert "create the first user" in capsys.readouterr().err
