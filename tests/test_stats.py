"""experiments/stats.py against closed forms: the bootstrap's interval and SE where they are known
(one seed of many problems; seeds without within-seed noise, whose distribution can be counted),
its coverage by Monte Carlo, and each rule form, verdict word and the seed rule at their bounds."""

import itertools
import math

import numpy as np
import pytest

from experiments import stats
from experiments.stats import Estimate, Gate, Rule


def test_one_seed_of_many_problems_gives_the_normal_interval():
    x = np.random.default_rng(5).normal(0.3, 1.0, size=2000)
    e = stats.interval([x])
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert e.est == pytest.approx(x.mean()) and e.seeds == 1
    assert e.se == pytest.approx(se, rel=0.05)
    assert e.lo == pytest.approx(x.mean() - 1.96 * se, abs=0.1 * se)
    assert e.hi == pytest.approx(x.mean() + 1.96 * se, abs=0.1 * se)


def test_the_seed_level_resamples_seeds_with_replacement():
    """Three seeds with no spread inside: each draw is the mean of three picks among the seeds'
    values, 27 equally likely choices. The smallest and largest means (1/27 each, more than 2.5 %)
    are the interval's ends, and the SE is the population SD over √3."""
    seeds = [[0.1] * 50, [0.2] * 80, [0.6] * 30]
    e = stats.interval(seeds)
    means = [np.mean(c) for c in itertools.product([0.1, 0.2, 0.6], repeat=3)]
    assert e.est == pytest.approx(0.3)
    assert (e.lo, e.hi) == pytest.approx((0.1, 0.6))
    assert e.se == pytest.approx(np.std(means), rel=0.03)


def test_the_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng, hits, trials = np.random.default_rng(11), 0, 120
    for t in range(trials):
        seeds = [rng.binomial(1, 0.6, size=100) - rng.binomial(1, 0.6, size=100) for _ in range(3)]
        e = stats.interval(seeds, draws=1000, seed=t)
        hits += e.lo <= 0.0 <= e.hi
    assert 0.85 <= hits / trials <= 0.995


def test_the_draws_are_fixed_by_the_generator_seed():
    seeds = [[0, 1, 1, 0, 1], [1, 1, 0, 1]]
    assert stats.interval(seeds) == stats.interval(seeds)
    assert stats.interval(seeds, seed=1) != stats.interval(seeds)
    with pytest.raises(ValueError):
        stats.interval([[0.1], []])


def est(e, lo, hi, se=0.01):
    return Estimate(e, lo, hi, se, 3)


@pytest.mark.parametrize(
    "rule, e, holds",
    [
        (stats.superiority, est(0.05, 0.0, 0.1), False),  # lo on 0: not above
        (stats.superiority, est(0.05, 0.001, 0.1), True),
        (stats.non_inferiority(0.03), est(0.0, -0.03, 0.02), False),
        (stats.non_inferiority(0.03), est(0.0, -0.029, 0.02), True),
        (stats.no_gain(0.03), est(0.0, -0.02, 0.03), False),  # hi on the margin
        (stats.no_gain(0.03), est(0.0, -0.02, 0.029), True),
        (Rule("at_least", 0.8), est(0.9, 0.8, 0.95), True),  # a level may be met exactly
        (Rule("at_least", 0.8), est(0.9, 0.799, 0.95), False),
        (Rule("below", 0.05), est(0.01, 0.0, 0.05), False),
        (Rule("band", 2.0), est(0.0, -1.9, 1.9), True),
        (Rule("band", 2.0), est(0.0, -2.1, 1.9), False),
        (Rule("band", 2.0), est(0.0, -1.9, 2.0), False),
    ],
)
def test_rule_forms_at_their_bounds(rule, e, holds):
    assert rule.holds(e) is holds


def test_gates_read_the_estimate_and_a_positive_control_also_its_interval():
    assert Gate("above", 0.05).holds(est(0.05, -0.1, 0.2))
    assert not Gate("above", 0.05).holds(est(0.049, 0.0, 0.2))
    assert not Gate("above", 0.05, control=True).holds(est(0.2, 0.0, 0.4))
    assert Gate("above", 0.05, control=True).holds(est(0.2, 0.01, 0.4))
    assert Gate("below", 0.05).holds(est(0.04, 0.0, 0.1)) and not Gate("below", 0.05).holds(est(0.05, 0, 0.1))
    assert Gate("within", 0.05).holds(est(-0.05, -0.1, 0.0)) and not Gate("within", 0.05).holds(
        est(0.06, 0, 0.1)
    )


def test_verdict_words_follow_the_protocol():
    up = stats.superiority
    good, near, bad = est(0.1, 0.05, 0.15), est(0.02, -0.01, 0.05), est(-0.02, -0.05, 0.01)
    gate_ok, gate_bad = (est(0.3, 0.2, 0.4), Gate("above", 0.05)), (est(0.01, 0, 0.1), Gate("above", 0.05))
    assert stats.verdict({"a": (good, up)}, {"g": gate_ok}) == "reproduced"
    assert stats.verdict({"a": (good, up)}, {"g": gate_bad}) == "not tested"
    assert stats.verdict({"a": (good, up)}, can_fail=False) == "demonstration"
    assert stats.verdict({"a": (near, up)}) == "inconclusive"
    assert stats.verdict({"a": (bad, up)}) == "not reproduced"
    # P1's form: (b) alone holding is partly; the main part (a) decides otherwise
    two = lambda a, b: {"a": (a, up), "b": (b, up)}
    only_b = lambda h: h["b"] and not h["a"]
    assert stats.verdict(two(bad, good), partly=only_b) == "partly"
    assert stats.verdict(two(near, bad), partly=only_b) == "inconclusive"
    assert stats.verdict(two(good, bad), partly=only_b) == "not reproduced"  # main holds, (b) fails
    assert stats.verdict(two(bad, good), partly=only_b, main="b") == "partly"


def test_the_seed_rule_flags_estimates_within_three_standard_errors():
    parts = {"gain": (Estimate(0.05, 0.01, 0.09, 0.02, 3), stats.superiority)}
    assert stats.needs_more_seeds(parts) == ["gain"]  # 0.05 < 3 × 0.02
    parts = {"gain": (Estimate(0.07, 0.03, 0.11, 0.02, 3), stats.superiority)}
    assert stats.needs_more_seeds(parts) == []
    band = {"len": (Estimate(1.5, 1.0, 1.9, 0.2, 3), Rule("band", 2.0))}  # 0.5 from +2
    assert stats.needs_more_seeds(band) == ["len"]
    gates = {"teacher": (Estimate(0.07, 0.0, 0.1, 0.01, 3), Gate("above", 0.05))}
    assert stats.needs_more_seeds({}, gates) == ["teacher"]
    band = {"band": (Estimate(-0.04, -0.1, 0.0, 0.01, 3), Gate("within", 0.05))}  # 0.01 from −0.05
    assert stats.needs_more_seeds({}, band) == ["band"]
