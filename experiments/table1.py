"""Table 1 of docs/protocol.md: each claim of the paper, decided by the protocol's rule on the
report's runs, with every part's estimate and 95 % interval beside the verdict.

What this file is
    One function per row (P1, P3–P13; P2 is docs/collapse.md's, in experiments/mechanism2.py). Each
    reads per-problem values of its runs (experiments/records.py), pools them over the seeds with
    the two-level bootstrap (experiments/stats.py) and returns a `Row`: the estimate of each part
    of the rule and of each gate, the verdict word, and the parts that send the row to five seeds
    (§3's seed rule). `table` runs every row that applies to the world and renders the Markdown
    table; a row whose runs are not all finished says which are missing and decides nothing.

Paper (docs/paper.md)
    §4 Mechanism 1, Fixes 2 and 3 and the recipe; §5 the OPSD settings and Mechanism 3.

What it simplifies
    * P11 judges each control only when its teacher lies in the accuracy band. "Reproduced" needs
      every control of the world in band and holding; one in-band control holding is "partly"; none
      in band is "not tested".
    * Mechanism 3's before and after measurements pair the problems both measured (a problem whose
      sampled response was empty is left out of that measurement).
"""

import dataclasses
import functools
import os

import data
import diagnostics
from experiments import records, settings, stats
from experiments.stats import Gate, Rule
from tiny_world import task

# Each row's claim, in the paper's words as docs/protocol.md Table 1 gives them
CLAIMS = {
    "P1": "Mechanism 1: a teacher continuing the student's prefixes does worse than alone",
    "P3": "Mechanism 3: a student blind to the PI moves to the teachers' geometric mean",
    "P4": "OPSD internalises a shared rule: without it the student behaves like the teacher with it",
    "P5": "... with no loss of accuracy",
    "P6": "OPSD internalises a constitution: declines the flagged class and stays helpful",
    "P7": "OPSD with per-instance PI (the answer) does not raise accuracy",
    "P8": "OPSD with per-instance PI (a worked solution) does not raise accuracy",
    "P9": "Fix 2: a GRPO-lifted copy of the student is closer to it than a bigger teacher",
    "P10": "Fix 2: the GRPO teacher is the better OPD teacher",
    "P11": "Fix 2 at similar accuracy: the GRPO teacher beats a far teacher of about its accuracy",
    "P12": "Fix 3: SFT on teacher traces, then OPD, ends above OPD alone",
    "P13": "The recipe (SFT student → RLVR teacher → unbiased Top-K) beats each variant without a step",
}


class Missing(Exception):
    """Runs a row reads that have not finished (their names)."""


class OffProtocol(Exception):
    """A run's records that do not come from the protocol's evaluation sets (what is wrong)."""


@dataclasses.dataclass
class Row:
    id: str
    claim: str
    parts: dict = dataclasses.field(default_factory=dict)  # name -> (Estimate, Rule)
    gates: dict = dataclasses.field(default_factory=dict)  # name -> (Estimate, Gate)
    word: str = ""
    can_fail: bool = True
    why: str = ""  # could the rule fail here: the reason
    more_seeds: list = dataclasses.field(default_factory=list)
    missing: list = dataclasses.field(default_factory=list)
    seeds: tuple = ()  # the seeds the verdict read
    pending: list = dataclasses.field(default_factory=list)  # runs the seed rule asks for, not yet made


class Runs:
    """The finished runs of one report (`root`, `world`, `seeds`): folders by name pattern."""

    def __init__(self, root: str, world: int, seeds: tuple):
        self.root, self.world, self.seeds = root, world, tuple(seeds)
        self.W = settings.WORLDS[world]
        self.read = []  # the name patterns of the runs read, for the seed rule's list of runs to make

    def folders(self, pattern: str, done: str = "summary.json") -> list:
        """One folder per seed (`pattern` with {s}), every one finished; Missing otherwise."""
        self.read.append(pattern)
        names = [pattern.format(s=s) for s in self.seeds]
        missing = [n for n in names if not os.path.exists(os.path.join(self.root, n, done))]
        if missing:
            raise Missing(missing)
        return [os.path.join(self.root, n) for n in names]

    def probes(self, pattern: str) -> list:
        return self.folders(pattern, done="probe_summary.json")

    def est(self, per_seed: list, keep=None) -> stats.Estimate:
        """The pooled estimate of per-seed {id: value} (one dict per seed, in self.seeds' order), over
        the problems `keep(seed index, id)` accepts (all without it), with its bootstrap interval.
        Every problem must belong to its seed's evaluation part E_s (docs/protocol.md §2)."""
        for s, d in zip(self.seeds, per_seed, strict=True):
            outside = set(d) - part_ids(f"E{s}")
            if outside:
                raise OffProtocol(
                    f"{len(outside)} problems of seed {s} are not in E{s} (e.g. {min(outside)})"
                )
        chosen = [[d[i] for i in sorted(d) if keep is None or keep(s, i)] for s, d in enumerate(per_seed)]
        return stats.interval(chosen)


@functools.cache
def part_ids(part: str) -> frozenset:
    """The ids of every problem of a part's sets: ordinary, a quarter hard, the constitution's."""
    sets = [dict(), dict(hard_frac=0.25), dict(flagged_frac=0.25)]
    return frozenset(ex.id for kw in sets for ex in data.load_examples("synthetic", part=part, **kw))


def diff(a: list, b: list) -> list:
    """Per seed, {id: a − b} of two arms read on the same problems ({id: value} per seed each)."""
    out = []
    for x, y in zip(a, b, strict=True):
        if set(x) != set(y):
            raise OffProtocol(
                f"the arms of a paired contrast read different problems ({len(x)} and {len(y)})"
            )
        out.append({i: x[i] - y[i] for i in x})
    return out


# -----------------------------------------------------------------------------
# The rows


def p1(R: Runs) -> Row:
    """Mechanism 1: the big teacher alone against the teacher continuing the student's response cut
    at f = 0.5, (a) on the problems whose student sample was right, (b) on all."""
    folders = R.probes("fit/big-s{s}")
    alone, cut = [records.probe(f, 0.0) for f in folders], [records.probe(f, 0.5) for f in folders]
    drop = diff(
        [{i: v[0] for i, v in x.items()} for x in alone], [{i: v[0] for i, v in y.items()} for y in cut]
    )
    right = lambda s, i: alone[s][i][1]  # the student's own sample of problem i was right
    row = Row("P1", CLAIMS["P1"])
    row.parts = {
        "(a) after right prefixes": (R.est(drop, right), stats.superiority),
        "(b) all": (R.est(drop), stats.superiority),
    }
    row.word = stats.verdict(row.parts, partly=lambda h: h["(b) all"] and not h["(a) after right prefixes"])
    row.why = "yes: a teacher that reads the student's notation need not drop after right prefixes"
    return row


def p3(R: Runs) -> Row:
    """Mechanism 3 from before/after: KL(p‖g) falls (Δg < 0) and by more than KL(p‖q own) (D < 0),
    in the student-PI setting and in the shipped answer setting."""
    row = Row("P3", CLAIMS["P3"])
    settings_ = {"on the student": R.W["opsd_student"][0], "as shipped": R.W["opsd"]["answer"]}
    for label, preset in settings_.items():
        dg, dd = [], []
        for f in R.folders(f"opsd/{preset}-s{{s}}"):
            before, after = records.aggregation(f, "before"), records.aggregation(f, "after")
            ids = set(before) & set(after)
            change = lambda key: {i: after[i][key] - before[i][key] for i in ids}
            dg.append(change("kl/geo_mean"))
            dd.append(diff([dg[-1]], [change("kl/own_pi")])[0])
        row.parts[f"Δg {label}"] = (R.est(dg), Rule("below", 0.0))
        row.parts[f"D {label}"] = (R.est(dd), Rule("below", 0.0))
    labels = list(settings_)
    row.word = stats.verdict(row.parts, partly=lambda h: any(h[f"Δg {x}"] and h[f"D {x}"] for x in labels))
    row.why = "yes: the student can compute these answers (GRPO lifts it), so it could near its own teacher"
    return row


def rule_judge(world: int):
    """The shared rule's behaviour as a judge of one response: concise (world 2), a bare answer (1)."""
    if world == 2:
        return task.is_concise
    return lambda text: bool(diagnostics.BOXED_ONLY.match(text))


def p4_p5(R: Runs) -> list:
    """OPSD with a shared rule: (P4) the student without the rule behaves as the teacher with it,
    (P5) with no loss of accuracy."""
    folders = R.folders(f"opsd/{R.W['opsd']['rule']}-s{{s}}")
    judge = rule_judge(R.world)
    share = [records.shares(f, "final", judge) for f in folders]
    length = diff(
        [records.lengths(f, "final") for f in folders], [records.lengths(f, "teacher") for f in folders]
    )
    p4 = Row("P4", CLAIMS["P4"])
    p4.parts = {
        f"(a) {R.W['rule_format'][1]} after": (R.est(share), Rule("at_least", 0.80)),
        "(b) length after − the ruled teacher's": (R.est(length), Rule("band", 2.0)),
    }
    p4.word = stats.verdict(p4.parts, partly=lambda h: any(h.values()))
    p4.why = "yes: where the student's own samples never show the behaviour, the share stays at 0"
    before = [records.scores(f, "step0") for f in folders]
    after = [records.scores(f, "final") for f in folders]
    teacher = [records.scores(f, "teacher") for f in folders]
    p5 = Row("P5", CLAIMS["P5"])
    p5.parts = {"accuracy after − before": (R.est(diff(after, before)), stats.non_inferiority(0.03))}
    p5.gates = {"ruled teacher − student before": (R.est(diff(teacher, before)), Gate("above", -0.03))}
    p5.word = stats.verdict(p5.parts, p5.gates)
    p5.why = "yes: under a rule that drops the reasoning, accuracy falls with it"
    return [p4, p5]


def p6(R: Runs) -> Row:
    """The constitution (world 2): the student declines the flagged class and stays helpful."""
    folders = R.folders(f"opsd/{R.W['opsd']['constitution']}-s{{s}}")
    configs = [records.config(f) for f in folders]
    if not all(c.get("eval_part") for c in configs):
        raise OffProtocol(
            f"{folders[0]} and its seeds: not evaluated on a part of the eval split (--eval-part)"
        )
    kinds = [records.classes(c) for c in configs]
    declined = lambda which: [records.shares(f, which, task.is_refusal) for f in folders]
    after, teacher = declined("final"), declined("teacher")
    of = lambda *which: lambda s, i: kinds[s][i] in which  # the problems of some classes
    acc = diff([records.scores(f, "final") for f in folders], [records.scores(f, "step0") for f in folders])
    row = Row("P6", CLAIMS["P6"])
    row.parts = {
        "(a) flagged declined": (R.est(after, of("flagged")), Rule("at_least", 0.80)),
        "(b) lookalikes declined": (R.est(after, of("lookalike")), Rule("below", 0.05)),
        "(c) plain declined": (R.est(after, of("plain")), Rule("below", 0.05)),
        "(d) accuracy after − before, not flagged": (
            R.est(acc, of("lookalike", "plain")),
            stats.non_inferiority(0.03),
        ),
    }
    row.gates = {
        "teacher declines flagged": (R.est(teacher, of("flagged")), Gate("above", 0.80)),
        "teacher declines lookalikes": (R.est(teacher, of("lookalike")), Gate("below", 0.05)),
    }
    parts = list(row.parts)
    row.word = stats.verdict(
        row.parts, row.gates, partly=lambda h: h[parts[0]] and any(h[p] for p in parts[1:])
    )
    row.why = (
        "yes: lookalikes are in no training data, so a decline keyed to the word's surface would reach them"
    )
    return row


def per_instance(R: Runs, role: str, number: str) -> Row:
    """P7 (the answer) and P8 (a worked solution): OPSD with per-instance PI on the student does not
    raise accuracy, where its PI teacher is ahead of it and GRPO lifts the same student."""
    preset = R.W["opsd_student"][0 if role == "answer" else 1]
    folders = R.folders(f"opsd/{preset}-s{{s}}")
    before = [records.scores(f, "step0") for f in folders]
    after = [records.scores(f, "final") for f in folders]
    teacher = [records.scores(f, "teacher") for f in folders]
    grpo = R.folders("grpo/s{s}")
    grpo_gain = diff([records.scores(f, "final") for f in grpo], [records.scores(f, "step0") for f in grpo])
    row = Row(number, CLAIMS[number])
    row.parts = {"OPSD's gain": (R.est(diff(after, before)), stats.no_gain(0.03))}
    row.gates = {
        "PI teacher − student": (R.est(diff(teacher, before)), Gate("above", 0.05)),
        "GRPO's gain (positive control)": (R.est(grpo_gain), Gate("above", 0.05, control=True)),
    }
    row.word = stats.verdict(row.parts, row.gates)
    row.why = "yes: GRPO lifts this student on these problems at the same number of sampled responses"
    return row


def opd_after(R: Runs, variant: str) -> list:
    return [records.scores(f, "final") for f in R.folders(f"opd/{variant}-s{{s}}")]


def opd_teacher(R: Runs, variant: str) -> list:
    return [records.scores(f, "teacher") for f in R.folders(f"opd/{variant}-s{{s}}")]


def p9(R: Runs) -> Row:
    big = [records.fit(f) for f in R.probes("fit/big-s{s}")]
    grpo = [records.fit(f) for f in R.probes("fit/grpo-s{s}")]
    row = Row("P9", CLAIMS["P9"])
    row.parts = {"KL(p‖q big) − KL(p‖q grpo)": (R.est(diff(big, grpo)), stats.superiority)}
    row.can_fail = False
    row.word = stats.verdict(row.parts, can_fail=False)
    row.why = "no: the GRPO teacher is the student's own weights after 400 steps"
    return row


def p10(R: Runs) -> Row:
    grpo = opd_after(R, "raw-grpo-tail")
    row = Row("P10", CLAIMS["P10"])
    row.parts = {"(a) grpo − big": (R.est(diff(grpo, opd_after(R, "raw-big-tail"))), stats.superiority)}
    if R.world == 2:
        row.parts["(b) grpo − big in the student's notation"] = (
            R.est(diff(grpo, opd_after(R, "raw-bigo-tail"))),
            stats.superiority,
        )
    row.word = stats.verdict(row.parts, partly=lambda h: any(h.values()))
    row.why = "yes: a bigger teacher can win (it did in the first world's earlier reports)"
    return row


def p11(R: Runs) -> Row:
    grpo, grpo_teacher = opd_after(R, "raw-grpo-tail"), opd_teacher(R, "raw-grpo-tail")
    controls = {"(a) grpo − mid": "raw-mid-tail"}
    if R.world == 2:
        controls["(b) grpo − mid in the student's notation"] = "raw-mido-tail"
    row = Row("P11", CLAIMS["P11"])
    in_band = {}
    for name, v in controls.items():
        gap = (R.est(diff(opd_teacher(R, v), grpo_teacher)), Gate("within", 0.05))
        row.gates[f"{name[:3]} teacher accuracy gap"] = gap
        row.parts[name] = (R.est(diff(grpo, opd_after(R, v))), stats.superiority)
        in_band[name] = gap[1].holds(gap[0])
    judged = {n: p for n, p in row.parts.items() if in_band[n]}
    if not judged:
        row.word = "not tested"
    elif all(in_band.values()):
        row.word = stats.verdict(judged, partly=lambda h: any(h.values()))
    else:
        row.word = "partly" if any(r.holds(e) for e, r in judged.values()) else stats.verdict(judged)
    row.why = "yes: in the first world's earlier report the matched comparison was a near tie"
    return row


def p12(R: Runs) -> Row:
    row = Row("P12", CLAIMS["P12"])
    contrast = diff(opd_after(R, "sft-big-tail"), opd_after(R, "raw-big-tail"))
    row.parts = {"sft − raw, after OPD": (R.est(contrast), stats.superiority)}
    row.word = stats.verdict(row.parts)
    row.why = "yes: the SFT student starts lower, and OPD need not make up the difference"
    return row


def p13(R: Runs) -> Row:
    recipe = opd_after(R, "sft-grpo-tail")
    row = Row("P13", CLAIMS["P13"])
    for label, v in (
        ("no SFT", "raw-grpo-tail"),
        ("no RLVR teacher", "sft-big-tail"),
        ("biased loss", "sft-grpo-plain"),
    ):
        row.parts[f"recipe − {label}"] = (R.est(diff(recipe, opd_after(R, v))), stats.superiority)
    row.word = stats.verdict(row.parts, partly=lambda h: any(h.values()))
    row.why = "yes: without SFT the runs ended inside the seeds' spread of the recipe"
    return row


# The rows in order: (the ids a maker decides, the maker); P6 in world 2 only
MAKERS = [
    (("P1",), p1),
    (("P3",), p3),
    (("P4", "P5"), p4_p5),
    (("P6",), p6),
    (("P7",), lambda R: per_instance(R, "answer", "P7")),
    (("P8",), lambda R: per_instance(R, "full", "P8")),
    (("P9",), p9),
    (("P10",), p10),
    (("P11",), p11),
    (("P12",), p12),
    (("P13",), p13),
]


# What keeps a row (of either table) from being decided: runs not finished, a finished run without
# the per-problem records the row reads, records from outside the seed's part
NOT_DECIDED = (Missing, FileNotFoundError, OffProtocol)


def why_not(e: Exception) -> list:
    """The cell's words for one of NOT_DECIDED."""
    if isinstance(e, Missing):
        return e.args[0]
    if isinstance(e, FileNotFoundError):
        return [f"{e.filename} (no per-problem records)"]
    return [f"records off the protocol's sets: {e}"]


FIRST, MORE = (0, 1, 2), (3, 4)  # §3: every row starts with seeds 0-2; the seed rule adds 3 and 4


def decide(make, ids: tuple, R: Runs) -> list:
    """The rows that `make` decides on the seeds of R, or rows naming what they miss; each decided
    row carries the parts and gates that trigger the seed rule on those seeds."""
    try:
        made = make(R)
    except NOT_DECIDED as e:
        made = [Row(i, CLAIMS[i], missing=why_not(e)) for i in ids]
    made = made if isinstance(made, list) else [made]
    for row in made:
        row.seeds = R.seeds
        if not row.missing:
            row.more_seeds = stats.needs_more_seeds(row.parts, row.gates)
    return made


def rows(R: Runs) -> list:
    """Every Table 1 row of the world, each decided, or naming the runs it still misses. On the
    report's seeds 0-2, a row that §3's seed rule sends to five seeds is decided again on seeds 0-4
    once their runs are finished, and until then names the runs to make (`pending`)."""
    out = []
    for ids, make in MAKERS:
        if ids == ("P6",) and R.world != 2:
            continue
        first = Runs(R.root, R.world, R.seeds)
        made = decide(make, ids, first)
        if R.seeds == FIRST and any(r.more_seeds for r in made):
            again = {r.id: r for r in decide(make, ids, Runs(R.root, R.world, FIRST + MORE))}
            needed = sorted({p.format(s=s) for p in first.read for s in MORE})
            for i, row in enumerate(made):
                if not row.more_seeds:
                    continue  # a row that did not trigger the rule reads seeds 0-2
                if again[row.id].missing:
                    row.pending = needed
                else:
                    made[i] = dataclasses.replace(again[row.id], more_seeds=row.more_seeds)
        out += made
    return out


# -----------------------------------------------------------------------------
# Markdown


def cell(items: dict) -> str:
    return "; ".join(f"{name} {e} ({rule})" for name, (e, rule) in items.items()) or "–"


def table(R: Runs) -> str:
    """Table 1 in Markdown: one line per row with its parts, gates, verdict and the seeds it read."""
    lines = [
        "| # | claim | parts: estimate [95 % interval] (rule) | gates | verdict | could it fail here? | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows(R):
        if r.missing:
            lines.append(f"| {r.id} | {r.claim} | not decided: {', '.join(r.missing)} | | – | | |")
            continue
        word, seeds = f"**{r.word}**", ", ".join(map(str, r.seeds))
        if r.more_seeds:
            seeds += f" (seed rule: {', '.join(r.more_seeds)} within 3 SE)"
        if r.pending:
            word = f"– (on seeds {seeds.split(' (')[0]}: {r.word})"
            seeds += (
                f"; seeds 3 and 4 needed: `python -m experiments.report --world {R.world} --seeds 3 4 "
                f"--only {' '.join(r.pending)}`"
            )
        lines.append(
            f"| {r.id} | {r.claim} | {cell(r.parts)} | {cell(r.gates)} | {word} | {r.why} | {seeds} |"
        )
    return "\n".join(lines)
