"""Tests of diagnostics.py: the collapse diagnostics of a response (3-gram repetition, hedging
words, the batch monitors under the logs' names) and the confidence intervals, each checked by hand
(CPU, well under a second).

    .venv/bin/python -m pytest -q tests/test_diagnostics.py
"""

import math

import pytest
import torch

import diagnostics as D

# -----------------------------------------------------------------------------
# Collapse diagnostics


def test_repetition_ratio_by_hand():
    assert D.repetition_ratio([]) == 0.0
    assert D.repetition_ratio([1, 2, 3, 4, 5]) == 0.0
    # 1 2 3 1 2 3: the 3-grams ending at positions 5 (1,2,3) repeats -> 1 of 6 tokens
    assert D.repetition_ratio([1, 2, 3, 1, 2, 3]) == pytest.approx(1 / 6)
    # 7 7 7 7 7: grams end at 2, 3, 4; the last two repeat (7,7,7) -> 2 of 5
    assert D.repetition_ratio([7, 7, 7, 7, 7]) == pytest.approx(2 / 5)
    # a long loop: 298 grams, the first 3 new, the other 295 repeats
    assert D.repetition_ratio([1, 2, 3] * 100) == pytest.approx(295 / 300)
    assert D.repetition_ratio(torch.tensor([4, 5, 6, 4, 5, 6, 4])) == pytest.approx(2 / 7)


def test_hedging_rate_counts_the_words_per_thousand():
    assert D.hedging_rate("") == 0.0
    assert D.hedging_rate("Wait, maybe it is 5. But alternatively 6.") == pytest.approx(1000 * 4 / 8)
    assert D.hedging_rate("the answer is five") == 0.0
    assert D.hedging_rate("waiting maybes butter") == 0.0  # whole words only
    assert D.hedging_rate("wait " * 3 + "x " * 997) == pytest.approx(3.0)


def test_response_stats_names_and_values():
    s = D.response_stats([[1, 2, 3], [1, 1, 1, 1]], ["wait", "ok"], [False, True])
    assert s["len/mean"] == 3.5 and s["len/max"] == 4
    assert s["len/truncated_frac"] == 0.5
    assert s["rep/ratio"] == pytest.approx((0 + 1 / 4) / 2)
    assert s["hedge/per_1k_words"] == pytest.approx(500.0)


def test_collapse_signature_reads_the_last_steps_only():
    early = [{"topk/student_mass": 0.2, "len/truncated_frac": 0.9}] * 5
    late = [{"topk/student_mass": m, "len/truncated_frac": t} for m, t in [(0.97, 0.0), (0.95, 0.1)] * 5]
    sig = D.collapse_signature(early + late)
    assert sig == {"mass": pytest.approx(0.96), "truncated": pytest.approx(0.05), "collapsed": False}
    # mass 0.8 in the last ten steps; or responses that stop ending (20 % truncated)
    assert D.collapse_signature(late + [{"topk/student_mass": 0.8, "len/truncated_frac": 0.0}] * 10)[
        "collapsed"
    ]
    assert D.collapse_signature([{"topk/student_mass": 0.99, "len/truncated_frac": 0.2}] * 10)["collapsed"]
    assert D.collapse_signature(early, last=3)["mass"] == pytest.approx(0.2)


def test_confidence_intervals():
    lo, hi = D.wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = D.wilson_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = D.mean_ci([0.0, 1.0, 0.5, 0.5])
    half = 1.96 * math.sqrt(1 / 6) / 2
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


def test_alarm_rules_ring_by_their_own_definitions():
    rec = lambda mass, trunc=0.0: {"topk/student_mass": mass, "len/truncated_frac": trunc}  # noqa: E731
    calm = [rec(0.999)] * 20
    assert not D.alarm_rings(calm[:4], {"deficit": -1.0})  # fewer steps than the window: silent
    assert D.alarm_rings(calm[:5], {"deficit": -1.0})
    # deficit: the 5-step mean of 1 - mass; four steps at 0.97 and one at 0.999 -> (4 * 0.03 + 0.001) / 5
    steps = calm + [rec(0.97)] * 4
    assert not D.alarm_rings(steps, {"deficit": 0.025})  # the window holds one calm step: 0.0242
    assert D.alarm_rings(steps + [rec(0.97)], {"deficit": 0.025})
    # relative: against the median deficit of the first 20 steps (here 0.001): 10x is 0.01
    assert D.alarm_rings(calm + [rec(0.985)] * 5, {"relative": 10})
    assert not D.alarm_rings(calm + [rec(0.995)] * 5, {"relative": 10})
    assert not D.alarm_rings([rec(0.5)] * 19, {"relative": 10})  # no baseline before 20 steps
    # truncated: the 5-step mean truncated share
    assert D.alarm_rings(calm + [rec(0.999, 0.06)] * 5, {"truncated": 0.05})
    assert not D.alarm_rings(calm + [rec(0.999, 0.06)] * 5, {"deficit": 0.5})
    # either condition of a pair; first_alarm names the record's step
    numbered = [{"step": i + 1, **r} for i, r in enumerate(calm + [rec(0.9)] * 10)]
    assert D.first_alarm(numbered, {"deficit": 0.05, "truncated": 0.5}) == 23  # (3 * 0.1 + 2 * 0.001) / 5
    assert D.first_alarm(numbered[:20], {"deficit": 0.05}) is None
