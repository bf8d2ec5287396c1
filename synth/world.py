"""Generate a whole synthetic world (the contract's eight tables plus ground truth) and write it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from exportguard.errors import ExportguardError
from exportguard.synth import assemble, geo
from exportguard.synth.activity import LANGS, Usage, make_usage
from exportguard.synth.archetypes import SPECS
from exportguard.synth.common import NS_PER_DAY, as_str, hex_ids
from exportguard.synth.labels import make_labels
from exportguard.synth.logins import Logins, make_logins
from exportguard.synth.orgs import make_orgs
from exportguard.synth.payments import Payments, make_payments
from exportguard.synth.population import (
    Population,
    freemail_domains,
    make_accounts,
    make_population,
)
from exportguard.synth.routing import Routing, make_routing
from exportguard.synth.scenario import get_scenario

log = logging.getLogger(__name__)

TABLES = ("accounts", "organizations", "ownership", "payments", "api_usage", "logins", "labels",
          "restricted_entities")  # fmt: skip
_RESTRICTED_LANGS = ("zh", "ru", "fa")
_EXPECTED = {"zh": ("CN", "TW", "HK", "MO", "SG", "MY"), "ru": ("RU", "BY", "KZ", "KG", "UA", "AM",
             "GE", "EE", "LV", "MD", "UZ"), "fa": ("IR", "AF", "TJ")}  # fmt: skip


@dataclass(frozen=True)
class World:
    """The contract's tables (naive UTC timestamps) and the hidden truth per account."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame


def _check_args(n_accounts: int, days: int) -> None:
    if int(n_accounts) < 1:
        raise ExportguardError(f"--accounts must be at least 1, got {n_accounts}")
    if int(days) < 7:
        raise ExportguardError(f"--days must be at least 7 (one week of activity), got {days}")


def _end_ns(end: str | pd.Timestamp) -> int:
    try:
        ts = pd.Timestamp(end)
    except (ValueError, TypeError) as exc:
        raise ExportguardError(f"--end {end!r} is not a date (use e.g. 2026-10-01)") from exc
    if ts is pd.NaT:
        raise ExportguardError(f"--end {end!r} is not a date")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.as_unit("ns").value)


def generate_world(
    n_accounts: int, seed: int, days: int = 180, end: str | pd.Timestamp = "2026-10-01",
    scenario: str = "default",
) -> World:  # fmt: skip
    """A realistic world of `n_accounts` accounts over `days` days ending at `end`, seeded.

    `scenario` is "default" (the world of every earlier release, byte for byte) or "hard"
    (see exportguard.synth.scenario); the hard scenario draws from a tenth random stream.
    """
    _check_args(n_accounts, days)
    sc = get_scenario(scenario)
    end_ns = _end_ns(end)
    start_ns = end_ns - int(days) * NS_PER_DAY
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(10)]
    pop = make_population(streams[0], int(n_accounts), start_ns, end_ns, sc, ev_rng=streams[9])
    routing = make_routing(streams[1], pop)
    orgw = make_orgs(streams[2], pop)
    ids = hex_ids(streams[3], pop.n, "acc_", 16)
    rng = streams[3]
    freemail = freemail_domains(rng, pop)
    fm_p = np.array([s.freemail for s in SPECS])[pop.spec]
    use_org = (orgw.domain_of_account != None) & (rng.random(pop.n) >= fm_p)  # noqa: E711
    email = np.where(use_org, orgw.domain_of_account, freemail)
    signup = _signup_country(rng, pop, routing)
    accounts = make_accounts(rng, pop, ids, signup, orgw.org_of_account, email)

    usage = make_usage(streams[4], pop, routing)
    logins = make_logins(streams[5], pop, routing)
    tokens = np.bincount(
        usage.account, weights=usage.input_tokens + usage.output_tokens, minlength=pop.n
    )
    pays = make_payments(streams[6], pop, accounts["tier"].to_numpy(), tokens)
    signals = _alert_signals(pop, routing, usage, logins, accounts)
    labels = make_labels(streams[7], pop, signals)
    if sc.quiet_after_confirm:
        usage, logins, pays = _suspend(streams[9], labels, usage, logins, pays)

    usage_table = assemble.usage_table(streams[8], usage, routing, ids)
    del usage  # the coded arrays are no longer needed: keep peak memory down at 100k accounts
    tables = {
        "accounts": assemble.accounts_table(accounts),
        "organizations": assemble.orgs_table(orgw.organizations),
        "ownership": assemble.ownership_table(orgw.ownership),
        "payments": assemble.payments_table(streams[8], pays, ids),
        "api_usage": usage_table,
        "logins": assemble.logins_table(streams[8], logins, routing, ids),
        "labels": assemble.labels_table(labels, ids),
        "restricted_entities": assemble.entities_table(orgw.restricted_entities),
    }
    truth = pd.DataFrame({
        "account_id": as_str(ids),
        "is_circumvention": pop.is_positive(),
        "typology": as_str([SPECS[i].typology for i in pop.spec]),
        "archetype": as_str([SPECS[i].name for i in pop.spec]),
    })  # fmt: skip
    return World(tables=tables, truth=truth)


def _suspend(
    rng: np.random.Generator, labels: pd.DataFrame, usage: Usage, logins: Logins, pays: Payments
) -> tuple[Usage, Logins, Payments]:
    """Confirmed accounts are suspended 0-3 days after the decision: their rows stop there."""
    stop = np.full(int(max(usage.account.max(initial=0), logins.account.max(initial=0),
                           pays.account.max(initial=0))) + 1, np.iinfo(np.int64).max)  # fmt: skip
    confirmed = labels[labels["label"] == 1]
    delay = (rng.uniform(0, 3, len(confirmed)) * NS_PER_DAY).astype(np.int64)
    stop[confirmed["account"].to_numpy()] = confirmed["labelled_ns"].to_numpy() + delay

    def keep(obj, time_field: str, row_fields: tuple[str, ...]):
        mask = getattr(obj, time_field) < stop[obj.account]
        return replace(obj, **{f: getattr(obj, f)[mask] for f in row_fields})

    usage = keep(usage, "hour_ns", ("account", "key", "hour_ns", "prefix", "requests",
                                    "input_tokens", "output_tokens", "end_users", "lang",
                                    "lang_share"))  # fmt: skip
    logins = keep(logins, "login_ns", ("account", "login_ns", "prefix", "device", "tz_min", "tag"))
    pays = keep(pays, "paid_ns", ("account", "paid_ns", "amount", "instrument", "status"))
    return usage, logins, pays


def _signup_country(rng: np.random.Generator, pop: Population, routing: Routing) -> np.ndarray:
    """Sign-up IP country: mostly the first routing slot; leaks and GeoIP gaps included."""
    first = routing.country[routing.home()]
    out = np.where(rng.random(pop.n) < 0.7, first, pop.declared).astype(object)
    loud = pop.is_positive() & ~pop.careful & np.isin(pop.operator, geo.RESTRICTED)
    leak = loud & (rng.random(pop.n) < 0.1 * (1 - pop.care))
    out[leak] = pop.operator[leak]
    out[rng.random(pop.n) < 0.05] = None
    return out


def _alert_signals(
    pop: Population, routing: Routing, usage: Usage, logins: Logins, accounts: pd.DataFrame
) -> dict[str, np.ndarray]:
    """The obvious per-account signs that provider rules alert on (used to bias reviews)."""
    n = pop.n
    restricted = np.isin(routing.country.astype(str), geo.RESTRICTED)

    def share(owner: np.ndarray, hit: np.ndarray) -> np.ndarray:
        tot = np.bincount(owner, minlength=n)
        return np.bincount(owner, weights=hit.astype(float), minlength=n) / np.maximum(tot, 1)

    unexpected_by_lang = np.zeros((n, len(LANGS) + 1), dtype=bool)  # last column: null
    for code in _RESTRICTED_LANGS:
        unexpected_by_lang[:, LANGS.index(code)] = ~np.isin(
            pop.declared.astype(str), _EXPECTED[code]
        )
    unexpected = unexpected_by_lang[usage.account, usage.lang]
    eu_max = np.zeros(n)
    order = np.lexsort((usage.end_users, usage.account))
    last = np.r_[usage.account[order][1:] != usage.account[order][:-1], True]
    eu_max[usage.account[order][last]] = usage.end_users[order][last]
    return {
        "restricted_share": share(usage.account, restricted[usage.prefix]),
        "login_restricted_share": share(logins.account, restricted[logins.prefix]),
        "unexpected_language_share": share(usage.account, unexpected),
        "signup_restricted": np.isin(accounts["signup_ip_country"].astype(str), geo.RESTRICTED),
        "end_users_max": eu_max,
        "partner": accounts["is_channel_partner"].to_numpy(bool),
    }


def write_world(world: World, out_dir: Path, truth_path: Path, fmt: str = "parquet") -> None:
    """Write every table as `<table>.<fmt>` into out_dir and the truth to truth_path (never inside)."""
    out_dir, truth_path = Path(out_dir), Path(truth_path)
    if fmt not in ("parquet", "csv"):
        raise ExportguardError(f"--format must be parquet or csv, got {fmt!r}")
    if truth_path.resolve().is_relative_to(out_dir.resolve()):
        raise ExportguardError(
            f"the truth file {truth_path} must not be inside the data directory {out_dir}: "
            "the model would see the answers"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        df = world.tables[name]
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(path, index=False)
        else:
            df.to_csv(path, index=False)
        log.debug("wrote %s (%d rows)", path, len(df))
    if truth_path.suffix == ".csv":
        world.truth.to_csv(truth_path, index=False)
    else:
        world.truth.to_parquet(truth_path, index=False)
