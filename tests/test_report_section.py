"""Tests of one section of a report rewritten alone (experiments/results.write_section, `python -m
experiments.report --section`) and of the seeds' interval that section prints: on fabricated runs
whose verdicts are known by construction, only the section's text and its claims' rows change, the
counts and the other world's line agree with the table, and a second rewrite changes nothing."""

import os

import numpy as np
import pytest
from test_report import fabricate, fabricate_collapse

import errors
from experiments import mechanism2, report, results, settings

META = {"command": "test", "run_command": "test", "runs": 0, "hardware": "none", "jobs": 1, "wall": "0 min"}
AFTER = {
    "raw-big-plain": [0.1, 0.2],
    "raw-big-tail": [0.5, 0.52],
    "sft-big-tail": [0.6, 0.6],
    "raw-grpo-tail": [0.45, 0.44],
    "sft-grpo-tail": [0.55, 0.56],
    "raw-mid-tail": [0.40, 0.46],
}


def two_worlds(tmp_path, scale):
    """Both worlds' reports from fabricated runs in which every fix holds; README.md with the headline
    markers. Returns (world 2's root, RESULTS.md, README.md)."""
    fabricate(str(tmp_path / "r1"), scale, AFTER)
    results.write_results(
        str(tmp_path / "r1"), scale, str(tmp_path / "RESULTS_tiny1.md"), str(tmp_path / "f1"), META
    )
    fabricate(str(tmp_path / "r2"), scale, AFTER, world=2)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{results.HEADLINE[0]}\n{results.HEADLINE[1]}\n\nafter\n")
    out = tmp_path / "RESULTS.md"
    results.write_results(str(tmp_path / "r2"), scale, str(out), str(tmp_path / "f2"), META, str(readme), 2)
    return str(tmp_path / "r2"), out, readme


def table(text: str) -> list:
    """The rows of a report's claims table."""
    lines = text.splitlines()
    top = next(i for i, l in enumerate(lines) if l.startswith("| claim |")) + 2
    return lines[top : next(i for i in range(top, len(lines)) if not lines[i].startswith("|"))]


def sections(text: str) -> dict:
    """{heading: its lines} of a report's '## ' sections."""
    out, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = line.split(":")[0]
            out[current] = []
        elif current:
            out[current].append(line)
    return out


def test_a_section_rewritten_alone_changes_its_text_and_rows_only(tmp_path):
    scale = dict(settings.SCALES["quick"], seeds=(0, 1))
    root, out, readme = two_worlds(tmp_path, scale)
    before = out.read_text()
    row = lambda text, claim: next(l for l in text.splitlines() if l.startswith(f"| {claim} |"))
    sg = "Fix 1: stop-gradient Top-20 prevents the collapse"
    assert row(before, sg).endswith("| **reproduced** | reproduced |")
    for s in scale["seeds"]:  # now every fix collapses with plain
        fabricate_collapse(root, scale, s, fixes_hold=False)
    note = "and its claims: from the fabricated runs."
    args = (root, scale, str(out), str(tmp_path / "f2"), mechanism2.mechanism2, mechanism2.CLAIMS, note)
    verdicts = results.write_section(*args, str(readme), 2)
    after = out.read_text()
    assert row(after, sg).endswith("| **not reproduced** | reproduced |")  # the first world's stays beside
    # every other claim's row, and every other section, byte for byte
    others = [l for l in table(before) if not l[2:].startswith(mechanism2.CLAIMS)]
    assert len(others) >= 10 and all(l in table(after) for l in others)
    old, new = sections(before), sections(after)
    assert old.keys() == new.keys()
    changed = [h for h in old if old[h] != new[h]]
    assert changed == ["## Mechanism 2 and Fix 1"]
    # the table's order: the section's rows where its first row stood
    claims_in = [l.split(" | ")[0][2:] for l in table(after)]
    assert claims_in == [c for c, _ in verdicts]
    assert claims_in.index(sg) < claims_in.index(next(c for c in claims_in if c.startswith("OPSD")))
    # the counts line and the other world's line count the table
    n = {v: sum(x == v for _, x in verdicts) for v in ("reproduced", "partly", "not reproduced")}
    assert (
        f"**{n['reproduced']} claims reproduced, {n['partly']} partly, {n['not reproduced']} not reproduced"
        in after
    )
    gained = [
        c
        for c in claims_in
        if row(after, c).endswith("| reproduced |") and "| **reproduced** |" not in row(after, c)
    ]
    assert (
        f"{len(gained)} claim(s) that this world does not reproduce are reproduced there: {'; '.join(gained)}."
        in after
    )
    assert after.count("The section “Mechanism 2 and Fix 1” and its claims: from the fabricated runs.") == 1
    # the README's headline: the same verdicts, the text around it kept
    head = readme.read_text()
    assert f"| {sg} | **not reproduced** |" in head and head.startswith("# x\n") and head.endswith("after\n")
    assert f"**{n['reproduced']} of {len(verdicts)} claims reproduced" in head
    assert f"; {len(gained)} of the others are reproduced in the tiny world):" in head
    assert "| claim of the paper | in tiny world 2 |" in head
    # a second rewrite from the same runs changes nothing
    results.write_section(*args, str(readme), 2)
    assert out.read_text() == after


def test_section_refuses_unfinished_runs_and_other_flags(tmp_path, capsys):
    scale = dict(settings.SCALES["quick"], seeds=(0,))
    root = tmp_path / "runs"
    fabricate_collapse(str(root), scale, 0)
    os.remove(root / "collapse/topk_tail-k1-s0/summary.json")
    argv = [
        "--world",
        "2",
        "--quick",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "R.md"),
        "--section",
        "mechanism2",
    ]
    with pytest.raises(
        errors.UserError, match="1 of its .* runs are not finished .*collapse/topk_tail-k1-s0"
    ):
        report.main(argv)
    with pytest.raises(errors.UserError, match="--section runs nothing"):
        report.main(argv + ["--only", "collapse/"])


def test_seed_interval_covers_the_mean_95_percent_of_the_time():
    """Student's t table against a Monte-Carlo count: normal samples of 2 to 10 seeds."""
    rng = np.random.default_rng(0)
    m, (lo, hi) = mechanism2.seed_interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t(2) = 4.303
    assert (
        m == 2.0 and lo == pytest.approx(2.0 - 4.303 / 3**0.5) and hi == pytest.approx(2.0 + 4.303 / 3**0.5)
    )
    assert mechanism2.seed_interval([0.4]) == (0.4, (0.4, 0.4))
    for n in range(2, 11):
        x = rng.normal(size=(20_000, n))
        half = mechanism2.T_975[n - 1] * x.std(axis=1, ddof=1) / np.sqrt(n)
        covered = np.mean(np.abs(x.mean(axis=1)) <= half)
        assert abs(covered - 0.95) < 0.007, (n, covered)
