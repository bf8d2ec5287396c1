"""Account features as relational queries: one definition, run by DuckDB or by Spark.

A feature family is written once, as SQL in DuckDB's dialect over a fixed set of relations:

- `requests(req_id, account_id, as_of)`: the (account, time) pairs asked for; the
  many-as-of pass of training is one query (each request joins only its own rows);
- the contract's tables as validated by `features.contract.read_tables` (`accounts`,
  `api_usage`, ...);
- the policy as data (`policy_relations`: countries, networks, operator ASNs, UTC offsets,
  expected languages), so the same lists reach both engines and are pinned with the policy
  in the feature spec.

Account ids reach the engine as integer codes (the account's position in `accounts`), and
relations several families read are derived once (`DERIVED`: api_usage by account and hour,
the graph's links). `DuckDBEngine` runs the text as written (embedded, multi-threaded,
spills past its memory limit); `SparkEngine` runs the same text transpiled by sqlglot to
Spark SQL. The point-in-time rule is in the join: a request sees only rows dated strictly
before its as_of, and a trailing window of w days is [as_of - w, as_of). Normalisation
as the contract reads: country codes trimmed and upper-cased, network types trimmed and
lower-cased, a missing country is unknown (left out of country shares), a share of nothing
is NULL (NaN).

Relational (`SQL_FAMILIES`, 84 of the registry's 88 features): traffic geography of API
traffic, logins and the account record; payments; reseller / volume; the added red flags;
the network-mix, language-mix and rhythm profiles; language; time zone; lifecycle; the
organisation's lookups and counts; the graph's shared devices and instruments. The graph's
components are answered by union-find over the links these queries extract
(`graph_links`); effective ownership (chains to a fixed point under the OFAC 50% rule) and
name screening (fuzzy matching) run per organisation on numpy beside them
(`features.compute`). Language tags are parsed in Python on their
distinct values only, and reach the queries as the `language_tags` table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from exportguard.errors import ExportguardError
from exportguard.features.language import primary_language, restricted_browser_tag
from exportguard.features.policy import Policy
from exportguard.features.tables import RawTables
from exportguard.features.vocabulary import (
    ANONYMISING,
    HOSTING,
    LOGIN_NETWORK_TYPES,
    NETWORK_TYPES,
    PROFILE_LANGUAGES,
    RAMP_TOKENS,
)

log = logging.getLogger(__name__)

DAY_US = 86_400_000_000
WEEK_US = 7 * DAY_US
IDLE_GAP_US = 30 * DAY_US


def _entropy(masses: str) -> str:
    """The `entropy` CTE: Shannon entropy (bits) of each request's (req_id, mass) rows in
    `masses`; no row for a request whose masses sum to zero."""
    return f"""entropy AS (
    SELECT
        b.req_id,
        CAST(sum(CAST(
            CASE WHEN b.mass > 0 THEN -(b.mass / t.total) * log2(b.mass / t.total) ELSE 0 END
            AS DECIMAL(38, 18))) AS DOUBLE) AS bits
    FROM {masses} AS b
    JOIN (SELECT req_id, sum(mass) AS total FROM {masses} GROUP BY req_id) AS t
        ON t.req_id = b.req_id
    WHERE t.total > 0
    GROUP BY b.req_id
)"""


#: api_usage traffic geography: shares of requests by where and through what they came
#:
#: Traffic geography: where API traffic and console logins come from, against the declared country.
#:
#: Red flags: traffic from unsupported regions, transshipment through intermediary
#: jurisdictions, proxies and data-centre networks, a location that differs from the declared
#: one (BIS 2024, FinCEN IP-address flag, providers' published enforcement). Shares are of
#: requests; rows without a geolocated country are left out of country shares (unknown is not
#: "elsewhere"), and a share with no traffic in its window is NaN.
USAGE_GEO = (
    """
WITH grouped AS (
    -- the request's rows collapsed to distinct (country, network, ASN, window) first: the
    -- string work below then runs on ~3% of the rows (measured: 2.5x faster at 30k accounts)
    SELECT
        r.req_id,
        u.ip_country,
        u.network_type,
        u.asn,
        u.hour >= r.as_of - INTERVAL 30 DAY AS w30,
        sum(u.requests) AS n
    FROM requests AS r
    JOIN api_usage AS u ON u.account_id = r.account_id AND u.hour < r.as_of
    GROUP BY ALL
),
joined AS (
    SELECT
        g.req_id,
        g.n,
        upper(trim(g.ip_country)) AS country,
        g.ip_country IS NOT NULL AS known,
        g.asn,
        g.w30,
        upper(trim(a.declared_country)) AS declared,
        coalesce(pn.hosting, false) AS hosting,
        coalesce(pn.anonymising, false) AS anonymising
    FROM grouped AS g
    JOIN requests AS r ON r.req_id = g.req_id
    JOIN accounts AS a ON a.account_id = r.account_id
    LEFT JOIN policy_networks AS pn ON pn.network_type = lower(trim(g.network_type))
),
flagged AS (
    SELECT
        j.*,
        coalesce(pc.restricted, false) AND j.known AS restricted,
        coalesce(pc.intermediary, false) AND j.known AS intermediary
    FROM joined AS j
    LEFT JOIN policy_countries AS pc ON pc.country = j.country
),
sums AS (
    SELECT
        req_id,
        coalesce(sum(n) FILTER (WHERE w30), 0) AS all_30,
        coalesce(sum(n) FILTER (WHERE known AND w30), 0) AS known_30,
        coalesce(sum(n) FILTER (WHERE known), 0) AS known_all,
        coalesce(sum(n) FILTER (WHERE restricted AND w30), 0) AS restricted_30,
        coalesce(sum(n) FILTER (WHERE restricted), 0) AS restricted_all,
        coalesce(sum(n) FILTER (WHERE intermediary AND w30), 0) AS intermediary_30,
        coalesce(sum(n) FILTER (WHERE hosting AND w30), 0) AS hosting_30,
        coalesce(sum(n) FILTER (WHERE anonymising AND w30), 0) AS anonymising_30,
        coalesce(sum(n) FILTER (WHERE known AND w30 AND country IS DISTINCT FROM declared), 0)
            AS mismatch_30,
        count(DISTINCT asn) FILTER (WHERE w30) AS asns_30
    FROM flagged
    GROUP BY req_id
),
by_country AS (
    SELECT req_id, country, sum(n) AS mass
    FROM flagged
    WHERE known AND w30
    GROUP BY req_id, country
),
"""
    + _entropy("by_country")
    + """
SELECT
    r.req_id,
    CASE WHEN s.known_30 > 0 THEN s.restricted_30 / s.known_30 END
        AS restricted_traffic_share_30d,
    CASE WHEN s.known_all > 0 THEN s.restricted_all / s.known_all END
        AS restricted_traffic_share_all,
    CASE WHEN s.known_30 > 0 THEN s.intermediary_30 / s.known_30 END
        AS intermediary_traffic_share_30d,
    CASE WHEN s.all_30 > 0 THEN s.hosting_30 / s.all_30 END AS hosting_traffic_share_30d,
    CASE WHEN s.all_30 > 0 THEN s.anonymising_30 / s.all_30 END AS vpn_tor_traffic_share_30d,
    CASE WHEN s.known_30 > 0 THEN s.mismatch_30 / s.known_30 END
        AS declared_country_mismatch_30d,
    e.bits AS traffic_country_entropy_30d,
    coalesce(s.asns_30, 0) AS distinct_asns_30d
FROM requests AS r
LEFT JOIN sums AS s ON s.req_id = r.req_id
LEFT JOIN entropy AS e ON e.req_id = r.req_id
"""
)

#: payments: who pays, from where, and how
#:
#: Payments: who pays, from where, and how (BIS 2024 payer-location flag, FinCEN 2023).
#:
#: Shares are of payment attempts before as_of (all statuses), except the prepaid/crypto share,
#: which is of the amount actually paid (attempts that did not fail). Issuer shares count only
#: attempts with a known issuer country. No attempts -> NaN shares.
PAYMENTS = """
WITH joined AS (
    SELECT
        r.req_id,
        upper(trim(p.issuer_country)) AS issuer,
        p.issuer_country IS NOT NULL AS known,
        upper(trim(a.declared_country)) AS declared,
        upper(trim(a.billing_country)) AS billing,
        coalesce(lower(trim(p.status)) IN ('failed'), false) AS failed,
        coalesce(lower(trim(p.status)) IN ('disputed', 'refunded'), false) AS reversed,
        coalesce(lower(trim(p.method)) IN ('prepaid_card', 'crypto'), false) AS cover,
        coalesce(p.amount_usd, 0.0) AS amount,
        p.instrument_id,
        p.paid_at >= r.as_of - INTERVAL 90 DAY AS w90
    FROM requests AS r
    JOIN payments AS p ON p.account_id = r.account_id AND p.paid_at < r.as_of
    JOIN accounts AS a ON a.account_id = r.account_id
),
flagged AS (
    SELECT
        j.*,
        coalesce(pc.restricted, false) AND j.known AS restricted,
        coalesce(pc.intermediary, false) AND j.known AS intermediary,
        j.known AND j.issuer IS DISTINCT FROM j.declared
            AND (j.billing IS NULL OR j.issuer <> j.billing) AS foreign_issuer
    FROM joined AS j
    LEFT JOIN policy_countries AS pc ON pc.country = j.issuer
),
sums AS (
    SELECT
        req_id,
        count(*) AS attempts,
        count(*) FILTER (WHERE known) AS with_issuer,
        count(*) FILTER (WHERE foreign_issuer) AS foreign_n,
        count(*) FILTER (WHERE restricted) AS restricted_n,
        count(*) FILTER (WHERE intermediary) AS intermediary_n,
        coalesce(CAST(sum(CAST(amount AS DECIMAL(38, 18))) FILTER (WHERE NOT failed AND cover) AS DOUBLE), 0)
            AS cover_paid,
        coalesce(CAST(sum(CAST(amount AS DECIMAL(38, 18))) FILTER (WHERE NOT failed) AS DOUBLE), 0) AS paid,
        count(*) FILTER (WHERE failed) AS failed_n,
        count(*) FILTER (WHERE reversed) AS reversed_n,
        count(DISTINCT instrument_id) FILTER (WHERE w90) AS instruments_90
    FROM flagged
    GROUP BY req_id
)
SELECT
    r.req_id,
    CASE WHEN s.with_issuer > 0 THEN s.foreign_n / s.with_issuer END
        AS issuer_country_mismatch_share,
    CASE WHEN s.with_issuer > 0 THEN s.restricted_n / s.with_issuer END
        AS restricted_issuer_share,
    CASE WHEN s.with_issuer > 0 THEN s.intermediary_n / s.with_issuer END
        AS intermediary_issuer_share,
    CASE WHEN s.paid > 0 THEN s.cover_paid / s.paid END AS prepaid_crypto_amount_share,
    CASE WHEN s.attempts > 0 THEN s.failed_n / s.attempts END AS failed_payment_rate,
    CASE WHEN s.attempts > 0 THEN s.reversed_n / s.attempts END AS disputed_refunded_rate,
    coalesce(s.instruments_90, 0) AS distinct_instruments_90d
FROM requests AS r
LEFT JOIN sums AS s ON s.req_id = r.req_id
"""

#: reseller / volume: keys, end users, round-the-clock traffic, growth
#:
#: Reseller / volume: many keys, many end users, round-the-clock traffic, fast growth.
#:
#: Red flags of unauthorised relay services ("transfer stations"): key pooling, undisclosed
#: end users behind one account, flat 24x7 traffic from aggregated customers, traffic from
#: many network prefixes. Counts are 0 when there was no traffic (nothing was used); ratios
#: over no traffic are NaN.
RESELLER = (
    """
WITH joined AS (
    SELECT
        r.req_id,
        h.hour,
        h.requests,
        h.tokens,
        h.end_users,
        h.hour >= r.as_of - INTERVAL 30 DAY AS w30,
        h.hour >= r.as_of - INTERVAL 60 DAY AND h.hour < r.as_of - INTERVAL 30 DAY AS prev30
    FROM requests AS r
    JOIN usage_hourly AS h ON h.account_id = r.account_id AND h.hour < r.as_of
),
sums AS (
    SELECT
        req_id,
        count(*) FILTER (WHERE w30 AND requests > 0) AS active_hours,
        max(end_users) FILTER (WHERE w30 AND requests > 0) AS max_end_users,
        sum(end_users) FILTER (WHERE w30 AND requests > 0) AS end_users,
        coalesce(sum(tokens) FILTER (WHERE w30), 0) AS tokens_30,
        coalesce(sum(tokens) FILTER (WHERE prev30), 0) AS tokens_prev
    FROM joined
    GROUP BY req_id
),
by_slot AS (
    -- hour of the week, 0 = Monday 00:00 UTC (1970-01-01 was a Thursday: +72 hours)
    SELECT req_id, (epoch_us(hour) // 3600000000 + 72) % 168 AS slot, sum(requests) AS mass
    FROM joined
    WHERE w30 AND requests > 0
    GROUP BY ALL
),
"""
    + _entropy("by_slot")
    + """,
distinct_30 AS (
    SELECT r.req_id, count(DISTINCT u.api_key_id) AS api_keys, count(DISTINCT u.ip_prefix) AS prefixes
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 30 DAY
    GROUP BY r.req_id
)
SELECT
    r.req_id,
    coalesce(d.api_keys, 0) AS api_keys_30d,
    coalesce(s.max_end_users, 0) AS max_hourly_end_users_30d,
    CASE WHEN s.active_hours > 0 THEN s.end_users / s.active_hours END
        AS end_users_per_active_hour_30d,
    ln(1 + coalesce(s.tokens_30, 0)) AS log_tokens_30d,
    CASE WHEN coalesce(s.tokens_30, 0) > 0 OR coalesce(s.tokens_prev, 0) > 0
        THEN ln(1 + coalesce(s.tokens_30, 0)) - ln(1 + coalesce(s.tokens_prev, 0)) END
        AS token_growth_30d,
    e.bits / log2(168.0) AS hour_of_week_entropy_30d,
    least(
        coalesce(s.active_hours, 0) / greatest(
            least(ceil((epoch_us(r.as_of) - epoch_us(a.created_at)) / 3600000000), 720.0), 1.0
        ),
        1.0
    ) AS active_hour_share_30d,
    coalesce(d.prefixes, 0) AS ip_prefixes_30d
FROM requests AS r
JOIN accounts AS a ON a.account_id = r.account_id
LEFT JOIN sums AS s ON s.req_id = r.req_id
LEFT JOIN entropy AS e ON e.req_id = r.req_id
LEFT JOIN distinct_30 AS d ON d.req_id = r.req_id
"""
)


def _pmod(x: str, m: str) -> str:
    """`x` modulo `m`, in [0, m) also for negative x (SQL's % keeps the dividend's sign)."""
    return f"((({x}) % {m} + {m}) % {m})"


def _circular(a: str, b: str) -> str:
    """Distance in hours between two clock readings on the 24-hour circle (0-12)."""
    d = _pmod(f"({a}) - ({b})", "24.0")
    return f"least({d}, 24.0 - {d})"


def _local_hour(hour_of_day: str, offset: str) -> str:
    """Local hour (0-24) of the middle of UTC hour `hour_of_day` at `offset` hours east."""
    return _pmod(f"{hour_of_day} + 0.5 + {offset}", "24.0")


def _business(hour_of_day: str, offset: str) -> str:
    """1.0 where that UTC hour falls in local business hours (09-18) at `offset`, else 0.0."""
    local = _local_hour(hour_of_day, offset)
    return f"CASE WHEN {local} >= 9.0 AND {local} < 18.0 THEN 1.0 ELSE 0.0 END"


#: time zone: the 90-day profile of requests by UTC hour of day against
#: the declared country's offset, and the browser clocks of console logins
#:
#: Time zone: does the account's daily rhythm and browser clock fit its declared country?
#:
#: Red flag: relay services and remote operators work to another country's day (a UTC+8
#: working rhythm behind a US or EU declaration). The activity profile is the last 90 days of
#: requests by UTC hour of day. The expected offset of a country is policy (`utc_offsets`,
#: one standard offset per country), so a tolerance of 2 hours absorbs daylight saving and
#: the neighbouring zones of large countries.
TIMING = f"""
WITH declared AS (
    SELECT r.req_id, po.offset_h
    FROM requests AS r
    JOIN accounts AS a ON a.account_id = r.account_id
    LEFT JOIN policy_offsets AS po ON po.country = upper(trim(a.declared_country))
),
by_hour AS (
    SELECT r.req_id, hour(u.hour) AS hod, sum(u.requests) AS mass
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 90 DAY
    GROUP BY ALL
),
dense AS (
    -- all 24 hours of each request's profile (zeros included: the correlations need them)
    SELECT
        d.req_id,
        h.hod,
        coalesce(b.mass, 0) AS x,
        {_business("h.hod", "8.0")} AS y8,
        {_business("h.hod", "coalesce(d.offset_h, 0.0)")} AS yd
    FROM declared AS d
    CROSS JOIN hours_of_day AS h
    LEFT JOIN by_hour AS b ON b.req_id = d.req_id AND b.hod = h.hod
),
centred AS (
    -- the profile as shares of the request's traffic (correlation and mean angle do not
    -- depend on scale), so that the exact sums below stay in range
    SELECT
        req_id,
        hod,
        x,
        CASE WHEN t > 0 THEN x / t ELSE 0.0 END AS xs,
        CASE WHEN t > 0 THEN (x - t / 24) / t ELSE 0.0 END AS xc,
        y8 - avg(y8) OVER (PARTITION BY req_id) AS y8c,
        yd - avg(yd) OVER (PARTITION BY req_id) AS ydc
    FROM (SELECT *, sum(x) OVER (PARTITION BY req_id) AS t FROM dense) AS d
),
stats AS (
    -- sums of doubles as exact decimals: the same value in any order, so a request gets the
    -- same features in any query (the training pass and the scoring pass) and on any engine
    SELECT
        req_id,
        sum(x) AS mass,
        CAST(sum(CAST(xs * cos(2.0 * pi() * (hod + 0.5) / 24.0) AS DECIMAL(38, 18))) AS DOUBLE) AS c,
        CAST(sum(CAST(xs * sin(2.0 * pi() * (hod + 0.5) / 24.0) AS DECIMAL(38, 18))) AS DOUBLE) AS s,
        CAST(sum(CAST(xc * y8c AS DECIMAL(38, 18))) AS DOUBLE) AS cov8,
        CAST(sum(CAST(xc * ydc AS DECIMAL(38, 18))) AS DOUBLE) AS covd,
        CAST(sum(CAST(xc * xc AS DECIMAL(38, 18))) AS DOUBLE) AS vx,
        CAST(sum(CAST(y8c * y8c AS DECIMAL(38, 18))) AS DOUBLE) AS v8,
        CAST(sum(CAST(ydc * ydc AS DECIMAL(38, 18))) AS DOUBLE) AS vd
    FROM centred
    GROUP BY req_id
),
tz_near AS (
    -- browser offsets within 15 minutes of a restricted country's clock
    SELECT
        t.tz_min,
        max(CASE WHEN {_circular("t.tz_min / 60", "ro.offset_h")} <= 0.25 THEN 1 ELSE 0 END)
            AS near
    FROM (SELECT DISTINCT browser_tz_offset_min AS tz_min FROM logins) AS t
    CROSS JOIN (SELECT DISTINCT offset_h FROM policy_offsets WHERE restricted) AS ro
    GROUP BY t.tz_min
),
login_rows AS (
    SELECT
        r.req_id,
        l.browser_tz_offset_min IS NOT NULL AND d.offset_h IS NOT NULL AS comparable,
        {_circular("l.browser_tz_offset_min / 60", "d.offset_h")} > 2.0 AS mismatch,
        coalesce(n.near, 0) = 1 AS near
    FROM requests AS r
    JOIN logins AS l ON l.account_id = r.account_id AND l.login_at < r.as_of
    JOIN declared AS d ON d.req_id = r.req_id
    LEFT JOIN tz_near AS n ON n.tz_min = l.browser_tz_offset_min
),
login_sums AS (
    SELECT
        req_id,
        count(*) FILTER (WHERE comparable) AS comparable_n,
        count(*) FILTER (WHERE comparable AND mismatch) AS mismatch_n,
        count(*) FILTER (WHERE comparable AND mismatch AND near) AS restricted_n
    FROM login_rows
    GROUP BY req_id
)
SELECT
    r.req_id,
    CASE WHEN s.mass > 0 AND d.offset_h IS NOT NULL THEN {
    _circular(
        _pmod("14.0 - " + _pmod("atan2(s.s, s.c) * 24.0 / (2.0 * pi())", "24.0"), "24.0"),
        "d.offset_h",
    )
} END AS activity_tz_gap_hours,
    CASE WHEN s.mass > 0 AND d.offset_h IS NOT NULL THEN
        (CASE WHEN s.vx * s.v8 > 0 THEN s.cov8 / sqrt(s.vx * s.v8) END)
        - (CASE WHEN s.vx * s.vd > 0 THEN s.covd / sqrt(s.vx * s.vd) END)
    END AS utc8_rhythm_excess,
    CASE WHEN l.comparable_n > 0 THEN l.mismatch_n / l.comparable_n END
        AS browser_tz_mismatch_share,
    CASE WHEN l.comparable_n > 0 THEN l.restricted_n / l.comparable_n END
        AS browser_tz_restricted_share
FROM requests AS r
JOIN declared AS d ON d.req_id = r.req_id
LEFT JOIN stats AS s ON s.req_id = r.req_id
LEFT JOIN login_sums AS l ON l.req_id = r.req_id
"""


#: the red flags added after the first list: operators, residential exits,
#: anonymised logins, payment cadence, growth of keys and end users
#:
#: Red flags the first feature list missed (each in its domain family of the registry).
#:
#: - Traffic through networks of operators headquartered in restricted countries, by ASN
#:   (policy `restricted_operator_asns`): a relay abroad still shows its home carrier's ASN
#:   when the operator resells transit or roaming exits.
#: - Residential and mobile exits in intermediary countries: residential-proxy relays put
#:   their exits in Hong Kong or Singapore homes and phones, not data centres.
#: - VPN, Tor or hosting at console login, as distinct from API traffic: a person hiding
#:   where they sit, while the relay's API traffic may look clean.
#: - Payment cadence and amounts: round amounts (whole multiples of 50 USD, top-ups bought
#:   as vouchers) and the prepaid-card share by count of payments, not amount.
#: - Growth of API keys and of end users: the last 30 days against the 30 days before,
#:   log ratios (a relay onboarding customers adds keys and end users fast).
FLAGS = """
WITH grouped_90 AS (
    -- collapsed to distinct (country, network, ASN) per request first: the string work and
    -- the policy joins below then run on the few distinct rows
    SELECT r.req_id, u.ip_country, u.network_type, u.asn, sum(u.requests) AS n
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 90 DAY
    GROUP BY ALL
),
usage_90 AS (
    SELECT
        g.req_id,
        g.n,
        coalesce(pc.intermediary, false) AND g.ip_country IS NOT NULL AS intermediary,
        g.ip_country IS NOT NULL AS known,
        coalesce(lower(trim(g.network_type)) IN ('residential', 'mobile'), false) AS residential,
        pa.asn IS NOT NULL AS operator
    FROM grouped_90 AS g
    LEFT JOIN policy_countries AS pc ON pc.country = upper(trim(g.ip_country))
    LEFT JOIN policy_asns AS pa ON pa.asn = g.asn
),
usage_sums AS (
    SELECT
        req_id,
        sum(n) AS all_n,
        sum(n) FILTER (WHERE known) AS known_n,
        coalesce(sum(n) FILTER (WHERE operator), 0) AS operator_n,
        coalesce(sum(n) FILTER (WHERE known AND intermediary AND residential), 0)
            AS inter_res_n
    FROM usage_90
    GROUP BY req_id
),
logins_90 AS (
    SELECT
        r.req_id,
        count(*) AS logins,
        count(*) FILTER (
            WHERE lower(trim(l.network_type)) IN ('vpn_proxy', 'tor', 'hosting')
        ) AS anonymised
    FROM requests AS r
    JOIN logins AS l
        ON l.account_id = r.account_id AND l.login_at < r.as_of
        AND l.login_at >= r.as_of - INTERVAL 90 DAY
    GROUP BY r.req_id
),
pay AS (
    SELECT
        r.req_id,
        count(*) AS attempts,
        count(*) FILTER (WHERE p.amount_usd > 0) AS with_amount,
        count(*) FILTER (WHERE p.amount_usd > 0 AND p.amount_usd % 50 = 0) AS round_n,
        count(*) FILTER (WHERE lower(trim(p.method)) = 'prepaid_card') AS prepaid_n
    FROM requests AS r
    JOIN payments AS p ON p.account_id = r.account_id AND p.paid_at < r.as_of
    GROUP BY r.req_id
),
growth AS (
    SELECT
        r.req_id,
        count(DISTINCT u.api_key_id) FILTER (WHERE u.hour >= r.as_of - INTERVAL 30 DAY)
            AS keys_now,
        count(DISTINCT u.api_key_id) FILTER (WHERE u.hour < r.as_of - INTERVAL 30 DAY)
            AS keys_before,
        coalesce(sum(u.end_user_ids) FILTER (WHERE u.hour >= r.as_of - INTERVAL 30 DAY), 0)
            AS users_now,
        coalesce(sum(u.end_user_ids) FILTER (WHERE u.hour < r.as_of - INTERVAL 30 DAY), 0)
            AS users_before
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 60 DAY
    GROUP BY r.req_id
)
SELECT
    r.req_id,
    CASE WHEN s.all_n > 0 THEN least(s.operator_n / s.all_n, 1.0) END
        AS restricted_operator_traffic_share_90d,
    CASE WHEN s.known_n > 0 THEN least(s.inter_res_n / s.known_n, 1.0) END
        AS intermediary_residential_share_90d,
    CASE WHEN l.logins > 0 THEN least(l.anonymised / l.logins, 1.0) END
        AS login_anonymised_share_90d,
    CASE WHEN p.with_amount > 0 THEN p.round_n / p.with_amount END AS round_amount_payment_share,
    CASE WHEN p.attempts > 0 THEN p.prepaid_n / p.attempts END AS prepaid_payment_count_share,
    CASE WHEN coalesce(g.keys_now, 0) > 0 OR coalesce(g.keys_before, 0) > 0
        THEN ln(1 + g.keys_now) - ln(1 + g.keys_before) END AS api_key_growth_30d,
    CASE WHEN coalesce(g.users_now, 0) > 0 OR coalesce(g.users_before, 0) > 0
        THEN ln(1 + g.users_now) - ln(1 + g.users_before) END AS end_user_growth_30d
FROM requests AS r
LEFT JOIN usage_sums AS s ON s.req_id = r.req_id
LEFT JOIN logins_90 AS l ON l.req_id = r.req_id
LEFT JOIN pay AS p ON p.req_id = r.req_id
LEFT JOIN growth AS g ON g.req_id = r.req_id
"""

#: distribution features: network mix of API traffic and of logins,
#: prompt-language mix, and the daily rhythm in the declared country's local time
#:
#: Distribution features: how an account's traffic is spread, so the model can find tells no
#: rule names.
#:
#: Three families, each a profile over the last 90 days rather than a single red flag:
#:
#: - `network_mix`: the share of API requests, and of console logins, per `network_type`;
#: - `language_mix`: the share of prompt traffic per primary language, for the languages that
#:   carry most API traffic worldwide (PROFILE_LANGUAGES), restricted or not;
#: - `rhythm`: the hour-of-day profile of requests in the declared country's local time
#:   (night 00-06, work 09-18, evening 18-24 shares), its rhythm strength (the length of the
#:   mean resultant vector of the 24-hour profile: 0 for flat round-the-clock traffic, near 1
#:   for one tight daily burst) and the share of console logins at local night.
#:
#: Shares over no rows in the window are NaN (nothing to describe), never 0.
PROFILE = (
    """
WITH usage_90 AS (
    SELECT
        r.req_id,
        u.network_type,
        u.top_language,
        hour(u.hour) AS hod,
        sum(u.requests) AS n,
        sum(CAST(u.input_tokens * coalesce(u.top_language_share, 1.0) AS DECIMAL(38, 18))) AS lang_tokens
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 90 DAY
    GROUP BY ALL
),
offsets AS (
    SELECT r.req_id, po.offset_h
    FROM requests AS r
    JOIN accounts AS a ON a.account_id = r.account_id
    JOIN policy_offsets AS po ON po.country = upper(trim(a.declared_country))
),
usage_rows AS (
    SELECT
        g.req_id,
        g.n,
        g.lang_tokens,
        g.top_language IS NOT NULL AS has_lang,
        lt.profile_lang,
        lower(trim(g.network_type)) AS net,
        """
    + _local_hour("g.hod", "o.offset_h")
    + """ AS local_h
    FROM usage_90 AS g
    LEFT JOIN language_tags AS lt ON lt.tag = g.top_language
    LEFT JOIN offsets AS o ON o.req_id = g.req_id
),
usage_sums AS (
    SELECT
        req_id,
        sum(n) AS all_n,
"""
    + ",\n".join(
        f"        coalesce(sum(n) FILTER (WHERE net = '{t}'), 0) AS net_{t}" for t in NETWORK_TYPES
    )
    + ",\n"
    + ",\n".join(
        f"        coalesce(CAST(sum(lang_tokens) FILTER (WHERE profile_lang = '{c}') AS DOUBLE), 0)"
        f" AS lang_{c}"
        for c in PROFILE_LANGUAGES
    )
    + """,
        coalesce(CAST(sum(lang_tokens) FILTER (WHERE has_lang) AS DOUBLE), 0) AS lang_all,
        sum(n) FILTER (WHERE local_h IS NOT NULL) AS local_n,
        coalesce(sum(n) FILTER (WHERE local_h >= 0 AND local_h < 6), 0) AS night_n,
        coalesce(sum(n) FILTER (WHERE local_h >= 9 AND local_h < 18), 0) AS work_n,
        coalesce(sum(n) FILTER (WHERE local_h >= 18 AND local_h < 24), 0) AS evening_n,
        CAST(sum(CAST(n * cos(2 * pi() * local_h / 24.0) AS DECIMAL(38, 18))) AS DOUBLE) AS cos_n,
        CAST(sum(CAST(n * sin(2 * pi() * local_h / 24.0) AS DECIMAL(38, 18))) AS DOUBLE) AS sin_n
    FROM usage_rows
    GROUP BY req_id
),
login_rows AS (
    SELECT
        r.req_id,
        lower(trim(l.network_type)) AS net,
"""
    + "        "
    + _local_hour("hour(l.login_at)", "o.offset_h")
    + """ AS local_h
    FROM requests AS r
    JOIN logins AS l
        ON l.account_id = r.account_id AND l.login_at < r.as_of
        AND l.login_at >= r.as_of - INTERVAL 90 DAY
    LEFT JOIN offsets AS o ON o.req_id = r.req_id
),
login_sums AS (
    SELECT
        req_id,
        count(*) AS all_n,
"""
    + ",\n".join(
        f"        count(*) FILTER (WHERE net = '{t}') AS net_{t}" for t in LOGIN_NETWORK_TYPES
    )
    + """,
        count(*) FILTER (WHERE local_h IS NOT NULL) AS local_n,
        count(*) FILTER (WHERE local_h >= 0 AND local_h < 6) AS night_n
    FROM login_rows
    GROUP BY req_id
)
SELECT
    r.req_id,
"""
    + "".join(
        f"    CASE WHEN u.all_n > 0 THEN least(u.net_{t} / u.all_n, 1.0) END"
        f" AS api_network_{t}_share_90d,\n"
        for t in NETWORK_TYPES
    )
    + "".join(
        f"    CASE WHEN l.all_n > 0 THEN least(l.net_{t} / l.all_n, 1.0) END"
        f" AS login_network_{t}_share_90d,\n"
        for t in LOGIN_NETWORK_TYPES
    )
    + "".join(
        f"    CASE WHEN u.lang_all > 0 THEN least(u.lang_{c} / u.lang_all, 1.0) END"
        f" AS prompt_language_{c}_share_90d,\n"
        for c in PROFILE_LANGUAGES
    )
    + "".join(
        f"    CASE WHEN u.local_n > 0 THEN least(u.{k}_n / u.local_n, 1.0) END"
        f" AS local_{k}_traffic_share_90d,\n"
        for k in ("night", "work", "evening")
    )
    + """    CASE WHEN u.local_n > 0
        THEN least(sqrt(u.cos_n * u.cos_n + u.sin_n * u.sin_n) / u.local_n, 1.0) END
        AS rhythm_strength_90d,
    CASE WHEN l.local_n > 0 THEN least(l.night_n / l.local_n, 1.0) END
        AS login_local_night_share_90d
FROM requests AS r
LEFT JOIN usage_sums AS u ON u.req_id = r.req_id
LEFT JOIN login_sums AS l ON l.req_id = r.req_id
"""
)


#: language: prompt languages of restricted regions in the last 30
#: days, and where the declared country does not make them ordinary; browser languages
#:
#: Language: prompt and browser languages of restricted regions, relative to the declared country.
#:
#: A restricted-region language is only a weak flag where it is an ordinary local language
#: (Chinese in Taiwan or Singapore), so the "unexpected" share counts it only where policy's
#: `expected_languages` does not list the declared country. Prompt shares weight each hour by
#: its input tokens times the dominant language's share (taken as 1 when not reported); hours
#: without a dominant language are left out.
LANGUAGE = """
WITH usage_30 AS (
    SELECT
        r.req_id,
        u.top_language,
        sum(u.input_tokens) AS tokens,
        sum(CAST(u.input_tokens * coalesce(u.top_language_share, 1.0) AS DECIMAL(38, 18))) AS mass
    FROM requests AS r
    JOIN api_usage AS u
        ON u.account_id = r.account_id AND u.hour < r.as_of
        AND u.hour >= r.as_of - INTERVAL 30 DAY
    GROUP BY ALL
),
flagged AS (
    SELECT
        g.req_id,
        g.tokens,
        g.mass,
        g.top_language IS NOT NULL AS known,
        coalesce(lt.restricted_lang, false) AS restricted,
        pe.lang IS NOT NULL AS expected
    FROM usage_30 AS g
    JOIN requests AS r ON r.req_id = g.req_id
    JOIN accounts AS a ON a.account_id = r.account_id
    LEFT JOIN language_tags AS lt ON lt.tag = g.top_language
    LEFT JOIN policy_expected_languages AS pe
        ON pe.lang = lt.primary_lang AND pe.country = upper(trim(a.declared_country))
),
usage_sums AS (
    SELECT
        req_id,
        sum(tokens) FILTER (WHERE known) AS den,
        coalesce(CAST(sum(mass) FILTER (WHERE restricted) AS DOUBLE), 0) AS restricted_mass,
        coalesce(CAST(sum(mass) FILTER (WHERE restricted AND NOT expected) AS DOUBLE), 0)
            AS unexpected_mass
    FROM flagged
    GROUP BY req_id
),
login_sums AS (
    SELECT
        r.req_id,
        count(*) FILTER (WHERE l.browser_language IS NOT NULL) AS known,
        count(*) FILTER (WHERE lt.restricted_browser) AS restricted
    FROM requests AS r
    JOIN logins AS l ON l.account_id = r.account_id AND l.login_at < r.as_of
    LEFT JOIN language_tags AS lt ON lt.tag = l.browser_language
    GROUP BY r.req_id
)
SELECT
    r.req_id,
    CASE WHEN u.den > 0 THEN u.restricted_mass / u.den END AS restricted_language_share_30d,
    CASE WHEN u.den > 0 THEN u.unexpected_mass / u.den END
        AS unexpected_restricted_language_share_30d,
    CASE WHEN l.known > 0 THEN l.restricted / l.known END AS browser_language_restricted_share
FROM requests AS r
LEFT JOIN usage_sums AS u ON u.req_id = r.req_id
LEFT JOIN login_sums AS l ON l.req_id = r.req_id
"""


#: traffic geography of console logins and of the account record: logins
#: from restricted countries, console vs API country divergence (Jensen-Shannon, bits),
#: the sign-up IP's country and the billing country against the declared one
LOGIN_GEO = """
WITH login_countries AS (
    SELECT r.req_id, upper(trim(l.ip_country)) AS country, count(*) AS mass
    FROM requests AS r
    JOIN logins AS l ON l.account_id = r.account_id AND l.login_at < r.as_of
    WHERE l.ip_country IS NOT NULL
    GROUP BY ALL
),
api_countries AS (
    SELECT r.req_id, upper(trim(u.ip_country)) AS country, sum(u.requests) AS mass
    FROM requests AS r
    JOIN api_usage AS u ON u.account_id = r.account_id AND u.hour < r.as_of
    WHERE u.ip_country IS NOT NULL
    GROUP BY ALL
),
login_p AS (
    SELECT c.req_id, c.country, c.mass, c.mass / sum(c.mass) OVER (PARTITION BY c.req_id) AS p,
        coalesce(pc.restricted, false) AS restricted
    FROM login_countries AS c
    LEFT JOIN policy_countries AS pc ON pc.country = c.country
),
api_q AS (
    SELECT req_id, country, mass / sum(mass) OVER (PARTITION BY req_id) AS q
    FROM api_countries
),
login_sums AS (
    SELECT req_id, sum(mass) AS known, coalesce(sum(mass) FILTER (WHERE restricted), 0) AS restricted
    FROM login_p
    GROUP BY req_id
),
divergence AS (
    SELECT
        coalesce(a.req_id, b.req_id) AS req_id,
        CAST(sum(CAST(
            CASE WHEN coalesce(a.p, 0) > 0
                THEN 0.5 * a.p * log2(a.p / (0.5 * (a.p + coalesce(b.q, 0)))) ELSE 0 END
            + CASE WHEN coalesce(b.q, 0) > 0
                THEN 0.5 * b.q * log2(b.q / (0.5 * (coalesce(a.p, 0) + b.q))) ELSE 0 END
            AS DECIMAL(38, 18))) AS DOUBLE) AS bits,
        max(a.p) AS has_logins,
        max(b.q) AS has_api
    FROM login_p AS a
    FULL OUTER JOIN api_q AS b ON a.req_id = b.req_id AND a.country = b.country
    GROUP BY coalesce(a.req_id, b.req_id)
)
SELECT
    r.req_id,
    CASE WHEN l.known > 0 THEN l.restricted / l.known END AS login_restricted_share,
    CASE WHEN d.has_logins > 0 AND d.has_api > 0 THEN least(greatest(d.bits, 0.0), 1.0) END
        AS console_api_country_divergence,
    CASE WHEN a.signup_ip_country IS NOT NULL
        THEN CASE WHEN coalesce(ps.restricted, false) THEN 1.0 ELSE 0.0 END END
        AS signup_ip_restricted,
    CASE WHEN a.billing_country IS NOT NULL THEN
        CASE WHEN upper(trim(a.billing_country)) IS DISTINCT FROM upper(trim(a.declared_country))
            THEN 1.0 ELSE 0.0 END
    END AS billing_declared_mismatch
FROM requests AS r
JOIN accounts AS a ON a.account_id = r.account_id
LEFT JOIN policy_countries AS ps ON ps.country = upper(trim(a.signup_ip_country))
LEFT JOIN login_sums AS l ON l.req_id = r.req_id
LEFT JOIN divergence AS d ON d.req_id = r.req_id
"""

#: lifecycle: age, the ramp to 10M tokens, dormant-then-spike, status
#:
#: Lifecycle: young accounts, fast ramps, sleepers that wake up with a spike; declared status.
#:
#: Red flags: little business history (BIS), accounts bought or registered in bulk and kept
#: dormant before use (providers' "hydra" reports), very fast ramps to high volume.
LIFECYCLE = f"""
WITH steps AS (
    -- each account's active hours in order, with the running token total and the time since
    -- the previous active hour (or sign-up). Both depend only on the rows up to that hour, so
    -- they are computed once per account and every request keeps the hours before its as_of
    SELECT
        h.account_id,
        h.hour,
        h.tokens,
        sum(h.tokens) OVER (PARTITION BY h.account_id ORDER BY h.hour
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum,
        epoch_us(h.hour) - coalesce(
            epoch_us(lag(h.hour) OVER (PARTITION BY h.account_id ORDER BY h.hour)),
            epoch_us(a.created_at)
        ) AS gap_us
    FROM usage_hourly AS h
    JOIN accounts AS a ON a.account_id = h.account_id
    WHERE h.tokens > 0
),
ramp AS (
    -- the hour an account's cumulative tokens first reached {RAMP_TOKENS:,}
    SELECT account_id, min(hour) AS reached
    FROM steps
    WHERE cum >= {RAMP_TOKENS}
    GROUP BY account_id
),
active AS (
    SELECT r.req_id, s.tokens, epoch_us(r.as_of) - epoch_us(s.hour) AS age_us, s.gap_us
    FROM requests AS r
    JOIN steps AS s ON s.account_id = r.account_id AND s.hour < r.as_of
),
gap_end AS (
    -- the end of each request's first idle gap of >= 30 days, as a week index back from as_of
    SELECT req_id, (max(age_us) FILTER (WHERE gap_us >= {IDLE_GAP_US}) - 1) // {WEEK_US}
        AS gap_week
    FROM active
    GROUP BY req_id
),
weeks AS (
    SELECT req_id, (age_us - 1) // {WEEK_US} AS week, sum(tokens) AS tokens
    FROM active
    GROUP BY ALL
),
spike AS (
    SELECT
        w.req_id,
        median(w.tokens) AS median_week,
        max(w.tokens) FILTER (WHERE w.week <= g.gap_week) AS peak,
        max(g.gap_week) AS gap_week
    FROM weeks AS w
    JOIN gap_end AS g ON g.req_id = w.req_id
    GROUP BY w.req_id
)
SELECT
    r.req_id,
    (epoch_us(r.as_of) - epoch_us(a.created_at)) / {DAY_US} AS account_age_days,
    CASE WHEN rp.reached < r.as_of
        THEN greatest(epoch_us(rp.reached) - epoch_us(a.created_at), 0) / {DAY_US} END
        AS days_to_first_10m_tokens,
    CASE WHEN s.gap_week IS NOT NULL AND s.median_week > 0 THEN s.peak / s.median_week END
        AS dormant_then_spike_ratio,
    CAST(a.research_exemption AS DOUBLE) AS research_exemption,
    CAST(a.is_channel_partner AS DOUBLE) AS is_channel_partner,
    CASE WHEN lower(trim(a.account_type)) = 'organization' THEN 1.0 ELSE 0.0 END
        AS is_organization
FROM requests AS r
JOIN accounts AS a ON a.account_id = r.account_id
LEFT JOIN ramp AS rp ON rp.account_id = a.account_id
LEFT JOIN spike AS s ON s.req_id = r.req_id
"""

#: family name -> (query, the features it returns, the columns it reads of each table)
SQL_FAMILIES: dict[str, tuple[str, tuple[str, ...], dict[str, tuple[str, ...]]]] = {
    "usage_geo": (
        USAGE_GEO,
        (
            "restricted_traffic_share_30d",
            "restricted_traffic_share_all",
            "intermediary_traffic_share_30d",
            "hosting_traffic_share_30d",
            "vpn_tor_traffic_share_30d",
            "declared_country_mismatch_30d",
            "traffic_country_entropy_30d",
            "distinct_asns_30d",
        ),
        {
            "accounts": ("account_id", "declared_country"),
            "api_usage": ("account_id", "hour", "ip_country", "network_type", "asn", "requests"),
        },
    ),
    "payments": (
        PAYMENTS,
        (
            "issuer_country_mismatch_share",
            "restricted_issuer_share",
            "intermediary_issuer_share",
            "prepaid_crypto_amount_share",
            "failed_payment_rate",
            "disputed_refunded_rate",
            "distinct_instruments_90d",
        ),
        {
            "accounts": ("account_id", "declared_country", "billing_country"),
            "payments": (
                "account_id",
                "paid_at",
                "issuer_country",
                "status",
                "method",
                "amount_usd",
                "instrument_id",
            ),
        },
    ),
    "reseller": (
        RESELLER,
        (
            "api_keys_30d",
            "max_hourly_end_users_30d",
            "end_users_per_active_hour_30d",
            "log_tokens_30d",
            "token_growth_30d",
            "hour_of_week_entropy_30d",
            "active_hour_share_30d",
            "ip_prefixes_30d",
        ),
        {
            "accounts": ("account_id", "created_at"),
            "api_usage": (
                "account_id",
                "hour",
                "api_key_id",
                "ip_prefix",
                "requests",
                "input_tokens",
                "output_tokens",
                "end_user_ids",
            ),
            "usage_hourly": (),
        },
    ),
    "flags": (
        FLAGS,
        (
            "restricted_operator_traffic_share_90d",
            "intermediary_residential_share_90d",
            "login_anonymised_share_90d",
            "round_amount_payment_share",
            "prepaid_payment_count_share",
            "api_key_growth_30d",
            "end_user_growth_30d",
        ),
        {
            "api_usage": (
                "account_id",
                "hour",
                "ip_country",
                "network_type",
                "asn",
                "requests",
                "api_key_id",
                "end_user_ids",
            ),
            "logins": ("account_id", "login_at", "network_type"),
            "payments": ("account_id", "paid_at", "amount_usd", "method"),
        },
    ),
    "profile": (
        PROFILE,
        (
            *(f"api_network_{t}_share_90d" for t in NETWORK_TYPES),
            *(f"login_network_{t}_share_90d" for t in LOGIN_NETWORK_TYPES),
            *(f"prompt_language_{c}_share_90d" for c in PROFILE_LANGUAGES),
            "local_night_traffic_share_90d",
            "local_work_traffic_share_90d",
            "local_evening_traffic_share_90d",
            "rhythm_strength_90d",
            "login_local_night_share_90d",
        ),
        {
            "accounts": ("account_id", "declared_country"),
            "api_usage": (
                "account_id",
                "hour",
                "network_type",
                "top_language",
                "top_language_share",
                "requests",
                "input_tokens",
            ),
            "logins": ("account_id", "login_at", "network_type"),
        },
    ),
    "language": (
        LANGUAGE,
        (
            "restricted_language_share_30d",
            "unexpected_restricted_language_share_30d",
            "browser_language_restricted_share",
        ),
        {
            "accounts": ("account_id", "declared_country"),
            "api_usage": (
                "account_id",
                "hour",
                "top_language",
                "top_language_share",
                "input_tokens",
            ),
            "logins": ("account_id", "login_at", "browser_language"),
        },
    ),
    "timing": (
        TIMING,
        (
            "activity_tz_gap_hours",
            "utc8_rhythm_excess",
            "browser_tz_mismatch_share",
            "browser_tz_restricted_share",
        ),
        {
            "accounts": ("account_id", "declared_country"),
            "api_usage": ("account_id", "hour", "requests"),
            "logins": ("account_id", "login_at", "browser_tz_offset_min"),
        },
    ),
    "login_geo": (
        LOGIN_GEO,
        (
            "login_restricted_share",
            "console_api_country_divergence",
            "signup_ip_restricted",
            "billing_declared_mismatch",
        ),
        {
            "accounts": (
                "account_id",
                "declared_country",
                "billing_country",
                "signup_ip_country",
            ),
            "api_usage": ("account_id", "hour", "ip_country", "requests"),
            "logins": ("account_id", "login_at", "ip_country"),
        },
    ),
    "lifecycle": (
        LIFECYCLE,
        (
            "account_age_days",
            "days_to_first_10m_tokens",
            "dormant_then_spike_ratio",
            "research_exemption",
            "is_channel_partner",
            "is_organization",
        ),
        {
            "accounts": (
                "account_id",
                "created_at",
                "research_exemption",
                "is_channel_partner",
                "account_type",
            ),
            "usage_hourly": (),
        },
    ),
}

#: organisation (`features.org`), the parts that are lookups and counts: incorporation age
#: at sign-up, registered in an intermediary jurisdiction, other organisations at the same
#: registered address (known at as_of), the largest direct restricted stake, an organisation
#: on a free e-mail domain. An organisation incorporated at or after as_of is unknown then.
ORG = f"""
WITH known AS (
    SELECT r.req_id, r.as_of, a.created_at, o.org_id, o.incorporated_at,
        upper(trim(o.registered_country)) AS country, o.registered_address
    FROM requests AS r
    JOIN accounts AS a ON a.account_id = r.account_id
    JOIN organizations AS o ON o.org_id = a.org_id
    WHERE o.incorporated_at IS NULL OR o.incorporated_at < r.as_of
),
address AS (
    SELECT k.req_id, count(*) - 1 AS others
    FROM known AS k
    JOIN organizations AS o2
        ON o2.registered_address = k.registered_address
        AND (o2.incorporated_at IS NULL OR o2.incorporated_at < k.as_of)
    GROUP BY k.req_id
),
direct AS (
    SELECT
        w.org_id,
        max(CASE WHEN coalesce(pc.restricted, false)
            THEN least(greatest(coalesce(w.ownership_pct, 0.0) / 100.0, 0.0), 1.0) ELSE 0.0 END)
            AS stake
    FROM ownership AS w
    LEFT JOIN policy_countries AS pc ON pc.country = upper(trim(w.owner_country))
    GROUP BY w.org_id
)
SELECT
    r.req_id,
    (epoch_us(k.created_at) - epoch_us(k.incorporated_at)) / {DAY_US}
        AS incorporation_age_at_signup_days,
    CASE WHEN k.req_id IS NOT NULL
        THEN CASE WHEN coalesce(pc.intermediary, false) THEN 1.0 ELSE 0.0 END END
        AS incorporated_in_intermediary,
    CASE WHEN k.req_id IS NOT NULL THEN coalesce(ad.others, 0) END AS orgs_at_registered_address,
    d.stake AS restricted_ownership_max_direct,
    CASE WHEN lower(trim(a.account_type)) = 'organization'
        AND lower(trim(a.email_domain)) IN (SELECT domain FROM policy_freemail)
        THEN 1.0 ELSE 0.0 END AS freemail_organization
FROM requests AS r
JOIN accounts AS a ON a.account_id = r.account_id
LEFT JOIN known AS k ON k.req_id = r.req_id
LEFT JOIN policy_countries AS pc ON pc.country = k.country
LEFT JOIN address AS ad ON ad.req_id = r.req_id
LEFT JOIN direct AS d ON d.org_id = k.org_id
"""

SQL_FAMILIES["org"] = (
    ORG,
    (
        "incorporation_age_at_signup_days",
        "incorporated_in_intermediary",
        "orgs_at_registered_address",
        "restricted_ownership_max_direct",
        "freemail_organization",
    ),
    {
        "accounts": ("account_id", "org_id", "created_at", "account_type", "email_domain"),
        "organizations": ("org_id", "incorporated_at", "registered_country", "registered_address"),
        "ownership": ("org_id", "owner_country", "ownership_pct"),
    },
)

#: graph links (`features.graph`): kind -> (table, entity column, time column)
LINK_KINDS = {
    "device": ("logins", "device_id", "login_at"),
    "instrument": ("payments", "instrument_id", "paid_at"),
    "prefix": ("api_usage", "ip_prefix", "hour"),
}


def _links(table: str, entity: str, time: str) -> str:
    """Each (account, entity) pair with the first time seen, among rows before the latest
    as_of, for entities seen on two or more accounts (the only ones that link)."""
    return f"""
WITH pairs AS (
    SELECT account_id, {entity} AS entity, min({time}) AS first_seen
    FROM {table}
    WHERE account_id IS NOT NULL AND {entity} IS NOT NULL AND {time} IS NOT NULL
        AND {time} < (SELECT max(as_of) FROM requests)
    GROUP BY account_id, {entity}
),
shared AS (
    SELECT entity FROM pairs GROUP BY entity HAVING count(*) >= 2
)
SELECT p.account_id, p.entity, p.first_seen
FROM pairs AS p
JOIN shared AS s ON s.entity = p.entity
"""


def _shared(links: str) -> str:
    """Per request: distinct other accounts that used one of its account's entities of
    `links` before as_of (both sides first seen before it)."""
    return f"""SELECT o.req_id, count(DISTINCT p.account_id) AS n
    FROM (
        SELECT r.req_id, r.account_id, r.as_of, l.entity
        FROM requests AS r
        JOIN {links} AS l ON l.account_id = r.account_id AND l.first_seen < r.as_of
    ) AS o
    JOIN {links} AS p
        ON p.entity = o.entity AND p.first_seen < o.as_of AND p.account_id <> o.account_id
    GROUP BY o.req_id"""


#: graph (`features.graph`): accounts sharing a console device or a payment instrument
GRAPH_SHARED = f"""
WITH devices AS ({_shared("links_device")}),
instruments AS ({_shared("links_instrument")})
SELECT
    r.req_id,
    coalesce(d.n, 0) AS shared_device_accounts,
    coalesce(i.n, 0) AS shared_instrument_accounts
FROM requests AS r
LEFT JOIN devices AS d ON d.req_id = r.req_id
LEFT JOIN instruments AS i ON i.req_id = r.req_id
"""

SQL_FAMILIES["graph_shared"] = (
    GRAPH_SHARED,
    ("shared_device_accounts", "shared_instrument_accounts"),
    {"links_device": (), "links_instrument": ()},
)

#: relations derived once from the contract's tables and shared by the families that read
#: them: name -> (query, the columns it reads of each table)
DERIVED: dict[str, tuple[str, dict[str, tuple[str, ...]]]] = {
    **{
        f"links_{kind}": (_links(table, entity, time), {table: ("account_id", entity, time)})
        for kind, (table, entity, time) in LINK_KINDS.items()
    },
    "usage_hourly": (
        """
SELECT
    account_id,
    hour,
    sum(requests) AS requests,
    sum(input_tokens + output_tokens) AS tokens,
    sum(end_user_ids) AS end_users
FROM api_usage
GROUP BY account_id, hour
""",
        {
            "api_usage": (
                "account_id",
                "hour",
                "requests",
                "input_tokens",
                "output_tokens",
                "end_user_ids",
            )
        },
    ),
}

#: every feature a relational family computes
SQL_FEATURES = tuple(name for _, names, _ in SQL_FAMILIES.values() for name in names)


#: the columns holding language tags (read through `language_tags`)
_TAG_COLUMNS = (("api_usage", "top_language"), ("logins", "browser_language"))


class SqlEngineError(ExportguardError):
    """A relational feature query cannot run (engine missing, bad request)."""


class Engine(Protocol):
    name: str

    def register(self, name: str, table: pa.Table) -> None: ...

    def materialise(self, name: str, sql: str) -> None: ...

    def register_parquet(self, name: str, path: Path, columns: Mapping[str, str]) -> None: ...

    def query(self, sql: str) -> pd.DataFrame: ...


def policy_relations(policy: Policy) -> dict[str, pd.DataFrame]:
    """The policy's country and network lists as the small tables the queries join."""
    restricted = {str(c).strip().upper() for c in policy.restricted_countries}
    intermediary = {str(c).strip().upper() for c in policy.intermediary_countries}
    countries = sorted(restricted | intermediary)
    networks = sorted(set(HOSTING) | set(ANONYMISING))
    offset_of: dict[str, float] = {}
    for key, off in policy.utc_offsets.items():  # first wins, as in features.context.Vocab
        offset_of.setdefault(str(key).strip().upper(), float(off))
    offsets = sorted(offset_of)
    expected = sorted(
        {
            (lang, str(c).strip().upper())
            for lang, cs in policy.expected_languages.items()
            for c in cs
        }
    )
    return {
        "policy_countries": pd.DataFrame(
            {
                "country": pd.Series(countries, dtype=object),
                "restricted": np.array([c in restricted for c in countries], dtype=bool),
                "intermediary": np.array([c in intermediary for c in countries], dtype=bool),
            }
        ),
        "policy_networks": pd.DataFrame(
            {
                "network_type": pd.Series(networks, dtype=object),
                "hosting": [n in HOSTING for n in networks],
                "anonymising": [n in ANONYMISING for n in networks],
            }
        ),
        "policy_asns": pd.DataFrame(
            {"asn": np.array(sorted(set(policy.restricted_operator_asns)), dtype=np.int64)}
        ),
        "policy_offsets": pd.DataFrame(
            {
                "country": pd.Series(offsets, dtype=object),
                "offset_h": np.array([offset_of[c] for c in offsets], dtype=np.float64),
                "restricted": np.array(
                    [c in policy.restricted_countries for c in offsets], dtype=bool
                ),
            }
        ),
        "policy_expected_languages": pd.DataFrame(
            {
                "lang": pd.Series([lang for lang, _ in expected], dtype=object),
                "country": pd.Series([c for _, c in expected], dtype=object),
            }
        ),
        "hours_of_day": pd.DataFrame({"hod": np.arange(24, dtype=np.int64)}),
        "policy_freemail": pd.DataFrame(
            {
                "domain": pd.Series(
                    sorted({d.lower() for d in policy.freemail_domains}), dtype=object
                )
            }
        ),
    }


def language_tags(tags: Iterable[object], policy: Policy) -> pd.DataFrame:
    """What each distinct language tag of the data means under `policy`: its primary language,
    its index among the profiled languages, restricted as a prompt language, restricted as a
    browser language. The tags' parsing stays in Python, run on the
    distinct values only, and reaches both engines as a small table."""
    values = sorted({str(t) for t in tags if t is not None and not pd.isna(t)})
    restricted_langs = set(policy.restricted_languages)
    restricted_countries = set(policy.restricted_countries)
    primary = [primary_language(v) for v in values]
    return pd.DataFrame(
        {
            "tag": pd.Series(values, dtype=object),
            "primary_lang": pd.Series(primary, dtype=object),
            "profile_lang": pd.Series(
                [p if p in PROFILE_LANGUAGES else None for p in primary], dtype=object
            ),
            "restricted_lang": np.array([p in restricted_langs for p in primary], dtype=bool),
            "restricted_browser": np.array(
                [restricted_browser_tag(v, restricted_countries, restricted_langs) for v in values],
                dtype=bool,
            ),
        }
    )


@dataclass
class DuckDBEngine:
    """Embedded DuckDB; frames are scanned in place (Arrow), nothing is copied in."""

    threads: int | None = None
    memory_limit: str | None = None
    #: where DuckDB spills past its memory limit (DuckDB's own default: .tmp in the
    #: working directory)
    temp_directory: str | None = None
    name: str = "duckdb"

    def __post_init__(self) -> None:
        try:
            import duckdb
        except ImportError:
            raise SqlEngineError(
                "the DuckDB feature engine needs duckdb (pip install 'exportguard[features]')"
            ) from None
        self.con = duckdb.connect(":memory:")
        # each SET is fetched to its end: DuckDB refuses other work while a result is open
        if self.threads is not None:
            self.con.execute(f"SET threads = {int(self.threads)}").fetchall()
        if self.memory_limit is not None:
            self.con.execute("SET memory_limit = ?", [self.memory_limit]).fetchall()
        if self.temp_directory is not None:
            self.con.execute("SET temp_directory = ?", [self.temp_directory]).fetchall()

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def register_parquet(self, name: str, path: Path, columns: Mapping[str, str]) -> None:
        """A view `name` over a Parquet file: column `as` <- file column, streamed by each
        query that reads it (out of core)."""
        source = str(path).replace("'", "''")
        select = ", ".join(f'"{src}" AS "{out}"' for out, src in columns.items())
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM '{source}'")

    def materialise(self, name: str, sql: str) -> None:
        """The result of `sql` as temporary table `name` (computed once, read many times)."""
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).df()

    def close(self) -> None:
        self.con.close()


@dataclass
class SparkEngine:
    """A SparkSession (local mode or a cluster); the same SQL, transpiled to Spark's dialect."""

    spark: Any
    name: str = "spark"

    def __post_init__(self) -> None:
        conf, sc = self.spark.conf, self.spark.sparkContext
        if sc.master.startswith("local") and conf.get("spark.sql.shuffle.partitions") == "200":
            # Spark's default of 200 shuffle partitions is for clusters; on one machine it
            # is mostly task overhead (measured: 18.7 s vs 7.9 s with 4, 3k accounts)
            conf.set("spark.sql.shuffle.partitions", str(2 * sc.defaultParallelism))
        conf.set("spark.sql.session.timeZone", "UTC")  # timestamps are naive UTC
        # tables travel to Spark and results back as Arrow, not row by row
        conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")

    def register(self, name: str, table: pa.Table) -> None:
        # Arrow arrives in batches of spark.sql.execution.arrow.maxRecordsPerBatch rows, one
        # partition each (227 for 2M rows); every query would scan them all again. Coalesced
        # to a few partitions per core and cached, each table is converted once (measured,
        # 20k accounts, local[2]: 79 features 106 s -> 68-93 s)
        parts = 2 * self.spark.sparkContext.defaultParallelism
        frame = self.spark.createDataFrame(table).coalesce(parts).cache()
        frame.createOrReplaceTempView(name)

    def register_parquet(self, name: str, path: Path, columns: Mapping[str, str]) -> None:
        """A cached view `name` over a Parquet file (on a cluster: on storage every
        executor reads), column `as` <- file column."""
        select = [f"`{src}` AS `{out}`" for out, src in columns.items()]
        self.spark.read.parquet(str(path)).selectExpr(*select).cache().createOrReplaceTempView(name)

    def materialise(self, name: str, sql: str) -> None:
        """The result of `sql` as cached temporary view `name` (computed once, then reused)."""
        self.spark.sql(to_spark(sql)).cache().createOrReplaceTempView(name)

    def query(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(to_spark(sql)).toPandas()


def to_spark(sql: str) -> str:
    """`sql` (DuckDB's dialect) as Spark SQL."""
    import sqlglot
    from sqlglot import exp

    def rename(node: exp.Expression) -> exp.Expression:
        # DuckDB's epoch_us (exact microseconds) is Spark's unix_micros; sqlglot knows neither
        if isinstance(node, exp.Anonymous) and node.name.lower() == "epoch_us":
            return exp.Anonymous(this="unix_micros", expressions=node.expressions)
        return node

    tree = sqlglot.parse_one(sql, read="duckdb").transform(rename)
    return tree.sql(dialect="spark")


def _requests(requests: pd.DataFrame) -> pa.Table:
    missing = [c for c in ("account_id", "as_of") if c not in requests.columns]
    if missing:
        raise SqlEngineError(f"requests lack column(s) {missing}; expected account_id and as_of")
    as_of = pd.to_datetime(requests["as_of"])
    if as_of.isna().any():
        raise SqlEngineError(f"requests: {int(as_of.isna().sum())} row(s) have no as_of time")
    if getattr(as_of.dt, "tz", None) is not None:
        as_of = as_of.dt.tz_convert("UTC").dt.tz_localize(None)
    return pa.table(
        {
            "req_id": pa.array(np.arange(len(requests), dtype=np.int64)),
            "account_id": pa.array(requests["account_id"].astype(str).to_numpy(dtype=object)),
            "as_of": pa.array(as_of.to_numpy(dtype="datetime64[us]")),
        }
    )


def graph_links(eng: Engine) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The link relations `sql_features(..., derive=...)` left in `eng`, as the numpy arrays
    `features.graph.component_features` takes: kind -> (account code, entity code, first
    seen in ns). Links are few (one per account and shared entity), so they fit the driver."""
    out = {}
    for kind in LINK_KINDS:
        frame = eng.query(
            f"SELECT account_id, entity, epoch_us(first_seen) AS t FROM links_{kind} "
            "ORDER BY account_id, entity"
        )
        entity, _ = pd.factorize(frame["entity"], use_na_sentinel=True)
        out[kind] = (
            frame["account_id"].to_numpy(dtype=np.int64),
            entity.astype(np.int64),
            frame["t"].to_numpy(dtype=np.int64) * 1000,
        )
    return out


def _account_codes(values: pd.Series, accounts: pd.Index) -> pa.Array:
    """Account ids as their position among `accounts` (int64), NULL for an unknown id.

    Grouping, sorting and joining on integers is faster than on the text ids (measured at
    100k accounts: the lifecycle window 3.2 s -> 2.4 s, a group-by by account and hour 1.45 s
    -> 0.93 s), and coding the distinct values only is cheap (10M rows: 0.9 s)."""
    codes, uniques = pd.factorize(values.astype(str) if values.dtype == object else values)
    position = accounts.get_indexer(pd.Index(uniques).astype(str))
    out = np.where(codes >= 0, position[np.maximum(codes, 0)], -1)
    return pa.array(out.astype(np.int64), mask=out < 0)


def _relation(frame: pd.DataFrame) -> pa.Table:
    """A small lookup frame as Arrow; text columns typed as strings even when empty."""
    return pa.table(
        {
            c: pa.array(frame[c].tolist(), type=pa.string())
            if frame[c].dtype == object
            else pa.array(frame[c], from_pandas=True)
            for c in frame.columns
        }
    )


#: the optional tables' columns a family reads, typed: an absent table is an empty one, so
#: its features are NULL (NaN), as for an account without an organisation
_OPTIONAL = {
    "organizations": {
        "org_id": pa.string(),
        "incorporated_at": pa.timestamp("us"),
        "registered_country": pa.string(),
        "registered_address": pa.string(),
    },
    "ownership": {
        "org_id": pa.string(),
        "owner_country": pa.string(),
        "ownership_pct": pa.float64(),
    },
}


def _table(
    tables: RawTables, name: str, columns: Iterable[str], accounts: pd.Index | None = None
) -> pa.Table:
    """The columns a family reads of a contract table, as Arrow (timestamps in microseconds,
    Spark's precision; account_id as the account's integer code when `accounts` is given);
    DuckDB scans it in place."""
    frame = tables.table(name)
    if frame is None and name in tables.scanned:
        raise SqlEngineError(f"table {name} was read out of core: register it with its file")
    if frame is None and name in _OPTIONAL:
        return pa.table({c: pa.array([], type=_OPTIONAL[name][c]) for c in columns})
    if frame is None:
        raise SqlEngineError(f"table {name} is not loaded")
    arrays = {}
    for col in columns:
        values = frame[col]
        if col == "account_id" and accounts is not None:
            arrays[col] = _account_codes(values, accounts)
        elif pd.api.types.is_datetime64_any_dtype(values):
            arrays[col] = pa.array(
                values.to_numpy(dtype="datetime64[us]"), mask=values.isna().to_numpy()
            )
        elif isinstance(values.dtype, pd.CategoricalDtype):
            arrays[col] = pa.array(
                values.astype(object).where(values.notna(), None), type=pa.string()
            )
        else:
            arrays[col] = pa.array(values, from_pandas=True)
    return pa.table(arrays)


def sql_features(
    tables: RawTables,
    requests: pd.DataFrame,
    policy: Policy | None = None,
    engine: Engine | None = None,
    families: Iterable[str] | None = None,
    derive: Iterable[str] = (),
) -> pd.DataFrame:
    """The relational families' features of each (account_id, as_of) request, in request
    order: columns account_id, as_of and the families' features (float64, NaN for NULL).
    `derive` names further `DERIVED` relations to materialise, for the caller to read from
    `engine` afterwards (e.g. `graph_links`)."""
    policy = policy or Policy()
    own = engine is None
    eng: Engine = DuckDBEngine() if engine is None else engine
    wanted = list(SQL_FAMILIES) if families is None else list(families)
    unknown = [f for f in wanted if f not in SQL_FAMILIES]
    if unknown:
        raise SqlEngineError(f"unknown relational families {unknown}; known: {list(SQL_FAMILIES)}")
    started = time.perf_counter()
    try:
        req = _requests(requests)
        # accounts are joined by integer codes: grouping, sorting and joining on them is
        # faster than on the text ids (measured at 100k: window 3.2 s -> 2.4 s); an id
        # that names no account gets NULL and so joins nothing
        accounts = pd.Index(tables.accounts["account_id"].astype(str))
        if not accounts.is_unique:
            raise SqlEngineError("accounts: account_id is not unique")
        req = req.set_column(
            1, "account_id", _account_codes(pd.Series(req.column(1).to_pandas()), accounts)
        )
        eng.register("requests", req)
        relations: Mapping[str, pd.DataFrame] = policy_relations(policy)
        for name, frame in relations.items():
            eng.register(name, _relation(frame))
        reads: dict[str, list[str]] = {}
        extra = set(derive)
        unknown = sorted(extra - set(DERIVED))
        if unknown:
            raise SqlEngineError(f"unknown derived relations {unknown}; known: {list(DERIVED)}")
        derived = [d for d in DERIVED if d in extra or any(d in SQL_FAMILIES[f][2] for f in wanted)]
        sources = [SQL_FAMILIES[f][2] for f in wanted] + [DERIVED[d][1] for d in derived]
        for source in sources:
            for name, table_cols in source.items():
                if name in DERIVED:
                    continue
                reads.setdefault(name, [])
                reads[name] += [c for c in table_cols if c not in reads[name]]
        for name, cols in reads.items():
            scanned = tables.scanned.get(name)
            if scanned is not None:  # on disk, in the contract's types: the engine streams it
                renames = {c: "account_code" if c == "account_id" else c for c in cols}
                eng.register_parquet(name, scanned.path, renames)
            else:
                eng.register(name, _table(tables, name, cols, accounts))
        for name in derived:
            eng.materialise(name, DERIVED[name][0])
        tag_columns = [(t, c) for t, c in _TAG_COLUMNS if c in reads.get(t, ())]
        if tag_columns:
            union = " UNION ".join(f"SELECT DISTINCT {c} AS tag FROM {t}" for t, c in tag_columns)
            tags = language_tags(eng.query(union)["tag"], policy)
            eng.register("language_tags", _relation(tags))
        out = pd.DataFrame(
            {
                "account_id": requests["account_id"].astype(str).to_numpy(),
                "as_of": req.column("as_of").to_pandas().astype("datetime64[ns]"),
            }
        )
        log.debug("%s: tables registered in %.2f s", eng.name, time.perf_counter() - started)
        for family in wanted:
            sql, names, _ = SQL_FAMILIES[family]
            t0 = time.perf_counter()
            got = eng.query(sql).set_index("req_id").reindex(np.arange(req.num_rows))
            log.debug("%s: %s in %.2f s", eng.name, family, time.perf_counter() - t0)
            for name in names:
                out[name] = pd.to_numeric(got[name], errors="raise").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        return out
    finally:
        if own and isinstance(eng, DuckDBEngine):
            eng.close()
