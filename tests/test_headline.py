"""The README's word for a Table 1 row (experiments/headline.py) against each line of
docs/protocol.md §7's table, and the headline block while the replication builds are missing."""

import pytest

from experiments import headline

R, N, P, I, T, D = "reproduced", "not reproduced", "partly", "inconclusive", "not tested", "demonstration"


def v(w1s=None, w1b=None, w2s=None, w2b=None) -> dict:
    """{(world, build): verdict}, leaving out the pairs where the row does not apply (None)."""
    cells = {(1, "shipped"): w1s, (1, "b1"): w1b, (2, "shipped"): w2s, (2, "b1"): w2b}
    return {k: x for k, x in cells.items() if x is not None}


@pytest.mark.parametrize(
    "verdicts, can_fail, expected",
    [
        (v(T, T, T, T), True, "not tested"),
        (v(), True, "not tested"),  # applies nowhere
        (v(D, D, D, D), False, "demonstration"),
        (v(R, R, R, R), True, "reproduced"),
        (v(T, T, R, R), True, "reproduced"),  # the other world cannot test it
        (v(None, None, R, R), True, "reproduced"),  # a world 2 row (P6)
        (v(N, R, R, R), True, "demonstration (world 2 only)"),
        (v(R, R, P, R), True, "partly (world 1 only)"),
        (v(N, N, N, T), True, "not reproduced"),
        (v(R, N, N, N), True, "partly"),  # one build reproduces, no world does
        (v(N, P, N, N), True, "partly"),
        (v(I, I, R, I), True, "inconclusive"),
        (v(I, T, I, I), True, "partly"),  # a build not tested is not inconclusive
    ],
)
def test_each_line_of_the_table(verdicts, can_fail, expected):
    assert headline.word(verdicts, can_fail) == expected


def test_without_the_replication_builds_no_row_counts():
    decided = {"P1": ("Mechanism 1", True, v(w1s=R, w2s=R)), "P9": ("Fix 2's fit", False, v(w1s=D, w2s=D))}
    text = headline.headline(decided, [(1, "shipped"), (2, "shipped")])
    assert text.startswith("**0 of 2 rows reproduced, 0 demonstrations, 0 not reproduced**")
    assert "2 pending" in text and "have not run yet" in text
    assert "| P1 | Mechanism 1 | reproduced | – | reproduced | – | **pending** |" in text
    every = [(w, b) for w in (1, 2) for b in headline.BUILDS]
    decided["P1"] = ("Mechanism 1", True, v(R, R, R, R))
    decided["P9"] = ("Fix 2's fit", False, v(D, D, D, D))
    text = headline.headline(decided, every)
    assert text.startswith("**1 of 2 rows reproduced, 1 demonstrations, 0 not reproduced**")
    assert "**demonstration** |" in text and "have not run yet" not in text
