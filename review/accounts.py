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
        self._cols: dict[tuple[str, str], np.ndarray] = {}

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
        rows = self.by_usage.get(account_id)
        observed: list[tuple[str, float]] = []
        if rows is not None and len(rows) and "ip_country" in self.tables.api_usage:
            country = self._col("api_usage", "ip_country")[rows]
            known = np.array([isinstance(c, str) for c in country], dtype=bool)
            codes, names = pd.factorize(country[known], sort=True)
            req = np.bincount(codes, self._col("api_usage", "requests")[rows][known].astype(float),
                              minlength=len(names))  # fmt: skip
            share = req / max(req.sum(), 1)
            top = np.argsort(-share, kind="stable")[:5]
            observed = [(str(names[i]), float(share[i])) for i in top]
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
        rows = self.by_payment.get(account_id)
        payments = None
        if rows is not None and len(rows):
            col = self._col
            ok = col("payments", "status")[rows] == "succeeded"
            issuers = (
                col("payments", "issuer_country")[rows]
                if "issuer_country" in self.tables.payments
                else []
            )
            payments = {"count": len(rows),
                        "succeeded_usd": float(col("payments", "amount_usd")[rows][ok].astype(float).sum()),
                        "methods": sorted({str(m) for m in col("payments", "method")[rows]}),
                        "issuers": sorted({str(i) for i in issuers if i is not None}),
                        "instruments": len({i for i in col("payments", "instrument_id")[rows] if i is not None})}  # fmt: skip
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
        rows = self.by_usage.get(account_id)
        if rows is None or not len(rows):
            return {"bars": [], "width": width, "height": 0, "legend": [], "days": days, "max": 0}
        hour = self._col("api_usage", "hour")[rows]
        end = pd.Timestamp(hour.max()).normalize() + pd.Timedelta(days=1)
        start = np.datetime64(end - pd.Timedelta(days=days), "ns")
        recent = hour >= start
        day = ((hour[recent] - start) // np.timedelta64(1, "D")).astype(int)
        slot = {n: i for i, n in enumerate(NETWORKS)}
        net = np.array([slot.get(str(n), 6) for n in self._col("api_usage", "network_type")[rows][recent]],
                       dtype=int)  # fmt: skip
        grid = np.zeros((days, len(NETWORKS)))
        np.add.at(grid, (day, net), self._col("api_usage", "requests")[rows][recent].astype(float))
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
        # plain arrays of the few columns used (pandas per-case operations cost ~1 ms each)
        rows = self.by_payment.get(account_id)
        if rows is not None and len(rows):
            paid = self._col("payments", "paid_at")
            seen: set[Any] = set()
            for i in rows[np.argsort(paid[rows], kind="stable")]:
                instrument = self._col("payments", "instrument_id")[i]
                if instrument in seen:
                    continue
                seen.add(instrument)
                issuer = self._col("payments", "issuer_country")[i]
                where = f", issued in {issuer}" if isinstance(issuer, str) else ""
                method = self._col("payments", "method")[i]
                events.append({"at": pd.Timestamp(paid[i]),
                               "what": f"first payment with a new {method} instrument{where}"})  # fmt: skip
        rows = self.by_usage.get(account_id)
        if rows is not None and len(rows) and "ip_country" in self.tables.api_usage:
            country = self._col("api_usage", "ip_country")
            bad = rows[np.isin(country[rows], list(self.policy.restricted_countries))]
            if len(bad):
                hour = self._col("api_usage", "hour")
                first = bad[np.argmin(hour[bad])]
                events.append({"at": pd.Timestamp(hour[first]),
                               "what": f"first API traffic from {country[first]} (restricted)"})  # fmt: skip
        rows = self.by_login.get(account_id)
        if rows is not None and len(rows) and "ip_country" in self.tables.logins:
            at, place = self._col("logins", "login_at"), self._col("logins", "ip_country")
            home: set[Any] = set()
            for i in rows[np.argsort(at[rows], kind="stable")]:
                if not isinstance(place[i], str) or place[i] in home:
                    continue
                if home:  # the first country is home
                    events.append({"at": pd.Timestamp(at[i]),
                                   "what": f"console login from a new country: {place[i]}"})  # fmt: skip
                home.add(place[i])
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

    def _col(self, table: str, column: str) -> np.ndarray:
        """One column of a table as a numpy array (object for strings), made once."""
        key = (table, column)
        if key not in self._cols:
            frame = self.tables.table(table)
            if frame is None:
                raise KeyError(f"table {table} is not loaded")
            values = frame[column]
            if pd.api.types.is_datetime64_any_dtype(values):
                self._cols[key] = values.to_numpy(dtype="datetime64[ns]")
            else:
                self._cols[key] = values.astype(object).where(values.notna(), None).to_numpy()
        return self._cols[key]

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
