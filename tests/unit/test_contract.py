"""Reading and validating a data directory: clean data passes, each kind of bad input is named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from exportguard.cli import main
from exportguard.errors import ExportguardError
from exportguard.features.contract import ContractError, read_tables


def tiny_world() -> dict[str, pd.DataFrame]:
    t0 = pd.Timestamp("2026-01-01")
    accounts = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a3"],
            "created_at": [t0, t0 + pd.Timedelta(days=3), t0 + pd.Timedelta(days=9)],
            "account_type": ["individual", "organization", "organization"],
            "org_id": [None, "o1", "o2"],
            "declared_country": ["US", "SG", "HK"],
            "billing_country": ["US", None, "HK"],
            "email_domain": ["gmail.com", "acme.sg", "tradeco.hk"],
            "signup_ip_country": ["US", "CN", None],
            "tier": ["free", "scale", "build"],
            "is_channel_partner": [False, False, True],
            "research_exemption": [False, True, False],
        }
    )
    organizations = pd.DataFrame(
        {
            "org_id": ["o1", "o2"],
            "legal_name": ["Acme Pte Ltd", "Tradeco Ltd"],
            "registered_country": ["SG", "HK"],
            "incorporated_at": [t0 - pd.Timedelta(days=20), None],
            "registered_address": ["1 raffles pl", "8 queens rd"],
        }
    )
    ownership = pd.DataFrame(
        {
            "org_id": ["o1", "o1"],
            "owner_name": ["Li Wei", "Acme Holdings"],
            "owner_type": ["person", "company"],
            "owner_country": ["CN", "SG"],
            "ownership_pct": [60.0, 40.0],
        }
    )
    payments = pd.DataFrame(
        {
            "payment_id": ["p1", "p2"],
            "account_id": ["a1", "a2"],
            "paid_at": [t0 + pd.Timedelta(days=1), t0 + pd.Timedelta(days=5)],
            "amount_usd": [20.0, 500.0],
            "method": ["card", "crypto"],
            "instrument_id": ["i1", "i2"],
            "issuer_country": ["US", None],
            "status": ["succeeded", "failed"],
        }
    )
    api_usage = pd.DataFrame(
        {
            "account_id": ["a1", "a2", "a2"],
            "api_key_id": ["k1", "k2", "k3"],
            "hour": [
                t0 + pd.Timedelta(hours=30),
                t0 + pd.Timedelta(days=4),
                t0 + pd.Timedelta(days=10),
            ],
            "ip_prefix": ["1.2.3.0/24", "5.6.7.0/24", "2001:db8::/48"],
            "ip_country": ["US", "CN", None],
            "asn": [7922, 4134, 16509],
            "network_type": ["residential", "hosting", "vpn_proxy"],
            "requests": [10, 400, 50],
            "input_tokens": [1000, 90000, 5000],
            "output_tokens": [500, 30000, 2000],
            "end_user_ids": [0, 35, 2],
            "top_language": ["en", "zh", None],
            "top_language_share": [0.9, 0.8, None],
        }
    )
    logins = pd.DataFrame(
        {
            "account_id": ["a1", "a2"],
            "login_at": [t0 + pd.Timedelta(hours=2), t0 + pd.Timedelta(days=4, hours=1)],
            "ip_country": ["US", "SG"],
            "network_type": ["residential", "vpn_proxy"],
            "device_id": ["d1", "d2"],
            "browser_tz_offset_min": [-300, 480],
            "browser_language": ["en-US", "zh-CN"],
        }
    )
    labels = pd.DataFrame(
        {
            "account_id": ["a2"],
            "label": [1],
            "labelled_at": [t0 + pd.Timedelta(days=10)],
            "source": ["tip"],
            "typology": ["shell_company"],
        }
    )
    restricted_entities = pd.DataFrame(
        {"name": ["Huawei Cloud"], "country": ["CN"], "list_name": ["BIS Entity List"]}
    )
    return {
        "accounts": accounts,
        "organizations": organizations,
        "ownership": ownership,
        "payments": payments,
        "api_usage": api_usage,
        "logins": logins,
        "labels": labels,
        "restricted_entities": restricted_entities,
    }


def write(tables: dict[str, pd.DataFrame], out: Path, fmt: str = "parquet") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(out / f"{name}.csv", index=False)
        else:
            df.to_parquet(out / f"{name}.parquet", index=False)
    return out


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_clean_world_reads_with_contract_types(tmp_path, fmt):
    tables, report = read_tables(write(tiny_world(), tmp_path / "d", fmt))
    assert report.rows["api_usage"] == 3 and not report.missing_optional
    assert str(tables.accounts["created_at"].dtype) == "datetime64[ns]"
    assert tables.accounts["is_channel_partner"].tolist() == [False, False, True]
    assert tables.api_usage["requests"].dtype == "int64"
    assert tables.organizations["incorporated_at"].isna().tolist() == [False, True]
    assert report.horizon == pd.Timestamp("2026-01-11 01:00")


def test_timezone_aware_and_float_ids_are_normalised(tmp_path):
    world = tiny_world()
    world["payments"]["paid_at"] = (
        world["payments"]["paid_at"].dt.tz_localize("UTC").dt.tz_convert("Asia/Singapore")
    )
    world["api_usage"]["asn"] = world["api_usage"]["asn"].astype(float)
    tables, _ = read_tables(write(world, tmp_path / "d"))
    assert tables.payments["paid_at"].iloc[0] == pd.Timestamp("2026-01-02")
    assert tables.api_usage["asn"].dtype == "int64"


def test_missing_optional_tables_are_reported_not_fatal(tmp_path):
    world = tiny_world()
    for name in ("organizations", "ownership", "restricted_entities"):
        del world[name]
    tables, report = read_tables(write(world, tmp_path / "d"))
    assert tables.organizations is None and tables.restricted_entities is None
    assert set(report.missing_optional) == {"organizations", "ownership", "restricted_entities"}
    assert "absent (optional" in report.render()


def corrupt(world: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    world["accounts"].loc[2, "account_id"] = "a1"  # duplicate id
    world["accounts"].loc[0, "declared_country"] = "usa"  # bad country code
    world["payments"].loc[1, "method"] = "cheque"  # not in the enumeration
    world["api_usage"]["top_language_share"] = world["api_usage"]["top_language_share"].astype(
        object
    )
    world["api_usage"].loc[0, "top_language_share"] = 1.7  # share out of range
    world["api_usage"]["requests"] = world["api_usage"]["requests"].astype(object)
    world["api_usage"].loc[1, "requests"] = "many"  # not a number
    world["logins"]["login_at"] = world["logins"]["login_at"].astype(str)
    world["logins"].loc[0, "login_at"] = "yesterday-ish"  # unparseable time
    world["labels"].loc[0, "account_id"] = "ghost"  # unknown account
    world["ownership"].loc[0, "ownership_pct"] = 140.0
    return world


def test_corrupted_world_gets_one_report_naming_every_problem(tmp_path):
    with pytest.raises(ContractError) as err:
        read_tables(write(corrupt(tiny_world()), tmp_path / "d", "csv"))
    text = str(err.value)
    for expected in (
        "accounts.account_id: duplicate id",
        "accounts.declared_country: not a two-letter upper-case",
        "payments.method: not one of card",
        "api_usage.top_language_share: above the maximum 1",
        "api_usage.requests: not a number (1 row); e.g. 'many'",
        "logins.login_at: unparseable timestamp",
        "labels.account_id: refers to an account not in accounts (1 row); e.g. 'ghost'",
        "ownership.ownership_pct: above the maximum 100",
    ):
        assert expected in text, f"{expected!r} not in report:\n{text}"


def test_missing_required_table_and_column(tmp_path):
    world = tiny_world()
    del world["logins"]
    world["payments"] = world["payments"].drop(columns=["status"])
    with pytest.raises(ContractError) as err:
        read_tables(write(world, tmp_path / "d"))
    assert "logins: required table missing" in str(err.value)
    assert "payments.status: required column(s) missing" in str(err.value)


def test_rows_after_a_declared_horizon_are_refused(tmp_path):
    world = tiny_world()
    world["labels"].loc[0, "labelled_at"] = pd.Timestamp("2026-01-20")
    with pytest.raises(ContractError, match="labels.labelled_at: dated after the data horizon"):
        read_tables(write(world, tmp_path / "d"), horizon=pd.Timestamp("2026-01-11"))


def test_future_dated_rows_are_refused_and_no_feature_is_computed_as_of_them(tmp_path, capsys):
    world = tiny_world()
    extra = pd.concat([world["payments"].iloc[[0]]] * 9, ignore_index=True)
    extra["payment_id"] = [f"future{i}" for i in range(9)]
    extra["paid_at"] = pd.Timestamp("2031-01-01")
    world["payments"] = pd.concat([world["payments"], extra], ignore_index=True)
    data = write(world, tmp_path / "d")
    with pytest.raises(ContractError) as err:
        read_tables(data)
    assert "payments.paid_at: dated after the current time" in str(err.value)
    assert "cannot be real (9 rows)" in str(err.value)
    assert main(["validate", "--data", str(data)]) == 2
    assert "2031-01-01" in capsys.readouterr().err
    out = tmp_path / "f.parquet"
    assert main(["features", "--data", str(data), "--out", str(out)]) == 2
    assert not out.exists()


def test_the_wall_clock_is_injectable(tmp_path):
    data = write(tiny_world(), tmp_path / "d")
    with pytest.raises(ContractError, match="api_usage.hour: dated after the current time"):
        read_tables(data, now=pd.Timestamp("2026-01-08"))
    _, report = read_tables(data, now=pd.Timestamp("2026-01-11 02:00"))  # within the skew
    assert report.horizon == pd.Timestamp("2026-01-11 01:00")


def test_other_tables_running_past_the_usage_do_not_move_the_horizon(tmp_path):
    world = tiny_world()
    world["payments"].loc[1, "paid_at"] = pd.Timestamp("2026-03-01")  # past, but far past usage
    tables, report = read_tables(write(world, tmp_path / "d"))
    assert report.horizon == pd.Timestamp("2026-01-11 01:00") == tables.horizon()
    assert report.horizon_source == "api_usage"
    text = report.render()
    assert (
        "payments.paid_at: runs past the data horizon 2026-01-11 01:00:00 set by api_usage" in text
    )
    assert "up to 2026-03-01" in text


def stray_usage_world() -> dict[str, pd.DataFrame]:
    """300 hours of usage from 2026-01-01 06:00, then one row after months of silence."""
    world = tiny_world()
    usage = world["api_usage"]
    bulk = pd.concat([usage.iloc[[0]]] * 300, ignore_index=True)
    bulk["hour"] = pd.Timestamp("2026-01-01 06:00") + pd.to_timedelta(range(300), unit="h")
    stray = usage.iloc[[1]].assign(hour=pd.Timestamp("2026-04-01"))
    world["api_usage"] = pd.concat([bulk, stray], ignore_index=True)
    return world


def test_stray_usage_after_a_silent_gap_is_reported_not_the_horizon(tmp_path):
    world = stray_usage_world()
    world["labels"].loc[0, "labelled_at"] = pd.Timestamp("2026-01-12")
    tables, report = read_tables(write(world, tmp_path / "d"), now=pd.Timestamp("2026-06-01"))
    end = pd.Timestamp("2026-01-01 06:00") + pd.Timedelta(hours=300)
    assert report.horizon == end == tables.horizon()
    assert "api_usage.hour: dated after a gap of more than 1 days" in report.render()
    assert "the latest 2026-04-01 00:00:00" in report.render()


def test_validate_cli_reports_without_traceback(tmp_path, capsys):
    good = write(tiny_world(), tmp_path / "good")
    assert main(["validate", "--data", str(good)]) == 0
    assert "valid under data contract v1" in capsys.readouterr().out
    bad = write(corrupt(tiny_world()), tmp_path / "bad", "csv")
    assert main(["validate", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "problem(s) with the data contract" in err and "Traceback" not in err
    assert main(["validate", "--data", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unreadable_file_is_named(tmp_path):
    d = write(tiny_world(), tmp_path / "d")
    (d / "payments.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ContractError, match="payments: cannot read payments.parquet"):
        read_tables(d)


def test_a_symlink_loop_is_reported_as_unreadable_not_missing(tmp_path):
    data = write(tiny_world(), tmp_path / "d")
    (data / "logins.parquet").unlink()
    (data / "logins.parquet").symlink_to(data / "logins.parquet")
    with pytest.raises(ContractError) as err:
        read_tables(data)
    assert (
        "logins: logins.parquet exists but cannot be read: Too many levels of symbolic links"
        in (str(err.value))
    )
    assert "required table missing" not in str(err.value)


def test_text_stored_in_a_parquet_number_column_is_a_type_error(tmp_path):
    world = tiny_world()
    world["payments"]["amount_usd"] = ["12.5", "500"]
    with pytest.raises(
        ContractError,
        match=r"payments.amount_usd: stored as text in Parquet \(large_string\) where the contract has a number",
    ):
        read_tables(write(world, tmp_path / "d"))
    read_tables(write(world, tmp_path / "csv", "csv"))  # in CSV everything is text: parsed


def test_empty_accounts_is_said_once_and_plainly(tmp_path):
    world = tiny_world()
    world["accounts"] = world["accounts"].iloc[:0]
    with pytest.raises(ContractError) as err:
        read_tables(write(world, tmp_path / "d"))
    assert "accounts: accounts has 0 rows: nothing to score" in str(err.value)
    assert "refers to an account not in accounts" not in str(err.value)


def test_a_semicolon_delimited_csv_gets_a_delimiter_hint(tmp_path):
    data = write(tiny_world(), tmp_path / "d", "csv")
    tiny_world()["payments"].to_csv(data / "payments.csv", sep=";", index=False)
    with pytest.raises(
        ContractError, match="looks delimited by semicolons; contract CSV files use commas"
    ):
        read_tables(data)


def test_features_command_and_bad_engine_options(tmp_path, capsys):
    from exportguard.features.compute import account_features

    data = write(tiny_world(), tmp_path / "d")
    out = tmp_path / "duckdb.parquet"
    assert main(["features", "--data", str(data), "--out", str(out), "--engine", "duckdb"]) == 0
    written = pd.read_parquet(out)
    tables, report = read_tables(data)
    expected = account_features(tables, report.horizon).assign(as_of=report.horizon)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    assert len(written) > 0
    out = tmp_path / "f.parquet"
    args = ["features", "--data", str(data), "--out", str(out), "--spark-master", "local[1]"]
    assert main(args) == 2
    assert "--spark-master needs --engine spark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["features", "--data", str(data), "--out", str(out), "--engine", "numpy"])
    assert "invalid choice: 'numpy'" in capsys.readouterr().err
    assert not out.exists()


# --- out of core: the activity tables validated in chunks, left on disk ---------------------

SCANNED = ("payments", "api_usage", "logins")


def _outcome(data: Path, **kwargs: object) -> tuple[str, list[str]]:
    """What reading gives: ("ok", the report's lines) or ("refused", its problems), sorted
    (the chunked path may list a table's problems in another order)."""
    try:
        _, report = read_tables(data, **kwargs)  # type: ignore[arg-type]
    except ContractError as err:
        return "refused", sorted(p.render() for p in err.problems)
    return "ok", sorted(report.render().splitlines())


def _bad_worlds(tmp_path: Path) -> dict[str, tuple[Path, dict[str, object]]]:
    """Data directories with each kind of problem the chunked path checks on its own."""
    cases: dict[str, tuple[Path, dict[str, object]]] = {}
    cases["clean"] = (write(tiny_world(), tmp_path / "clean"), {})
    cases["clean csv"] = (write(tiny_world(), tmp_path / "clean_csv", "csv"), {})
    cases["corrupted csv"] = (write(corrupt(tiny_world()), tmp_path / "corrupt", "csv"), {})
    world = tiny_world()
    payments = world["payments"]
    world["payments"] = pd.concat([payments, payments.iloc[[0, 0]]], ignore_index=True)
    world["payments"].loc[3, "account_id"] = "ghost"  # unknown account in a later chunk
    world["payments"].loc[2, "amount_usd"] = -5.0  # below the minimum, one chunk
    world["payments"].loc[0, "amount_usd"] = -1.0  # and another
    cases["duplicates across chunks"] = (write(world, tmp_path / "dup"), {})
    world = tiny_world()
    world["labels"].loc[0, "labelled_at"] = pd.Timestamp("2026-01-20")
    world["logins"].loc[0, "login_at"] = pd.Timestamp("2026-01-25")
    cases["declared horizon"] = (
        write(world, tmp_path / "horizon"),
        {"horizon": pd.Timestamp("2026-01-11")},
    )
    cases["wall clock"] = (
        write(tiny_world(), tmp_path / "clock"),
        {"now": pd.Timestamp("2026-01-08")},
    )
    world = tiny_world()
    world["payments"].loc[1, "paid_at"] = pd.Timestamp("2026-03-01")
    world["logins"].loc[0, "login_at"] = pd.Timestamp("2025-12-01")  # before its sign-up
    cases["late and early rows"] = (write(world, tmp_path / "late"), {})
    cases["stray usage"] = (
        write(stray_usage_world(), tmp_path / "stray"),
        {"now": pd.Timestamp("2026-06-01")},
    )
    world = tiny_world()
    world["api_usage"] = world["api_usage"].iloc[:0]
    cases["no usage: payments set the horizon"] = (write(world, tmp_path / "nousage"), {})
    world = tiny_world()
    world["payments"]["amount_usd"] = ["12.5", "500"]
    cases["text in a number column"] = (write(world, tmp_path / "text"), {})
    world = tiny_world()
    world["payments"] = world["payments"].drop(columns=["status"])
    cases["missing column"] = (write(world, tmp_path / "missing"), {})
    data = write(tiny_world(), tmp_path / "semicolon", "csv")
    tiny_world()["payments"].to_csv(data / "payments.csv", sep=";", index=False)
    cases["semicolons"] = (data, {})
    return cases


@pytest.mark.parametrize("rows", [1, 2, 1000])
def test_out_of_core_reading_reports_exactly_what_reading_whole_tables_does(
    tmp_path, monkeypatch, rows
):
    """Chunks of 1, 2 and more rows than a table has: the same problems (rows counted over
    every chunk, the first examples), the same horizon, warnings and row counts."""
    import exportguard.features.scan as scan

    monkeypatch.setattr(scan, "BATCH_ROWS", rows)
    monkeypatch.setattr(scan.chunks, "__defaults__", (rows,))
    outcomes = set()
    for name, (data, kwargs) in _bad_worlds(tmp_path).items():
        whole = _outcome(data, **kwargs)
        chunked = _outcome(data, scan=SCANNED, **kwargs)
        assert chunked == whole, f"{name}: out of core {chunked} != whole {whole}"
        outcomes.add(whole[0])
    assert outcomes == {"ok", "refused"}


def test_out_of_core_tables_stay_on_disk_and_give_the_same_features(tmp_path):
    from exportguard.features.compute import account_features
    from exportguard.features.tables import ScannedTable

    world = tiny_world()
    world["api_usage"]["asn"] = world["api_usage"]["asn"].astype(float)  # coerced, then written
    data = write(world, tmp_path / "d")
    whole, report = read_tables(data)
    scanned, scanned_report = read_tables(data, scan=SCANNED, scan_dir=tmp_path)
    assert scanned.api_usage is None and scanned.payments is None and scanned.logins is None
    assert set(scanned.scanned) == set(SCANNED)
    usage = scanned.scanned["api_usage"]
    assert isinstance(usage, ScannedTable) and usage.rows == 3
    assert usage.path.parent.parent == tmp_path  # under scan_dir
    on_disk = pd.read_parquet(usage.path)
    rows = {a: i for i, a in enumerate(world["accounts"]["account_id"])}
    assert on_disk["account_code"].tolist() == [rows[a] for a in world["api_usage"]["account_id"]]
    assert str(on_disk["asn"].dtype) == "int64" and str(on_disk["hour"].dtype) == "datetime64[us]"
    pd.testing.assert_frame_equal(
        account_features(whole, report.horizon),
        account_features(scanned, scanned_report.horizon),
        check_exact=True,
    )
    with pytest.raises(ValueError, match="read out of core"):
        scanned.horizon()
    # the files code accounts by their row in these accounts: swapping them is refused
    with pytest.raises(ValueError, match=r"cannot replace \['accounts'\]"):
        scanned.with_tables(accounts=whole.accounts.iloc[::-1])
    assert scanned.with_tables(labels=whole.labels.iloc[:0]).labels.empty
    with pytest.raises(ExportguardError, match=r"cannot read \['accounts'\] out of core"):
        read_tables(data, scan=["accounts"])


def test_the_features_command_reads_out_of_core_and_leaves_nothing_behind(
    tmp_path, monkeypatch, capsys
):
    from exportguard.features.compute import account_features

    data = write(tiny_world(), tmp_path / "d")
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    monkeypatch.setenv("EXPORTGUARD_SCAN_DIR", str(scan_dir))
    out = tmp_path / "f.parquet"
    assert main(["features", "--data", str(data), "--out", str(out)]) == 0
    tables, report = read_tables(data)
    expected = account_features(tables, report.horizon)
    pd.testing.assert_frame_equal(
        pd.read_parquet(out).drop(columns="as_of"), expected, check_dtype=False
    )
    assert list(scan_dir.iterdir()) == []  # the validated copies went with the command
    assert main(["validate", "--data", str(data)]) == 0
    assert "api_usage: 3 rows" in capsys.readouterr().out
    monkeypatch.setenv("EXPORTGUARD_SCAN_DIR", str(tmp_path / "nowhere"))
    assert main(["validate", "--data", str(data)]) == 2
    assert "EXPORTGUARD_SCAN_DIR" in capsys.readouterr().err


def test_a_copy_that_cannot_be_written_is_said_plainly(tmp_path):
    data = write(tiny_world(), tmp_path / "d")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ExportguardError, match="cannot write the validated copy of payments under"):
        read_tables(data, scan=SCANNED, scan_dir=not_a_dir)


def test_a_file_that_breaks_mid_way_is_named_and_leaves_no_copy(tmp_path, monkeypatch):
    """A CSV row with too many fields in a later chunk: the read stops with the file named
    (as a whole-table read does) and the half-written copy is removed."""
    import exportguard.features.scan as scan

    monkeypatch.setattr(scan.chunks, "__defaults__", (1,))
    data = write(tiny_world(), tmp_path / "d", "csv")
    with open(data / "payments.csv", "a", encoding="utf-8") as fh:
        fh.write("p9,a1,2026-01-03,1.0,card,i9,US,succeeded,extra,fields\n")
    whole = _outcome(data)
    scan_dir = tmp_path / "scan"
    scan_dir.mkdir()
    chunked = _outcome(data, scan=SCANNED, scan_dir=scan_dir)
    assert whole[0] == chunked[0] == "refused"
    assert any(p.startswith("payments: cannot read payments.csv: ParserError") for p in whole[1])
    assert any(p.startswith("payments: cannot read payments.csv: ParserError") for p in chunked[1])
    assert list(scan_dir.iterdir()) == []
