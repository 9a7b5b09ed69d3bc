"""RESULTS.md and the README's headline, written from the report's finished runs.

What this file is
    `write_results` reads the runs of one world's plan (experiments/report.py) through the
    sections of experiments/mechanisms.py and experiments/fixes.py, in the paper's order, and writes
    the Markdown report: the headline table of claims (each with the paper's words, what the runs
    show, the verdict rule and the verdict), then one section per experiment with its tables and
    plots. A world with `beside` (settings.WORLDS) adds the other world's verdicts, read from its
    report (`verdicts_in`). `write_headline` puts the verdict counts and the claims table between
    the HEADLINE markers of README.md, so that the README's results are generated, never copied.

Paper (docs/paper.md)
    The claims of §3.9, §4 and §5, each section of RESULTS.md citing its own.

What it simplifies
    * The other world's verdicts are read back from its Markdown table, not recomputed from its
      runs: write the first world's report (`make report WORLD=1`) before the second's.
"""

import os

import common
from errors import UserError
from experiments import claims, fixes, mechanism2, mechanisms, settings, table1, table2

# the lines around README.md's results block
HEADLINE = (
    "<!-- headline: written by make report (experiments/report.py) from RESULTS.md's runs -->",
    "<!-- /headline -->",
)
# RESULTS.md's sections, in the paper's order
SECTIONS = (
    mechanisms.mechanism1,
    mechanism2.mechanism2,
    mechanisms.mechanism3,
    fixes.fix2,
    fixes.fix3_and_recipe,
)

# the sections that `write_section` can rewrite alone: name -> (section, the first words of its claims,
# the plan's prefix of its runs)
REWRITABLE = {"mechanism2": (mechanism2.mechanism2, mechanism2.CLAIMS, "collapse/")}


def write_between(path: str, markers: tuple, body: str) -> None:
    """Replace the text between the two `markers` lines of `path` by `body` (the markers stay): the
    README's generated blocks are written by the commands that measure them, never copied."""
    with open(path) as f:
        text = f.read()
    start, end = text.find(markers[0]), text.find(markers[1])
    if start < 0 or end < start:
        raise UserError(f"{path} has no block to write: add the lines {markers[0]} and {markers[1]}")
    with open(path, "w") as f:
        f.write(text[:start] + markers[0] + "\n" + body + text[end:])


def write_headline(readme: str, headline: str, rows: list, world: str = "the tiny world") -> None:
    """Replace the block between the HEADLINE markers of `readme` with the verdict counts and one
    row per claim (`rows`: (claim, verdict) pairs) in `world` (its name)."""
    table = common.md_table(["claim of the paper", f"in {world}"], [[c, f"**{v}**"] for c, v in rows])
    write_between(readme, HEADLINE, f"{headline}\n\n{table}\n")


def verdicts_in(md: str) -> dict:
    """{claim: verdict} from the claims table of a report written by `write_results` (the fifth
    cell of its rows, in bold); {} when the file does not exist."""
    if not os.path.exists(md):
        return {}
    out = {}
    for line in open(md):
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        bold = len(cells) >= 5 and cells[4].startswith("**") and cells[4].endswith("**")
        if line.startswith("| ") and bold:
            out.setdefault(cells[0], cells[4].strip("*"))
    return out


def beside(R: claims.Report, out_md: str) -> tuple:
    """The verdicts of the world named by `beside` (read from its report next to `out_md`): the
    extra header cell, {claim: verdict}, the claims reproduced there and not here, the lines that
    say so. All empty when there is no such world or report."""
    other = R.W.get("beside")
    if not other:
        return [], {}, [], []
    W, other_md = settings.WORLDS[other], settings.WORLDS[other]["out"]
    other_v = verdicts_in(os.path.join(os.path.dirname(os.path.abspath(out_md)), other_md))
    if not other_v:
        return [], {}, [], []
    gained = [c[0] for c in R.claims if c[4] != "reproduced" and other_v.get(c[0]) == "reproduced"]
    lines = [
        f"The last column is each claim's verdict in {W['name']} ({other_md}, `make report "
        f"WORLD={other}`). {len(gained)} claim(s) that this world does not reproduce are reproduced "
        f"there: {'; '.join(gained) if gained else 'none'}.",
        "",
    ]
    return [f"{W['name']} ([{other_md}]({other_md}))"], other_v, gained, lines


def count_verdicts(verdicts: list) -> tuple:
    """({verdict: count} over the four verdict words, the ", N not tested" tail or "")."""
    counts = {
        v: sum(x == v for x in verdicts) for v in ("reproduced", "partly", "not reproduced", "not tested")
    }
    return counts, (f", {n} not tested" if (n := counts["not tested"]) else "")


def counts_line(verdicts: list) -> str:
    counts, not_tested = count_verdicts(verdicts)
    return (
        f"**{counts['reproduced']} claims reproduced, {counts['partly']} partly, "
        f"{counts['not reproduced']} not reproduced{not_tested}** (verdicts follow the rule in each "
        "row, computed from the numbers)."
    )


def claim_rows(claims_: list, other_v: dict) -> list:
    """The headline table's rows: the claim's four cells, its verdict in bold and, with another
    world's verdicts, that world's."""
    return [[*c[:4], f"**{c[4]}**"] + ([other_v.get(c[0], "–")] if other_v else []) for c in claims_]


def write_section(
    root: str,
    scale: dict,
    out_md: str,
    figs: str,
    section,
    prefixes: tuple,
    note: str,
    readme: str = None,
    world: int = 1,
) -> list:
    """Rewrite one section of a report that `write_results` wrote, from the runs of that section
    alone, and leave the rest as it is: the section's text (from its "## " heading to the next),
    its claims' rows in the headline table (the rows whose claim starts with one of `prefixes`,
    replaced where the first of them stood), the verdict counts, the other world's line, and
    `note` under the header, which says where the section's runs are (a previous note of the
    same section is replaced); with `readme`, also its headline (write_headline). Returns the
    report's claims, (claim, verdict) in order."""
    if not os.path.exists(out_md):
        raise UserError(f"{out_md} does not exist: write the whole report first (make report)")
    os.makedirs(figs, exist_ok=True)
    figs_rel = os.path.relpath(figs, os.path.dirname(os.path.abspath(out_md)))
    R = claims.Report(root, scale, figs_rel, figs, world)
    section(R)
    heading = R.body[0].split(":")[0] + ":"
    lines = open(out_md).read().split("\n")
    replace_text(lines, heading, R.body, out_md)
    _, other_v, _, _ = beside(R, out_md)
    verdicts = replace_rows(lines, prefixes, claim_rows(R.claims, other_v))
    lines[next(i for i, l in enumerate(lines) if l.startswith("**") and "claims reproduced" in l)] = (
        counts_line([v for _, v in verdicts])
    )
    gained = [c for c, v in verdicts if v != "reproduced" and other_v.get(c) == "reproduced"]
    if other_v:
        i = next(i for i, l in enumerate(lines) if l.startswith("The last column is each claim's verdict in"))
        lines[i] = lines[i].split(" claim(s) that this world")[0].rsplit(" ", 1)[0] + (
            f" {len(gained)} claim(s) that this world does not reproduce are reproduced "
            f"there: {'; '.join(gained) if gained else 'none'}."
        )
    place_note(lines, f"The section “{heading[3:-1]}”", note)
    with open(out_md, "w") as f:
        f.write("\n".join(lines))
    if readme:
        counts, not_tested = count_verdicts([v for _, v in verdicts])
        others = f"; {len(gained)} of the others are reproduced in {settings.WORLDS[R.W['beside']]['name']}"
        headline = (
            f"**{counts['reproduced']} of {len(verdicts)} claims reproduced, {counts['partly']} partly, "
            f"{counts['not reproduced']} not**{not_tested} ({R.N} seeds; "
            f"[{os.path.basename(out_md)}]({os.path.relpath(out_md, os.path.dirname(os.path.abspath(readme)))}) "
            f"names the runs behind each section and the rule behind each verdict{others if gained else ''}):"
        )
        write_headline(readme, headline, verdicts, R.W["name"])
    return verdicts


def replace_text(lines: list, heading: str, body: list, out_md: str) -> None:
    """The lines from the one that starts with `heading` to the next "## " heading become `body`."""
    top = next((i for i, l in enumerate(lines) if l.startswith(heading)), None)
    if top is None:
        raise UserError(
            f"{out_md} has no section starting {heading!r}: rewrite the whole report (make report)"
        )
    end = next((i for i in range(top + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    lines[top:end] = body


def replace_rows(lines: list, prefixes: tuple, new: list) -> list:
    """The claims table's rows whose claim starts with one of `prefixes` replaced by `new` (cells),
    where the first of them stood. Returns every row's (claim, verdict)."""
    table = next(i for i, l in enumerate(lines) if l.startswith("| claim |"))
    last = next(i for i in range(table, len(lines)) if not lines[i].startswith("|"))
    rows = lines[table + 2 : last]
    old = [i for i, l in enumerate(rows) if l[2:].startswith(prefixes)]
    at = old[0] if old else len(rows)  # every row before it is kept
    rows = [l for i, l in enumerate(rows) if i not in old]
    rows[at:at] = ["| " + " | ".join(str(c) for c in row) + " |" for row in new]
    lines[table + 2 : last] = rows
    cells = ([x.strip() for x in l.strip().strip("|").split(" | ")] for l in rows)
    return [(c[0], c[4].strip("*")) for c in cells]


def place_note(lines: list, mark: str, note: str) -> None:
    """`mark` and `note` as a paragraph under the report's "Written by" one, in place of an earlier
    paragraph that starts with `mark`."""
    previous = next((i for i, l in enumerate(lines) if l.startswith(mark)), None)
    if previous is not None:
        del lines[previous - 1 : previous + 1]  # the note and the blank line before it
    written = next(i for i, l in enumerate(lines) if l.startswith("Written by"))
    lines[written + 1 : written + 1] = ["", f"{mark} {note}"]


def protocol_tables(root: str, world: int, seeds: tuple) -> list:
    """docs/protocol.md's Tables 1 and 2 from the runs in `root` (experiments/table1.py, table2.py),
    as two sections."""
    runs = table1.Runs(root, world, seeds)
    return [
        "## Table 1: the paper's claims under docs/protocol.md",
        "",
        "Each row's rule, gates and thresholds are docs/protocol.md's §4; each part's estimate is the "
        "mean over seeds of a paired per-problem difference (or share), with its 95 % two-level "
        "bootstrap interval (§3). The last column applies §3's seed rule.",
        "",
        table1.table(runs),
        "",
        "## Table 2: our controls and readings (docs/protocol.md §5; not counted in the headline)",
        "",
        table2.table(runs),
        "",
    ]


def write_results(
    root: str, scale: dict, out_md: str, figs: str, meta: dict, readme: str = None, world: int = 1
) -> str:
    """RESULTS.md from the runs in `root` of `world`'s plan; with `readme`, also its results headline
    (write_headline). A world with `beside` adds that world's verdict of each claim, read from its
    report, as a last column (the claims that world shows and this one does not are named there)."""
    os.makedirs(figs, exist_ok=True)
    figs_rel = os.path.relpath(figs, os.path.dirname(os.path.abspath(out_md)))
    R = claims.Report(root, scale, figs_rel, figs, world)
    for section in SECTIONS:
        section(R)
    counts, not_tested = count_verdicts([c[4] for c in R.claims])
    other_col, other_v, gained, beside_lines = beside(R, out_md)
    rows = claim_rows(R.claims, other_v)
    quick = (
        [
            "**Quick mode (`make report-quick`): one seed and shortened runs, to check the pipeline in "
            "minutes; its verdicts are indicative only. `make report` (RESULTS.md) is the reference.**",
            "",
        ]
        if meta.get("quick")
        else []
    )
    lines = [
        f"# Results: the paper's claims in {R.W['name']}",
        "",
        *quick,
        f"Written by `{meta['command']}` (experiments/report.py) from the runs in `{root}/`, made by "
        f"`{meta['run_command']}`: {R.N} seed(s) ({', '.join(map(str, R.seeds))}), {meta['runs']} runs "
        f"on {meta['hardware']}, {meta['jobs']} run(s) at a time on one thread each; {meta['wall']} of "
        "wall time for the runs (their folders hold each run's log, config and metrics). Every number "
        "below is read from those runs; mean ± sample std over seeds.",
        "",
        counts_line([c[4] for c in R.claims]),
        "",
        common.md_table(
            ["claim", "the paper (docs/paper.md)", f"this code, {R.W['name']}", "verdict rule", "verdict"]
            + other_col,
            rows,
        ),
        "",
        *beside_lines,
        *protocol_tables(R.root, R.world, R.seeds),
        *R.body,
    ]
    text = "\n".join(lines) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    if readme:
        others = (
            f"; {len(gained)} of the others are reproduced in {settings.WORLDS[R.W['beside']]['name']}"
            if gained
            else ""
        )
        headline = (
            f"**{counts['reproduced']} of {len(R.claims)} claims reproduced, {counts['partly']} "
            f"partly, {counts['not reproduced']} not**{not_tested} ({R.N} seeds, {meta['runs']} "
            f"runs, {meta['wall']} on {meta['hardware']}; "
            f"[RESULTS.md]({os.path.relpath(out_md, os.path.dirname(os.path.abspath(readme)))}) has "
            f"every number and the rule behind each verdict{others}):"
        )
        write_headline(readme, headline, [(c[0], c[4]) for c in R.claims], R.W["name"])
    return text
