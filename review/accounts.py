"""What the case page shows about an account from the raw tables: profile, usage, links.

`AccountData` indexes the validated tables (`features.contract.read_tables`) once, by
account, so a case page reads only its account's rows: the declared vs observed
countries, the organisation and its owners (with the share held from restricted
countries), a payments summary, daily requests of the last 90 days split by network type
(drawn as server-rendered SVG), and the accounts one hop away through a shared device,
payment instrument, network prefix or registered address.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from exportguard.features.policy import Policy
from exportguard.features.tables import RawTables

NETWORKS = ("residential", "mobile", "business", "hosting", "vpn_proxy", "tor", "unknown")
COLOURS = ("#4c78a8", "#72b7b2", "#54a24b", "#eeca3b", "#e45756", "#b279a2", "#9d9d9d")
LINK_KINDS = ("device", "instrument", "network prefix", "registered address")


def _index(frame: pd.DataFrame | None, key: str = "account_id") -> dict[Any, np.ndarray]:
    if frame is None or not len(frame):
        return {}
    return {
        k: np.asarray(v) for k, v in frame.groupby(key, observed=True, sort=False).indices.items()
    }


@dataclass
class AccountData:
    tables: RawTables
    policy: Policy

    def __post_init__(self) -> None:
        t = self.tables
        self.accounts = t.accounts.set_index("account_id", drop=False)
        self.by_usage = _index(t.api_usage)
        self.by_payment = _index(t.payments)
        self.by_login = _index(t.logins)
        self.owners = _index(t.ownership, "org_id") if t.ownership is not None else {}
        self.orgs = (
            t.organizations.set_index("org_id", drop=False) if t.organizations is not None else None
        )
        self._links = self._link_maps()

    def _link_maps(self) -> dict[str, tuple[dict[Any, set[str]], dict[str, set[Any]]]]:
        """Per kind: entity -> accounts and account -> entities (only entities of 2+ accounts)."""
        t, out = self.tables, {}
        pairs = {
            "device": (t.logins, "device_id"),
            "instrument": (t.payments, "instrument_id"),
            "network prefix": (t.api_usage, "ip_prefix"),
        }
        for kind, (frame, col) in pairs.items():
            if frame is None:
                continue
            uniq = frame[["account_id", col]].drop_duplicates()
            shared = uniq.groupby(col, observed=True)["account_id"].transform("size") > 1
            uniq = uniq.loc[shared]
            out[kind] = _maps(uniq["account_id"].astype(str), uniq[col])
        if self.orgs is not None:
            acc = t.accounts.dropna(subset=["org_id"])
            addr = acc["org_id"].map(self.orgs["registered_address"])
            frame = pd.DataFrame(
                {"account_id": acc["account_id"].astype(str), "address": addr}
            ).dropna()
            shared = frame.groupby("address")["account_id"].transform("size") > 1
            frame = frame.loc[shared]
            out["registered address"] = _maps(frame["account_id"], frame["address"])
        return out

    def known(self, account_id: str) -> bool:
        return account_id in self.accounts.index

    def profile(self, account_id: str) -> dict[str, Any]:
        acc = self.accounts.loc[account_id]
        usage = self._rows(self.tables.api_usage, self.by_usage, account_id)
        observed: list[tuple[str, float]] = []
        if usage is not None and len(usage) and "ip_country" in usage:
            req = usage.groupby("ip_country", observed=True)["requests"].sum()
            share = (req / max(req.sum(), 1)).sort_values(ascending=False).head(5)
            observed = [(str(k), float(v)) for k, v in share.items()]
        org, owners, restricted = None, [], 0.0
        if (
            self.orgs is not None
            and isinstance(acc.get("org_id"), str)
            and acc["org_id"] in self.orgs.index
        ):
            o = self.orgs.loc[acc["org_id"]]
            org = {"name": o["legal_name"], "country": o["registered_country"],
                   "address": o["registered_address"]}  # fmt: skip
            rows = self.owners.get(acc["org_id"])
            if rows is not None and self.tables.ownership is not None:
                own = self.tables.ownership.iloc[rows]
                owners = own[
                    ["owner_name", "owner_type", "owner_country", "ownership_pct"]
                ].to_dict("records")
                bad = own["owner_country"].isin(self.policy.restricted_countries)
                restricted = float(own.loc[bad, "ownership_pct"].sum())
        pays = self._rows(self.tables.payments, self.by_payment, account_id)
        payments = None
        if pays is not None and len(pays):
            ok = pays["status"] == "succeeded"
            payments = {"count": len(pays), "succeeded_usd": float(pays.loc[ok, "amount_usd"].sum()),
                        "methods": sorted(map(str, pays["method"].unique())),
                        "issuers": sorted(map(str, pays["issuer_country"].dropna().unique()))
                        if "issuer_country" in pays else [],
                        "instruments": int(pays["instrument_id"].nunique())}  # fmt: skip
        return {
            "declared": acc["declared_country"],
            "billing": acc.get("billing_country"),
            "signup_ip": acc.get("signup_ip_country"),
            "created_at": acc["created_at"],
            "type": acc["account_type"],
            "tier": acc["tier"],
            "observed": observed,
            "org": org,
            "owners": owners,
            "restricted_ownership_pct": restricted,
            "payments": payments,
        }

    def usage_chart(self, account_id: str, days: int = 90, width: int = 640) -> dict[str, Any]:
        """Requests per day of the last `days` of the account's usage, stacked by network type."""
        usage = self._rows(self.tables.api_usage, self.by_usage, account_id)
        if usage is None or not len(usage):
            return {"bars": [], "width": width, "height": 0, "legend": [], "days": days, "max": 0}
        end = pd.Timestamp(usage["hour"].max()).normalize() + pd.Timedelta(days=1)
        recent = usage.loc[usage["hour"] >= end - pd.Timedelta(days=days)]
        day = ((recent["hour"] - (end - pd.Timedelta(days=days))) // pd.Timedelta(days=1)).astype(
            int
        )
        net = (
            recent["network_type"].astype(str).map({n: i for i, n in enumerate(NETWORKS)}).fillna(6)
        )
        grid = np.zeros((days, len(NETWORKS)))
        np.add.at(
            grid,
            (day.to_numpy(), net.to_numpy(dtype=int)),
            recent["requests"].to_numpy(dtype=float),
        )
        top = max(float(grid.sum(axis=1).max()), 1.0)
        height, bar_w = 120, width / days
        bars = []
        for d in range(days):
            y = height
            for j in range(len(NETWORKS)):
                h = height * grid[d, j] / top
                if h > 0:
                    y -= h
                    bars.append({"x": d * bar_w, "y": y, "w": max(bar_w - 0.5, 0.5), "h": h,
                                 "colour": COLOURS[j]})  # fmt: skip
        legend = [(n, COLOURS[j]) for j, n in enumerate(NETWORKS) if grid[:, j].any()]
        return {"bars": bars, "width": width, "height": height, "legend": legend,
                "days": days, "max": int(top), "end": (end - pd.Timedelta(days=1)).date()}  # fmt: skip

    def timeline(self, account_id: str, limit: int = 40) -> list[dict[str, Any]]:
        """Dated events, oldest first: sign-up, each payment instrument's first use, the
        first traffic from a restricted country, and console logins from a new country."""
        acc = self.accounts.loc[account_id]
        events = [
            {
                "at": pd.Timestamp(acc["created_at"]),
                "what": f"signed up ({acc['declared_country']} declared)",
            }
        ]
        pays = self._rows(self.tables.payments, self.by_payment, account_id)
        if pays is not None and len(pays):
            first = pays.sort_values("paid_at").drop_duplicates("instrument_id")
            for rec in first.itertuples(index=False):
                issuer = getattr(rec, "issuer_country", None)
                where = f", issued in {issuer}" if isinstance(issuer, str) else ""
                events.append({"at": pd.Timestamp(rec.paid_at),
                               "what": f"first payment with a new {rec.method} instrument{where}"})  # fmt: skip
        usage = self._rows(self.tables.api_usage, self.by_usage, account_id)
        if usage is not None and len(usage) and "ip_country" in usage:
            bad = usage.loc[usage["ip_country"].isin(self.policy.restricted_countries)]
            if len(bad):
                rec = bad.sort_values("hour").iloc[0]
                events.append({"at": pd.Timestamp(rec["hour"]),
                               "what": f"first API traffic from {rec['ip_country']} (restricted)"})  # fmt: skip
        logins = self._rows(self.tables.logins, self.by_login, account_id)
        if logins is not None and len(logins) and "ip_country" in logins:
            firsts = logins.dropna(subset=["ip_country"]).sort_values("login_at")
            firsts = firsts.drop_duplicates("ip_country").iloc[1:]  # the first country is home
            for rec in firsts.itertuples(index=False):
                events.append({"at": pd.Timestamp(rec.login_at),
                               "what": f"console login from a new country: {rec.ip_country}"})  # fmt: skip
        events.sort(key=lambda e: e["at"])
        return events[:limit]

    def linked(self, account_id: str, limit: int = 25) -> list[dict[str, Any]]:
        """Accounts one hop away, with how they are linked (most shared links first)."""
        found: dict[str, set[str]] = {}
        for kind, (members, entities) in self._links.items():
            for entity in entities.get(account_id, ()):
                for other in members[entity]:
                    if other != account_id:
                        found.setdefault(other, set()).add(kind)
        ranked = sorted(found.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
        return [{"account_id": a, "via": sorted(k)} for a, k in ranked]

    @staticmethod
    def _rows(
        frame: pd.DataFrame | None, index: dict[Any, np.ndarray], key: str
    ) -> pd.DataFrame | None:
        if frame is None or key not in index:
            return None
        return frame.iloc[index[key]]


def _maps(
    accounts: pd.Series, entities: pd.Series
) -> tuple[dict[Any, set[str]], dict[str, set[Any]]]:
    members: dict[Any, set[str]] = {}
    of: dict[str, set[Any]] = {}
    for a, e in zip(accounts.tolist(), entities.tolist(), strict=True):
        members.setdefault(e, set()).add(a)
        of.setdefault(a, set()).add(e)
    return members, of
