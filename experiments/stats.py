"""The verdict protocol's statistics (docs/protocol.md §1 and §3): a pooled estimate with its 95 %
two-level bootstrap interval, the rule forms, the verdict words and the seed rule.

What this file is
    `interval` pools per-problem values over seeds: the estimate is the mean over seeds of each
    seed's mean over problems, and its interval comes from a percentile bootstrap that resamples the
    seeds, then the problems within each drawn seed (`Estimate`: estimate, lo, hi, se, seeds). A
    paired contrast is passed as the per-problem differences of its two arms, so both arms always
    draw the same problems. `Rule` is a part of a verdict rule (superiority, non-inferiority, no
    gain, a level, a band), `Gate` a premise or a positive control; `verdict` turns a row's parts and
    gates into one of the protocol's words, and `needs_more_seeds` is §3's seed rule.

Paper (docs/paper.md)
    None: how this project decides whether a claim of the paper is reproduced.

What it simplifies
    * A statistic is always a mean of per-problem values (a difference, a share, a KL): every
      quantity of the protocol is one, so the bootstrap needs no other statistic.
    * docs/collapse.md's rows keep experiments/mechanism2.paired_interval, the same two-level
      bootstrap drawn in another order, by which their verdicts were read.
    * A share within a class (flagged prompts, problems whose student sample was right) is the mean
      over that class's problems; the class is fixed before resampling, so its size does not vary
      between draws.
"""

import dataclasses

import numpy as np

DRAWS = 10_000  # B (docs/protocol.md §3, as docs/collapse.md)


@dataclasses.dataclass(frozen=True)
class Estimate:
    est: float  # mean over seeds of each seed's mean over problems
    lo: float  # 2.5th percentile of the bootstrap draws
    hi: float  # 97.5th percentile
    se: float  # standard deviation of the draws
    seeds: int

    def __str__(self) -> str:
        return f"{self.est:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}]"


def interval(per_seed: list, draws: int = DRAWS, seed: int = 0) -> Estimate:
    """The pooled estimate of `per_seed` (one sequence of per-problem values for each seed) and its
    two-level percentile bootstrap: each draw picks as many seeds as there are, with replacement,
    then within each picked seed as many problems as it holds, with replacement, and takes the mean
    over the picked seeds of their resampled means. Generator numpy.random.default_rng(seed): first
    every draw's seeds, then, seed by seed, the problems of every pick of that seed."""
    values = [np.asarray(v, dtype=float) for v in per_seed]
    if not values or any(v.size == 0 for v in values):
        raise ValueError("every seed needs at least one per-problem value")
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(values), size=(draws, len(values)))  # the seeds of each draw
    means = np.empty(picks.shape)
    for s, v in enumerate(values):
        where = picks == s
        means[where] = v[rng.integers(v.size, size=(int(where.sum()), v.size))].mean(axis=1)
    stats = means.mean(axis=1)
    est = float(np.mean([v.mean() for v in values]))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return Estimate(est, float(lo), float(hi), float(stats.std()), len(values))


# -----------------------------------------------------------------------------
# Rules, gates, verdicts (docs/protocol.md §1 and §3)


@dataclasses.dataclass(frozen=True)
class Rule:
    """One part of a verdict rule: `above` lo > t (superiority: t = 0; non-inferiority with margin m:
    t = −m), `at_least` lo ≥ t (a level), `below` hi < t (no gain with margin m: t = m; a level),
    `band` lo > −t and hi < t."""

    form: str
    threshold: float

    def holds(self, e: Estimate) -> bool:
        t = self.threshold
        return {"above": e.lo > t, "at_least": e.lo >= t, "below": e.hi < t, "band": e.lo > -t and e.hi < t}[
            self.form
        ]

    def on_side(self, e: Estimate) -> bool:
        """The estimate alone lies on the claim's side of the threshold."""
        t = self.threshold
        return {"above": e.est > t, "at_least": e.est >= t, "below": e.est < t, "band": -t < e.est < t}[
            self.form
        ]

    def distance(self, e: Estimate) -> float:
        """|estimate − the nearer bound of the form| (the seed rule's distance)."""
        if self.form == "band":
            return min(abs(e.est - self.threshold), abs(e.est + self.threshold))
        return abs(e.est - self.threshold)

    def __str__(self) -> str:
        t = self.threshold
        return {
            "above": f"lo > {t:g}",
            "at_least": f"lo ≥ {t:g}",
            "below": f"hi < {t:g}",
            "band": f"inside ±{t:g}",
        }[self.form]


superiority = Rule("above", 0.0)


def non_inferiority(margin: float) -> Rule:
    return Rule("above", -margin)


def no_gain(margin: float) -> Rule:
    return Rule("below", margin)


@dataclasses.dataclass(frozen=True)
class Gate:
    """A premise on the pooled estimate (`form` "above": ≥ threshold; "below": < threshold;
    "within": |estimate| ≤ threshold, an accuracy band) or, with `control`, a positive control,
    which also needs its interval above 0."""

    form: str
    threshold: float
    control: bool = False

    def holds(self, e: Estimate) -> bool:
        t = self.threshold
        beyond = {"above": e.est >= t, "below": e.est < t, "within": abs(e.est) <= t}[self.form]
        return beyond and (not self.control or e.lo > 0)

    def distance(self, e: Estimate) -> float:
        if self.form == "within":
            return abs(abs(e.est) - self.threshold)
        return abs(e.est - self.threshold)

    def __str__(self) -> str:
        t = self.threshold
        text = {"above": f"≥ {t:g}", "below": f"< {t:g}", "within": f"within ±{t:g}"}[self.form]
        return text + (" with lo > 0" if self.control else "")


WORDS = ("reproduced", "partly", "inconclusive", "not reproduced", "not tested", "demonstration")


def verdict(parts: dict, gates: dict = None, partly=None, main: str = None, can_fail: bool = True) -> str:
    """The protocol's word for one row. `parts` maps each part's name to (Estimate, Rule), `gates`
    each gate's to (Estimate, Gate); `partly(holds)` says, from {part: holds}, whether the row's
    partial condition is met; `main` names the main part (default: the first).

    In order: a failing gate makes the row not tested; every part holding makes it reproduced (a
    demonstration where the rule could not fail); the partial condition makes it partly; otherwise
    the main part decides: holding or on the other side of its threshold, not reproduced; on the
    claim's side with its interval reaching the threshold, inconclusive."""
    if any(not g.holds(e) for e, g in (gates or {}).values()):
        return "not tested"
    holds = {name: rule.holds(e) for name, (e, rule) in parts.items()}
    if all(holds.values()):
        return "reproduced" if can_fail else "demonstration"
    if partly is not None and partly(holds):
        return "partly"
    e, rule = parts[main or next(iter(parts))]
    if not rule.holds(e) and rule.on_side(e):
        return "inconclusive"
    return "not reproduced"


def needs_more_seeds(parts: dict, gates: dict = None) -> list:
    """§3's seed rule: the names of the parts and gates whose estimate lies within 3 SE of their
    threshold (any one sends the row's runs to seeds 3 and 4)."""
    items = {**parts, **(gates or {})}
    return [name for name, (e, r) in items.items() if r.distance(e) < 3 * e.se]
