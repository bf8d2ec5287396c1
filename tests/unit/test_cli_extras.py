"""A command whose optional dependencies are not installed names the extra to install."""

from __future__ import annotations

import sys

import pytest

from exportguard.cli import main


def test_a_missing_extra_is_named_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "pandera", None)  # import pandera -> ModuleNotFoundError
    monkeypatch.setitem(sys.modules, "pandera.pandas", None)
    for name in [m for m in sys.modules if m.startswith("exportguard.features.schemas")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m.startswith("exportguard.features.contract")]:
        monkeypatch.delitem(sys.modules, name)
    code = main(["validate", "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "install the `features` extra" in err and "Traceback" not in err
