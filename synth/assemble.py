"""Turn the generator's integer-coded arrays into the contract's tables (names, dtypes, order)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from exportguard.synth.activity import LANGS, Usage
from exportguard.synth.common import NS_PER_DAY, as_str, decode, hex_ids, to_time
from exportguard.synth.logins import Logins
from exportguard.synth.payments import METHODS, STATUSES, Payments
from exportguard.synth.routing import NETS, Routing


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and categories of an object array of strings (None -> -1)."""
    present = np.array([v is not None for v in values], dtype=bool)
    cats, inv = np.unique(values[present].astype(str), return_inverse=True)
    codes = np.full(len(values), -1, dtype=np.int64)
    codes[present] = inv
    return codes, cats


def accounts_table(acc: pd.DataFrame) -> pd.DataFrame:
    out = acc.copy()
    out["created_at"] = to_time(acc["created_at"].to_numpy())
    for col in ("account_id", "account_type", "org_id", "declared_country", "billing_country",
                "email_domain", "signup_ip_country", "tier"):  # fmt: skip
        out[col] = as_str(acc[col].to_numpy())
    return out.sort_values("created_at", kind="stable").reset_index(drop=True)


def orgs_table(orgs: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {c: as_str(orgs[c].to_numpy()) for c in ("org_id", "legal_name", "registered_country")}
    )
    out["incorporated_at"] = to_time(orgs["incorporated_at"].to_numpy(np.int64), NS_PER_DAY)
    out["registered_address"] = as_str(orgs["registered_address"].to_numpy())
    return out.sample(frac=1.0, random_state=7).reset_index(drop=True)


def ownership_table(own: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            c: as_str(own[c].to_numpy())
            for c in ("org_id", "owner_name", "owner_type", "owner_country")
        }
    )
    out["ownership_pct"] = own["ownership_pct"].to_numpy(float)
    return out


def payments_table(rng: np.random.Generator, p: Payments, ids: np.ndarray) -> pd.DataFrame:
    inst_ids = hex_ids(rng, p.n_instruments, "ins_", 16)
    order = np.argsort(p.paid_ns, kind="stable")
    icode, icats = _codes(p.issuer)
    inst = p.instrument[order]
    return pd.DataFrame({
        "payment_id": as_str(hex_ids(rng, len(order), "pay_", 16)),
        "account_id": decode(p.account[order], ids),
        "paid_at": to_time(p.paid_ns[order]),
        "amount_usd": p.amount[order].astype(float),
        "method": decode(p.method[inst], METHODS),
        "instrument_id": decode(inst, inst_ids),
        "issuer_country": decode(icode[inst], icats),
        "status": decode(p.status[order], STATUSES),
    })  # fmt: skip


def usage_table(rng: np.random.Generator, u: Usage, r: Routing, ids: np.ndarray) -> pd.DataFrame:
    key_ids = hex_ids(rng, int(u.n_keys.sum()), "key_", 16)
    order = np.lexsort((u.account, u.hour_ns))
    pre = u.prefix[order]
    ccode, ccats = _codes(r.country)
    lang = u.lang[order]
    return pd.DataFrame({
        "account_id": decode(u.account[order], ids),
        "api_key_id": decode(u.key[order], key_ids),
        "hour": to_time(u.hour_ns[order]),
        "ip_prefix": decode(pre, r.prefix_str),
        "ip_country": decode(ccode[pre], ccats),
        "asn": r.asn[pre].astype(np.int64),
        "network_type": decode(r.net[pre], NETS),
        "requests": u.requests[order],
        "input_tokens": u.input_tokens[order],
        "output_tokens": u.output_tokens[order],
        "end_user_ids": u.end_users[order],
        "top_language": decode(lang, LANGS),
        "top_language_share": np.round(u.lang_share[order], 3),
    })  # fmt: skip


def logins_table(rng: np.random.Generator, lg: Logins, r: Routing, ids: np.ndarray) -> pd.DataFrame:
    dev_ids = hex_ids(rng, lg.n_devices, "dev_", 16)
    order = np.argsort(lg.login_ns, kind="stable")
    pre = lg.prefix[order]
    ccode, ccats = _codes(r.country)
    tz = pd.array(np.round(lg.tz_min[order]), dtype="Int64")
    return pd.DataFrame({
        "account_id": decode(lg.account[order], ids),
        "login_at": to_time(lg.login_ns[order]),
        "ip_country": decode(ccode[pre], ccats),
        "network_type": decode(r.net[pre], NETS),
        "device_id": decode(lg.device[order], dev_ids),
        "browser_tz_offset_min": tz,
        "browser_language": as_str(lg.tag[order]),
    })  # fmt: skip


def labels_table(lab: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    lab = lab.sort_values("labelled_ns", kind="stable")
    return pd.DataFrame({
        "account_id": as_str(ids[lab["account"].to_numpy()]),
        "label": lab["label"].to_numpy(np.int64),
        "labelled_at": to_time(lab["labelled_ns"].to_numpy(np.int64)),
        "source": as_str(lab["source"].to_numpy()),
        "typology": as_str(lab["typology"].to_numpy()),
    })  # fmt: skip


def entities_table(ent: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({c: as_str(ent[c].to_numpy()) for c in ("name", "country", "list_name")})
