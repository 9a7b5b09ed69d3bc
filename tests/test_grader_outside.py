"""grader.py against tests/grader_suite_outside.jsonl: hand-labelled answer pairs whose gold answers
come from outside MATH-500 (AIME integers, OCW-style answers, other MATH problems) and whose forms
come from other graders' test cases (math-verify, Hendrycks MATH, PRM800K, Qwen2.5-Math, DeepSeek)
and from the classes a hostile probe found (lists of three-digit items, times of day, unbraced
macro arguments, the unknown on the right, unit phrases, values beyond float precision). The
pairs are our own, and none of them is in tests/grader_suite.jsonl either way round.

    .venv/bin/python -m pytest -q tests/test_grader_outside.py
    .venv/bin/python bench/grader_agreement.py --suite tests/grader_suite_outside.jsonl
"""

import collections
import json
import pathlib

from test_grader_suite import assert_well_formed

import grader

SUITE_PATH = pathlib.Path(__file__).with_name("grader_suite_outside.jsonl")
MATH500_SUITE_PATH = pathlib.Path(__file__).with_name("grader_suite.jsonl")
MIN_AGREEMENT = 0.99  # measured: 499/499; a few slips are a regression to look at, not noise
MIN_PER_CLASS = 10


def load(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


SUITE = load(SUITE_PATH)


def test_suite_is_large_balanced_and_well_formed():
    assert len(SUITE) >= 300, len(SUITE)
    n_true = sum(row["equal"] for row in SUITE)
    assert 0.4 * len(SUITE) <= n_true <= 0.6 * len(SUITE), f"{n_true} of {len(SUITE)} pairs are equal"
    assert_well_formed(SUITE)
    pairs = [(row["gold"], row["pred"]) for row in SUITE]
    math500 = {
        pair
        for row in load(MATH500_SUITE_PATH)
        for pair in [(row["gold"], row["pred"]), (row["pred"], row["gold"])]
    }
    shared = set(pairs) & math500
    assert not shared, f"pairs also in the MATH-500 suite (either way round): {sorted(shared)[:5]}"


def test_every_class_has_equal_and_unequal_pairs():
    by_class = collections.defaultdict(list)
    for row in SUITE:
        by_class[row["source"]].append(row["equal"])
    for source, labels in by_class.items():
        assert len(labels) >= MIN_PER_CLASS and any(labels) and not all(labels), (source, len(labels))


def _wrong_by_class(flip: bool = False) -> dict:
    wrong = collections.defaultdict(list)
    for row in SUITE:
        pred, gold = (row["gold"], row["pred"]) if flip else (row["pred"], row["gold"])
        got = grader.is_equiv(pred, gold)
        if got is not row["equal"]:
            wrong[row["source"]].append(f"gold={row['gold']!r} pred={row['pred']!r}: label {row['equal']}")
    return wrong


def _report(wrong: dict) -> str:
    return "\n".join(
        f"  {source} ({len(rows)}):\n" + "\n".join(f"    {r}" for r in rows) for source, rows in wrong.items()
    )


def test_is_equiv_agrees_with_the_labels():
    wrong = _wrong_by_class()
    agreement = 1 - sum(map(len, wrong.values())) / len(SUITE)
    assert agreement >= MIN_AGREEMENT, (
        f"agreement {agreement:.2%} < {MIN_AGREEMENT:.0%} on {len(SUITE)} pairs; wrong, by class:\n"
        + _report(wrong)
    )


def test_is_equiv_is_symmetric_on_the_suite():
    # the labels hold with the roles of gold and prediction swapped
    wrong = _wrong_by_class(flip=True)
    agreement = 1 - sum(map(len, wrong.values())) / len(SUITE)
    assert agreement >= MIN_AGREEMENT, _report(wrong)
