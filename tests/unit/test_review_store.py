"""The review store on a real SQLite file: queue, claims, decisions, approvals, audit, labels."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from review_rows import RUN, scores
from sqlalchemy import text

from exportguard.review.db import ReviewDatabaseError, open_database
from exportguard.review.store import (
    Actor,
    Conflict,
    Forbidden,
    NotFound,
    ReviewError,
    ReviewStore,
    merge_labels,
)

ANA = Actor("ana", "analyst")
BOB = Actor("bob", "analyst")
SUE = Actor("sue", "supervisor")
SAM = Actor("sam", "supervisor")
AUD = Actor("aud", "auditor")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 9, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def store(review_url: str, clock: Clock) -> Iterator[ReviewStore]:
    s = ReviewStore(open_database(review_url), clock=clock)
    s.sync_run(scores(), RUN, SUE)
    yield s
    s.close()


def test_migrations_create_the_schema_once_and_sync_is_idempotent(review_url: str) -> None:
    url = review_url
    first = ReviewStore(open_database(url))
    frame = scores(20)
    expected = int(frame["band"].isin(["high", "review"]).sum())
    assert first.sync_run(frame, RUN, SUE) == expected and expected < 20
    again = ReviewStore(open_database(url))  # reopening migrates nothing and loses nothing
    assert again.sync_run(frame, RUN, SUE) == 0 and again.count() == expected
    with again.sessions() as session:
        assert session.execute(text("select version_num from alembic_version")).scalar() == "0004"
    later = frame.assign(score=frame["score"] * 0.5)  # the next run: lower scores, no new case
    assert again.sync_run(later, {"run_id": "run0002", "as_of": "2026-12-08"}, SUE) == 0
    history = again.history(again.queue()[0].id)
    assert [h.run_id for h in history] == ["run0001", "run0002"]
    assert history[1].score == pytest.approx(history[0].score * 0.5)
    top = again.queue()[0]
    assert top.account_id == "acc_000" and top.reasons[0]["sentence"].startswith("<b>")
    first.close()
    again.close()


def test_a_bad_database_url_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReviewDatabaseError, match="review database URL"):
        open_database("nonsense://x")
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ReviewDatabaseError, match="cannot open or migrate"):
        open_database(f"sqlite:///{tmp_path}/dir.db")


def test_claim_next_gives_each_analyst_a_different_top_case(
    store: ReviewStore, clock: Clock
) -> None:
    a = store.claim_next(ANA)
    b = store.claim_next(BOB)
    assert a is not None and b is not None and a.id != b.id and a.score >= b.score
    with pytest.raises(Conflict, match="held by ana"):
        store.decide(a.id, BOB, "clear", "looks fine", a.version)
    clock.now += timedelta(minutes=31)  # ana's claim expires; bob may take the case
    again = store.claim(a.id, BOB, a.version)
    assert again.assignee == "bob"
    with pytest.raises(Conflict, match="changed since you opened it"):
        store.decide(a.id, ANA, "clear", "fine", a.version)
    with pytest.raises(Forbidden):
        store.claim_next(AUD)


def test_decisions_need_a_note_a_typology_and_the_current_version(store: ReviewStore) -> None:
    case = store.claim_next(ANA)
    assert case is not None
    for note, kind, typ, message in [
        ("  ", "clear", None, "a note is required"),
        ("x" * 4001, "clear", None, "at most 4000"),
        ("relay", "confirm", None, "needs a typology"),
        ("relay", "confirm", "smuggling", "needs a typology"),
        ("relay", "delete", None, "expected confirm, clear or escalate"),
    ]:
        with pytest.raises(ReviewError, match=message):
            store.decide(case.id, ANA, kind, note, case.version, typ)
    with pytest.raises(NotFound):
        store.decide(9999, ANA, "clear", "n", 1)
    assert store.get(case.id).status == "claimed"  # nothing half-written
    note = "<script>alert(1)</script> relays to CN"
    done = store.decide(case.id, ANA, "confirm", note, case.version, "reseller")
    assert done.status == "proposed" and store.decisions(case.id)[0].note == note
    seen = store.decisions(case.id)[0].seen
    assert seen["run_id"] == "run0001" and seen["model_version"] == "3"
    with pytest.raises(Conflict):  # a double submit of the same form
        store.decide(case.id, ANA, "confirm", note, case.version, "reseller")


def test_a_confirmation_counts_only_after_another_supervisor_approves(store: ReviewStore) -> None:
    case = store.claim_next(SUE)
    assert case is not None
    proposed = store.decide(case.id, SUE, "confirm", "shell in SG", case.version, "shell_company")
    assert store.labels().empty
    with pytest.raises(Forbidden, match="only a supervisor"):
        store.review_confirmation(case.id, ANA, True, "ok", proposed.version)
    with pytest.raises(Forbidden, match="another supervisor"):
        store.review_confirmation(case.id, SUE, True, "ok", proposed.version)
    done = store.review_confirmation(case.id, SAM, True, "agreed", proposed.version)
    assert done.status == "confirmed"
    other = store.claim_next(BOB)
    assert other is not None
    store.decide(other.id, BOB, "clear", "student traveller", other.version)
    labels = store.labels()
    assert labels[["account_id", "label", "source"]].values.tolist() == [
        [case.account_id, 1, "review"],
        [other.account_id, 0, "review"],
    ]
    assert labels["typology"].iloc[0] == "shell_company" and pd.isna(labels["typology"].iloc[1])
    assert labels["labelled_at"].notna().all()


def test_escalated_cases_go_to_supervisors_and_rejection_reopens(store: ReviewStore) -> None:
    case = store.claim_next(ANA)
    assert case is not None
    up = store.decide(case.id, ANA, "escalate", "needs ownership check", case.version)
    assert up.status == "escalated"
    assert all(c.id != case.id for c in store.queue()) and store.claim_next(ANA).id != case.id  # type: ignore[union-attr]
    taken = store.claim(case.id, SUE, up.version)
    proposed = store.decide(case.id, SUE, "confirm", "owned via HK", taken.version, "shell_company")
    back = store.review_confirmation(case.id, SAM, False, "evidence thin", proposed.version)
    assert back.status == "open" and back.typology is None


def test_the_audit_chain_verifies_and_detects_an_edit(store: ReviewStore) -> None:
    case = store.claim_next(ANA)
    assert case is not None
    store.decide(case.id, ANA, "clear", "benign", case.version)
    assert store.verify_audit() == 3  # sync, claim, clear
    with store.sessions.begin() as session:
        session.execute(text("update events set actor = 'mallory' where seq = 2"))
    with pytest.raises(ReviewError, match="event 2 was changed"):
        store.verify_audit()


def test_eight_analysts_at_once_never_share_a_case_or_lose_a_decision(review_url: str) -> None:
    s = ReviewStore(open_database(review_url))
    frame = scores(80, seed=4).assign(band="review")
    assert s.sync_run(frame, RUN, SUE) == 80
    worked: dict[str, list[int]] = {}
    errors: list[BaseException] = []

    def work(name: str) -> None:
        me = Actor(name, "analyst")
        try:
            while (case := s.claim_next(me)) is not None:
                s.decide(case.id, me, "clear", f"checked by {name}", case.version)
                worked.setdefault(name, []).append(case.id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"analyst{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    ids = [i for done in worked.values() for i in done]
    assert len(ids) == len(set(ids)) == 80
    assert len(s.labels()) == 80 and s.verify_audit() == 1 + 80 + 80
    s.close()


def test_merge_labels_drops_duplicates_only() -> None:
    t = pd.Timestamp("2026-11-01")
    old = pd.DataFrame({"account_id": ["a", "b"], "label": [1, 0], "labelled_at": [t, t],
                        "source": ["investigation", "tip"], "typology": ["reseller", None]})  # fmt: skip
    new = pd.DataFrame({"account_id": ["a", "c"], "label": [1, 1], "labelled_at": [t, t],
                        "source": ["investigation", "review"], "typology": ["reseller", "other"]})  # fmt: skip
    merged = merge_labels(old, new)
    assert merged["account_id"].tolist() == ["a", "b", "c"]


def test_bulk_actions_are_all_or_nothing(store: ReviewStore) -> None:
    open_cases = store.queue()
    first, second, third = open_cases[0], open_cases[1], open_cases[2]
    with pytest.raises(Forbidden, match="only a supervisor assigns"):
        store.bulk([(first.id, first.version)], ANA, "assign", "to bob", "bob")
    store.claim(third.id, BOB, third.version)
    with pytest.raises(Conflict, match=r"not open any more|changed since"):
        store.bulk([(first.id, first.version), (third.id, third.version)], ANA, "duplicate", "dup")
    assert store.get(first.id).status == "open"  # nothing half-done
    assert store.bulk([(first.id, first.version)], SUE, "assign", "for bob", "bob") == 1
    assert store.get(first.id).assignee == "bob" and store.get(first.id).status == "claimed"
    assert store.bulk([(second.id, second.version)], ANA, "duplicate", "same entity as #1") == 1
    assert store.get(second.id).status == "duplicate" and store.labels().empty  # no label
    assert store.queue(family="traffic_geo") and not store.queue(family="payments")
    assert [c.id for c in store.queue(status="claimed", assignee="bob")] == sorted(
        [first.id, third.id], key=lambda i: -store.get(i).score
    )


def _profiles(n: int) -> pd.DataFrame:
    """An accounts table: even accounts declare SG, odd ones US; account i signed up i*20 days ago."""
    return pd.DataFrame(
        {
            "account_id": [f"acc_{i:03d}" for i in range(n)],
            "declared_country": ["SG" if i % 2 == 0 else "US" for i in range(n)],
            "created_at": [
                pd.Timestamp("2026-12-01 09:00", tz="UTC") - pd.Timedelta(days=20 * i)
                for i in range(n)
            ],  # fmt: skip
        }
    )


def test_queue_orders_by_score_then_rise_and_by_rise_on_request(review_url: str) -> None:
    s = ReviewStore(open_database(review_url))
    frame = scores(10).assign(score=[0.9, 0.9, 0.8, 0.8, 0.75, 0.6, 0.5, 0.4, 0.35, 0.1],
                              band=["review"] * 9 + ["low"])  # fmt: skip
    before = pd.DataFrame({"account_id": ["acc_000", "acc_001", "acc_002", "acc_004"],
                           "score": [0.85, 0.2, 0.3, 0.74]})  # fmt: skip
    s.sync_run(frame, RUN, SUE, previous=before)
    by_id = {c.account_id: c for c in s.queue(limit=20)}
    assert by_id["acc_001"].rise == pytest.approx(0.7)
    assert by_id["acc_000"].rise == pytest.approx(0.05)
    assert by_id["acc_003"].rise is None  # not scored by the previous run
    ids = [c.account_id for c in s.queue()]
    # equal scores: the larger rise first; an account the previous run did not score last
    assert ids[:4] == ["acc_001", "acc_000", "acc_002", "acc_003"]
    by_rise = [c.account_id for c in s.queue(order="rise")]
    assert by_rise[:4] == ["acc_001", "acc_002", "acc_000", "acc_004"]
    assert set(by_rise[4:]) == {"acc_003", "acc_005", "acc_006", "acc_007", "acc_008"}
    with pytest.raises(ReviewError, match="unknown queue order 'age'"):
        s.queue(order="age")
    with pytest.raises(ReviewError, match=r"previous run: columns \['score'\] missing"):
        s.sync_run(frame, {"run_id": "r2"}, SUE, previous=before[["account_id"]])
    s.close()


def test_queue_filters_by_country_and_account_age(review_url: str, clock: Clock) -> None:
    s = ReviewStore(open_database(review_url), clock=clock)
    frame = scores(10).assign(score=np.linspace(0.95, 0.5, 10), band="review")
    s.sync_run(frame.iloc[:6], RUN, SUE)  # without the accounts table: no country yet
    assert s.countries() == [] and s.queue(country="SG") == []
    s.sync_run(frame, {"run_id": "run0002"}, SUE, profiles=_profiles(10))
    assert s.countries() == ["SG", "US"]  # the earlier cases were filled in too
    assert [c.account_id for c in s.queue(country="SG")] == [
        f"acc_{i:03d}" for i in range(0, 10, 2)
    ]
    young = [c.account_id for c in s.queue(max_age_days=50)]  # signed up 0, 20, 40 days ago
    assert young == ["acc_000", "acc_001", "acc_002"]
    old = [c.account_id for c in s.queue(min_age_days=100, country="US")]  # 100+ days, US
    assert old == ["acc_005", "acc_007", "acc_009"]
    assert s.queue(min_age_days=40, max_age_days=41)[0].account_id == "acc_002"
    s.close()


def test_saved_filters_belong_to_their_owner(store: ReviewStore) -> None:
    saved = store.save_filter(ANA, " new SG accounts ", {"country": "SG", "max_age": "30"})
    assert saved.name == "new SG accounts"
    store.save_filter(ANA, "new SG accounts", {"country": "SG", "max_age": "60"})  # replaced
    store.save_filter(BOB, "mine", {"band": "high"})
    mine = store.saved_filters(ANA)
    assert [(f.name, f.query) for f in mine] == [
        ("new SG accounts", {"country": "SG", "max_age": "60"})
    ]
    with pytest.raises(NotFound, match=f"no saved filter {mine[0].id} of yours"):
        store.delete_filter(BOB, mine[0].id)
    with pytest.raises(ReviewError, match="1 to 64 characters"):
        store.save_filter(ANA, "  ", {})
    store.delete_filter(ANA, mine[0].id)
    assert store.saved_filters(ANA) == [] and len(store.saved_filters(BOB)) == 1
    assert store.verify_audit() >= 4  # saving and deleting are audited events


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path}/review.db"
    s = ReviewStore(open_database(url))
    s.sync_run(scores(), RUN, SUE)
    other = sqlite3.connect(tmp_path / "review.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    read: list[int] = []
    reader = threading.Thread(target=lambda: read.append(len(s.queue())))
    reader.start()
    reader.join(timeout=10)  # a read sees the last committed snapshot at once
    claimed: list[object] = []
    writer = threading.Thread(target=lambda: claimed.append(s.claim_next(ANA)))
    writer.start()
    writer.join(timeout=1)
    waiting = writer.is_alive()  # a write waits for the lock ...
    other.execute("COMMIT")
    writer.join(timeout=30)  # ... and goes on once it is free
    other.close()
    assert read and read[0] > 0 and not reader.is_alive()
    assert waiting and claimed and claimed[0] is not None
    s.close()
