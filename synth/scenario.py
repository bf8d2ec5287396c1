"""World scenarios: how hard the world is on a detector.

`default` is the world every earlier release generated (byte for byte). `hard` is closer to
the real problem (domain notes §4): evasion spreads until most new circumventers hide most
of their trace, and they pick up each evasive habit on its own rather than as a package;
innocent customers share each single tell; reviewers miss careful evaders more often; and a
confirmed account goes quiet once it is suspended.

All of the scenario's randomness is drawn here, per account, from its own random stream, so
the default scenario's draws are untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exportguard.errors import ExportguardError
from exportguard.synth import geo
from exportguard.synth.common import NS_PER_DAY, choice

#: The evasive habits a circumventer can adopt, each on its own (issue: independent habits).
_CN_MAIL = {d: w for d, w in geo.FREEMAIL_BY_COUNTRY["CN"].items() if d not in geo.CAREFUL_FREEMAIL}
HABITS = ("tz", "browser_lang", "email", "issuer", "proxy", "relay", "prompts")


@dataclass(frozen=True)
class Scenario:
    """Knobs of a world's difficulty (all zero / off in the default world)."""

    name: str
    habit_share: tuple[float, float] = (0.0, 0.0)  # P(adopt each habit), timeline start / end
    tell_share: float = 0.0  # P(an innocent account shows each single tell)
    missed_per_habit: float = 0.0  # reviewers' miss rate added per adopted habit (share)
    careful_found: float = 0.72  # P(a reviewer confirms a careful evader they review)
    quiet_after_confirm: bool = False  # confirmed accounts are suspended: their rows stop


SCENARIOS = {
    "default": Scenario("default"),
    "hard": Scenario(
        "hard",
        habit_share=(0.15, 0.85),
        tell_share=0.04,
        missed_per_habit=0.35,
        careful_found=0.45,
        quiet_after_confirm=True,
    ),
}


def get_scenario(name: str) -> Scenario:
    """The named scenario, or an error naming the choices."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ExportguardError(
            f"--scenario must be one of {', '.join(SCENARIOS)}, got {name!r}"
        ) from None


@dataclass
class Evasion:
    """Per-account evasive habits (circumventers) and innocent tells (everyone else)."""

    habits: dict[str, np.ndarray]  # habit -> bool per account
    tells: dict[str, np.ndarray]  # tell -> bool per account
    tell_tz_hours: np.ndarray  # the browser offset an innocent account with the tz tell shows
    tell_browser: np.ndarray  # browser language mode for the browser_lang tell ("zh", "ru")
    tell_email: np.ndarray  # a free-mail domain of a restricted country's provider
    tell_issuer: np.ndarray  # a card issuer country in an intermediary hub
    tell_lang: np.ndarray  # a restricted-language prompt language
    tell_hub: np.ndarray  # where the relay/proxy tell's traffic exits
    tell_weight: np.ndarray  # share of traffic the relay/proxy tell carries
    careful_found: float = 0.72
    missed_per_habit: float = 0.0
    quiet_after_confirm: bool = False

    def habit(self, name: str) -> np.ndarray:
        return self.habits[name]

    def tell(self, name: str) -> np.ndarray:
        return self.tells[name]

    def habit_fraction(self) -> np.ndarray:
        """Share of the habits each account adopted (0 for the default world)."""
        return np.mean([self.habits[h] for h in HABITS], axis=0)


def draw_evasion(
    rng: np.random.Generator, scenario: Scenario, positive: np.ndarray, careful: np.ndarray,
    created_ns: np.ndarray, start_ns: int, end_ns: int, history_days: float,
) -> Evasion:  # fmt: skip
    """Habits for loud circumventers (rising with sign-up time) and tells for innocent ones."""
    n = len(positive)  # the default world draws here too: all-False masks, its own stream
    origin = start_ns - history_days * NS_PER_DAY
    frac = np.clip((created_ns - origin) / (end_ns - origin), 0.0, 1.0)
    lo, hi = scenario.habit_share
    p_habit = lo + (hi - lo) * frac
    loud = positive & ~careful
    habits = {h: loud & (rng.random(n) < p_habit) for h in HABITS}
    benign = ~positive
    tells = {h: benign & (rng.random(n) < scenario.tell_share) for h in HABITS}
    return Evasion(
        habits=habits,
        tells=tells,
        tell_tz_hours=rng.choice([8.0, 3.0, 3.5], n, p=[0.7, 0.2, 0.1]),
        tell_browser=rng.choice(np.array(["zh", "ru", "fa"], dtype=object), n, p=[0.7, 0.2, 0.1]),
        tell_email=choice(rng, _CN_MAIL, n),
        tell_issuer=choice(rng, {"HK": 3, "SG": 2, "CN": 1, "AE": 1}, n),
        tell_lang=rng.choice(np.array(["zh", "ru", "fa"], dtype=object), n, p=[0.7, 0.2, 0.1]),
        tell_hub=choice(rng, {"HK": 3, "SG": 3, "MY": 1, "AE": 1}, n),
        tell_weight=rng.uniform(0.2, 0.7, n),
        careful_found=scenario.careful_found,
        missed_per_habit=scenario.missed_per_habit,
        quiet_after_confirm=scenario.quiet_after_confirm,
    )
