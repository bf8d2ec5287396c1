"""The shared connection table that spreads keep-alive connections over the workers."""

from __future__ import annotations

import pytest

from exportguard.serving.balance import ConnectionTable, balancing_enabled, create_table


def test_a_worker_over_its_share_is_told_so(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    path = create_table(45678, workers=2)
    a, b = ConnectionTable(path, 0), ConnectionTable(path, 1)
    a.add(10)
    b.add(8)
    assert not a.over_share() and not b.over_share()  # 10 <= 9 + 1
    a.add(4)  # 14 vs 8: fair share 11 (+1)
    assert a.over_share() and not b.over_share()
    a.add(-4)
    assert not a.over_share()
    again = create_table(45678, workers=2)  # a restart starts from zero
    assert ConnectionTable(again, 0).counts.tolist() == [0, 0]


def test_one_worker_never_moves_connections(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    only = ConnectionTable(create_table(45679, workers=1), 0)
    only.add(100)
    assert not only.over_share()
    with pytest.raises(ValueError, match="no slot"):
        ConnectionTable(create_table(45679, workers=1), 1)


def test_switch_is_validated():
    assert balancing_enabled({}) and not balancing_enabled({"EXPORTGUARD_BALANCE_CONNECTIONS": "0"})
    with pytest.raises(ValueError, match="expected 1 or 0"):
        balancing_enabled({"EXPORTGUARD_BALANCE_CONNECTIONS": "maybe"})
