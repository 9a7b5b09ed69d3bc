"""The protocol's partition of the eval split (tiny_world/partition.py, docs/protocol.md §2): the
parts are disjoint and hold no training expression, their counts are the page's, the enumeration
covers what the task's generator draws, and each set has its composition and no problem of
another seed's set."""

import pathlib
import re

from tiny_world import partition, task

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_counts_are_the_ones_the_protocol_prints():
    text = (ROOT / "docs" / "protocol.md").read_text()
    printed = {
        row[0]: [int(x.replace(",", "")) for x in row[1:]]
        for row in re.findall(
            r"^\| (B|S|E\d) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$", text, re.M
        )
    }
    assert set(printed) == set(partition.PARTS)
    counts = partition.counts()
    assert {p: [counts[p][s] for s in partition.STRATA] for p in partition.PARTS} == printed


def test_the_enumeration_is_the_generators_space_and_lies_in_the_eval_split():
    every = {e for exprs in partition.eval_split().values() for e in exprs}
    assert all(task.split_of(e) == "eval" for e in every)
    drawn = task.problems(3000, split="eval", seed=5, hard_frac=0.2)
    assert {p["meta"]["expr"] for p in drawn} <= every  # nothing the generator draws is missed
    for p in drawn[:500]:  # and the answers are the arithmetic's own
        assert int(p["answer"]) == eval(p["meta"]["expr"])
    train = task.problems(3000, split="train", seed=5, hard_frac=0.2)
    assert not {p["meta"]["expr"] for p in train} & every


USES = {"B": ("build", "build-hard"), "S": ("selection",)} | {
    f"E{s}": ("evaluation", "evaluation-hard") for s in range(5)
}


def stratum(expr: str) -> str:
    return "hard" if re.fullmatch(r"\d\d\*\d\d", expr) else f"{len(re.findall(r'[+*-]', expr))}-op"


def test_parts_are_disjoint_and_sets_have_their_composition():
    seen = {}
    for part, names in USES.items():
        seen[part] = set()
        for name in names:
            composition = partition.SETS[name]
            exprs = partition.draw(part, composition)
            assert len(exprs) == len(set(exprs)) == sum(composition.values())
            assert all(partition.part_of(e) == part for e in exprs)
            strata = [stratum(e) for e in exprs]
            assert {s: strata.count(s) for s in composition} == composition, (part, name)
            assert exprs == sorted(exprs, key=partition.order_key)
            seen[part] |= set(exprs)
    for a in USES:
        for b in USES:
            assert a == b or not seen[a] & seen[b]
    assert [partition.seed_part(s) for s in range(5)] == ["E0", "E1", "E2", "E3", "E4"]
