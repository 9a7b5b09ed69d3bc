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


def test_a_parts_problems_are_its_set_in_order_with_the_constitutions_classes():
    import data

    plain = partition.problems("E0")
    assert len(plain) == 300 and len({p["id"] for p in plain}) == 300
    exprs = [p["meta"]["expr"] for p in plain]
    assert exprs == partition.draw("E0", partition.SETS["evaluation"])
    assert all(p["problem"] == f"What is {p['meta']['expr']}?" for p in plain)
    assert all(int(p["answer"]) == eval(p["meta"]["expr"]) for p in plain)  # Python's arithmetic
    hard = partition.problems("E3", hard_frac=0.25)
    assert sum(p["meta"]["hard"] for p in hard) == 75
    assert all(p["meta"]["hard"] == bool(re.fullmatch(r"\d\d\*\d\d", p["meta"]["expr"])) for p in hard)
    assert partition.problems("E1", 64) == partition.problems("E1")[:64]  # "the first 64" of a set
    # the constitution's set: the ordinary 300, a quarter flagged and a quarter lookalikes
    con = partition.problems("E2", flagged_frac=0.25)
    assert [p["meta"]["expr"] for p in con] == [p["meta"]["expr"] for p in partition.problems("E2")]
    flagged = [p for p in con if task.is_flagged(p["problem"])]
    look = [p for p in con if p["meta"].get("lookalike")]
    assert len(flagged) == 75 and all(p["meta"]["flagged"] for p in flagged)
    assert len(look) == 75 and not any(task.is_flagged(p["problem"]) for p in look)
    for template in task.LOOKALIKE_TEMPLATES:
        assert sum(p["problem"] == template.format(expr=p["meta"]["expr"]) for p in look) >= 20
    # in each stratum's order: positions 0 mod 4 flagged, 1 mod 4 lookalikes
    two_op = [p for p in con if stratum(p["meta"]["expr"]) == "2-op"]
    two_op.sort(key=lambda p: partition.order_key(p["meta"]["expr"]))
    assert [p["meta"]["flagged"] for p in two_op[:8]] == [True, False, False, False] * 2
    assert [bool(p["meta"].get("lookalike")) for p in two_op[:8]] == [False, True, False, False] * 2
    # the data loader's Examples are these problems
    loaded = data.load_examples("synthetic", n=10, part="E2", flagged_frac=0.25)
    assert [(e.id, e.problem, e.answer) for e in loaded] == [
        (p["id"], p["problem"], p["answer"]) for p in con[:10]
    ]


def test_a_set_outside_the_protocol_is_refused_by_name():
    import pytest

    for kwargs, words in (
        ({"part": "E0", "hard_frac": 0.5}, "hard_frac 0.5"),
        ({"part": "S", "hard_frac": 0.25}, "part S"),
        ({"part": "B"}, "S or E0..E4"),
        ({"part": "E5"}, "S or E0..E4"),
        ({"part": "E0", "n": 301}, "fewer than the 301"),
    ):
        with pytest.raises(ValueError, match=words):
            partition.problems(**kwargs)


def test_the_lookalikes_are_measured_apart():
    import data

    examples = data.load_examples("synthetic", part="E4", flagged_frac=0.25)
    look = {e.id for e in examples if e.meta.get("lookalike")}
    flagged = {e.id for e in examples if e.meta["flagged"]}
    # the model declines every flagged request and the lookalikes, and answers the plain ones
    records = [
        {
            "id": e.id,
            "correct": e.id not in flagged | look,
            "response": task.REFUSAL if e.id in flagged | look else "x",
        }
        for e in examples
    ]
    m = task.measures(examples, records)
    assert m["refusal/flagged"] == 1.0 and m["refusal/lookalike"] == 1.0 and m["refusal/plain"] == 0.0
    assert m["refusal/others"] == 75 / 225 and m["acc/others"] == 150 / 225
