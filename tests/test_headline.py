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
        (v(R, None, R, None), True, "partly"),  # reproduced where run, but no world on both builds
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


def test_p2_lines_come_from_each_reports_collapse_rows(tmp_path, monkeypatch):
    """P2 is read from the claims table of each report (docs/collapse.md's rows only), one line per
    row, placed after P1."""
    monkeypatch.chdir(tmp_path)
    head = "| claim | the paper | this code | rule | verdict |\n|---|---|---|---|---|\n"
    (tmp_path / "RESULTS.md").write_text(
        head + "| Mechanism 2: plain Top-20 collapses | p | c | r | **reproduced** |\n"
        "| Fix 2: something else | p | c | r | **partly** |\n"
        "| Top-K with a tail bucket (§3.6) Top-20 prevents the collapse | p | c | r | **reproduced** |\n"
    )
    (tmp_path / "RESULTS_tiny1.md").write_text(
        head + "| Mechanism 2: plain Top-20 collapses | p | c | r | **partly** |\n"
    )
    got = headline.collapse_verdicts([(1, "shipped"), (2, "shipped")])
    assert got == {
        "P2: Mechanism 2: plain Top-20 collapses": (
            "Mechanism 2: plain Top-20 collapses",
            True,
            {(2, "shipped"): "reproduced", (1, "shipped"): "partly"},
        ),
        "P2: Top-K with a tail bucket (§3.6) Top-20 prevents the collapse": (
            "Top-K with a tail bucket (§3.6) Top-20 prevents the collapse",
            True,
            {(2, "shipped"): "reproduced"},
        ),
    }
    text = headline.headline(got, [(1, "shipped"), (2, "shipped")])
    assert "| P2 | Mechanism 2: plain Top-20 collapses | partly | – | reproduced | – | **pending** |" in text
