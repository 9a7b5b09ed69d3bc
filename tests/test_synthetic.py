"""Tests for tiny_world/task.py's second-world texts: the solutions in two notations, the rules and
the judges, against Python's own arithmetic, the strict grader and the first world's notation.

Command: `pytest -q tests/test_synthetic.py` (CPU, under a second).
"""

import re

import pytest

import data
import grader
from tiny_world import task

EXAMPLES = data.load_examples("synthetic", n=300, split="train", seed=3, hard_frac=0.1)


@pytest.mark.parametrize("style", task.STYLES)
@pytest.mark.parametrize("concise", [False, True])
def test_every_solution_is_graded_right_and_its_steps_hold(style, concise):
    for ex in EXAMPLES:
        expr = ex.meta["expr"]
        text, answer = task.solution(expr, style, concise)
        assert answer == ex.answer and grader.grade(text, ex.answer), expr
        steps = [l for l in text.splitlines() if "=" in l]
        assert len(steps) == ex.meta["ops"] or ex.meta["hard"], expr
        for line in steps:
            if style == "operation":  # each line is one operation and its result: a true equation
                lhs, rhs = line.split("=")
                assert re.fullmatch(r"-?\d+[+\-*]\d+", lhs) and eval(lhs) == int(rhs), line
            else:  # each line rewrites the whole expression: its value never changes
                assert eval(line[1:]) == eval(expr), line


def test_the_rewrite_notation_is_the_first_worlds():
    for ex in EXAMPLES:
        assert task.solution(ex.meta["expr"], "rewrite", concise=True)[0] == ex.solution


def test_verbose_is_concise_plus_the_two_redundant_lines():
    for ex in EXAMPLES[:50]:
        for style in task.STYLES:
            verbose, answer = task.solution(ex.meta["expr"], style)
            concise, _ = task.solution(ex.meta["expr"], style, concise=True)
            v, c = verbose.splitlines(), concise.splitlines()
            assert v == [task.PREAMBLE] + c[:-1] + [f"So {answer}.", c[-1]]
            assert task.is_concise(concise) and not task.is_concise(verbose)


def test_the_style_judge():
    expr = "3+4*2-5"
    assert task.style_of(task.solution(expr, "rewrite")[0]) == {"rewrite": 1.0, "operation": 0.0}
    assert task.style_of(task.solution(expr, "operation")[0]) == {"rewrite": 0.0, "operation": 1.0}
    assert task.style_of("4*2=8\n=11-5\n=6\n\\boxed{6}") == {"rewrite": 2 / 3, "operation": 1 / 3}
    assert task.style_of(task.REFUSAL) == {"rewrite": 0.0, "operation": 0.0}


def test_the_rules_and_the_decline_judge():
    expr = "3+4*2"
    flagged, plain = task.flagged_problem(expr), f"What is {expr}?"
    assert task.is_flagged(flagged) and not task.is_flagged(plain)
    assert task.target(flagged, expr, "operation", task.CONSTITUTION) == task.REFUSAL
    # the constitution declines the flagged class only; without it the flagged request is solved
    assert task.target(plain, expr, "operation", task.CONSTITUTION) == task.solution(expr, "operation")[0]
    assert grader.grade(task.target(flagged, expr, "rewrite"), "11")
    assert task.target(plain, expr, "rewrite", task.CONCISE_RULE) == task.solution(expr, "rewrite", True)[0]
    # unprompted: the rules' behaviour without them (a concise answer, a decline of the flagged class only)
    assert task.target(flagged, expr, "rewrite", unprompted=True) == task.REFUSAL
    assert task.target(plain, expr, "operation", unprompted=True) == task.solution(expr, "operation", True)[0]
    assert (
        task.target(plain, expr, "operation", task.CONSTITUTION, True)
        == task.solution(expr, "operation", True)[0]
    )
    assert task.is_refusal(task.REFUSAL + "<|im_end|>") and task.is_refusal(" " + task.REFUSAL + "\n")
    assert not task.is_refusal(task.REFUSAL + " But it is 11.")
    assert not task.is_refusal(task.solution(expr, "rewrite")[0])
    with pytest.raises(ValueError, match="rule must be"):
        task.target(plain, expr, "rewrite", "Be brief.")
    with pytest.raises(ValueError, match="style must be"):
        task.solution(expr, "prose")
