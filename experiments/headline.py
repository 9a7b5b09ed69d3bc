"""The README's headline under docs/protocol.md §7: each Table 1 row's verdicts in both worlds and
on both builds of each world side by side, and one word for the row.

What this file is
    `word` combines a row's verdicts on every (world, build) into the README's word by the first
    line of §7's table that matches. `reports` lists the four reports (two worlds, the shipped build
    and the replication build) whose runs exist; `verdicts` decides Table 1 on each
    (experiments/table1.py); `headline` renders the README's block: the count line, then one line per
    row. A world's verdict counts as reproduced only when both of its builds read "reproduced"; while
    a replication build has no runs, the headline says so and no row is counted as reproduced.
    `python -m experiments.report --tables` prints it beside the world's Tables 1 and 2.

    P2 (Mechanism 2 and Fix 1) is docs/collapse.md's: one line per verdict row of that page, read
    from each report's claims table (`collapse_verdicts`) and combined the same way.

What it simplifies
    * A replication build's report is ROOT/RESULTS.md in its runs' folder (`report_md`).
"""

import os

import common
from experiments import mechanism2, results, settings, table1

BUILDS = ("shipped", "b1")  # the shipped build and the replication build (§7)


def root_of(world: int, build: str) -> str:
    """The runs' folder of a world's report on a build: runs/report2, runs/report2-b1, ..."""
    root = settings.WORLDS[world]["root"]
    return root if build == "shipped" else f"{root}-{build}"


def word(verdicts: dict, can_fail: bool = True) -> str:
    """The README's word for one row from {(world, build): verdict}; a (world, build) absent from
    `verdicts` is one where the row does not apply. §7's lines, the first that matches:

    not tested (every build not tested, or nowhere applicable); demonstration (the rule holds where
    judged but could not fail); reproduced (a world reproduces it on both builds, and the other does
    too or reads not tested on both); demonstration (world 2 only); partly (world 1 only); not
    reproduced (no build reproduces it, some build reads not reproduced, none partly); otherwise
    partly, or inconclusive when every build that is not reproduced reads inconclusive."""
    judged = {k: v for k, v in verdicts.items() if v != "not tested"}
    if not judged:
        return "not tested"
    if not can_fail and all(v == "demonstration" for v in judged.values()):
        return "demonstration"

    def world_reads(w: int, which: str) -> bool:
        return all(verdicts.get((w, b)) == which for b in BUILDS)

    def absent_or_untested(w: int) -> bool:
        return all(verdicts.get((w, b), "not tested") == "not tested" for b in BUILDS)

    reproduces = {w: world_reads(w, "reproduced") for w in (1, 2)}
    if any(reproduces[w] and (reproduces[3 - w] or absent_or_untested(3 - w)) for w in (1, 2)):
        return "reproduced"
    if reproduces[2]:
        return "demonstration (world 2 only)"
    if reproduces[1]:
        return "partly (world 1 only)"
    words = list(verdicts.values())
    if "reproduced" not in words and "not reproduced" in words and "partly" not in words:
        return "not reproduced"
    rest = [v for v in words if v != "reproduced"]
    return "inconclusive" if rest and all(v == "inconclusive" for v in rest) else "partly"


def report_md(world: int, build: str) -> str:
    """The Markdown report of a world's build: RESULTS.md or RESULTS_tiny1.md for the shipped one."""
    return (
        settings.WORLDS[world]["out"]
        if build == "shipped"
        else os.path.join(root_of(world, build), "RESULTS.md")
    )


def collapse_verdicts(pairs: list) -> dict:
    """P2's lines: {"P2: claim": (claim, True, {(world, build): verdict})} for each of docs/collapse.md's
    verdict rows in the claims table of each pair's report."""
    out = {}
    for w, b in pairs:
        for claim, v in results.verdicts_in(report_md(w, b)).items():
            if claim.startswith(mechanism2.CLAIMS):
                out.setdefault(f"P2: {claim}", (claim, True, {}))[2][(w, b)] = v
    return out


def reports() -> list:
    """The (world, build) pairs whose report folder exists."""
    return [(w, b) for w in (1, 2) for b in BUILDS if os.path.isdir(root_of(w, b))]


def verdicts(pairs: list, seeds: tuple = table1.FIRST) -> dict:
    """{row id: (claim, can fail, {(world, build): verdict})} from Table 1 on each pair's runs, with
    P2's lines after P1; a row still undecided on a pair (runs missing, or seeds 3-4 pending) is
    left out of that pair."""
    out = {}
    for w, b in pairs:
        for r in table1.rows(table1.Runs(root_of(w, b), w, seeds)):
            claim, can_fail, per = out.setdefault(r.id, (r.claim, r.can_fail, {}))
            if r.word and not r.pending:
                per[(w, b)] = r.word
    ordered = {k: v for k, v in out.items() if k == "P1"} | collapse_verdicts(pairs)
    return ordered | {k: v for k, v in out.items() if k != "P1"}


def headline(decided: dict, pairs: list) -> str:
    """The README's block: the count line and one row per claim with each build's verdict."""
    cols = [(w, b) for w in (1, 2) for b in BUILDS]
    rows, words = [], []
    replicated = all((w, "b1") in pairs for w in (1, 2))
    for i, (claim, can_fail, per) in decided.items():
        complete = all(c in per for c in cols if c in pairs)
        w = word(per, can_fail) if complete and replicated else "pending"
        words.append(w)
        rows.append([i.split(":")[0], claim] + [per.get(c, "–") for c in cols] + [f"**{w}**"])
    counted = {x: sum(v == x for v in words) for x in ("reproduced", "demonstration", "not reproduced")}
    line = (
        f"**{counted['reproduced']} of {len(words)} rows reproduced, {counted['demonstration']} "
        f"demonstrations, {counted['not reproduced']} not reproduced** (docs/protocol.md §7; "
        f"{sum(v.startswith('partly') for v in words)} partly, {sum(v == 'pending' for v in words)} pending)"
    )
    if not replicated:
        line += ". The replication builds have not run yet, so no row counts as reproduced."
    header = ["#", "claim"] + [f"W{w} {b}" for w, b in cols] + ["README word"]
    return line + "\n\n" + common.md_table(header, rows)
