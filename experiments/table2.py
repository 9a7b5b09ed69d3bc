"""Table 2 of docs/protocol.md: our own controls and readings beside the paper's claims. None of
them is a verdict and none enters the headline; each says what was expected and whether it held.

What this file is
    One function per row (C1–C9, C11; C10's data checks are tiny_world/partition.py's, asserted by
    the tests). Each reads per-problem values of its runs (experiments/records.py) through
    table1.Runs, so every estimate carries its 95 % two-level bootstrap interval and reads only its
    seed's evaluation part. `table` renders the Markdown; a row whose runs are not all finished says
    which are missing.

Paper (docs/paper.md)
    §5 (C1–C5: OPSD's identities and the shipped per-instance settings), §4 (C6–C9, C11: the
    fixes' comparators, OPD's baselines, Mechanism 1's cuts, Fix 3's route, the teachers' fit).
"""

import dataclasses

import diagnostics
import run_folder
from experiments import records, table1
from experiments.table1 import Runs, diff
from tiny_world import task

# Each row's check, as docs/protocol.md Table 2 names it
CHECKS = {
    "C1": "OPSD without PI has nothing to distil",
    "C2": "−log Z of a shared rule (an identity: the eight contexts are one)",
    "C3": "−log Z of the answer, before and after (the frozen teachers' property)",
    "C4": "KL(p‖q own) − KL(p‖g) after training (holds for any student blind to the PI)",
    "C5": "Per-instance PI on the teacher, as shipped (the headroom is about the margin)",
    "C6": "The recipe against OPD with no fix (the comparator collapses by design)",
    "C7": "OPD against its baselines at the same teacher cost",
    "C8": "Mechanism 1 at other cuts (teacher alone − after the cut, all problems)",
    "C9": "Fix 3's route: notation and the collapse signature",
    "C11": "The teachers' fit to the student (does closeness track P10–P11?)",
}


@dataclasses.dataclass
class Check:
    id: str
    check: str
    readings: dict = dataclasses.field(default_factory=dict)  # name -> Estimate or text
    expected: str = ""
    met: bool = None  # whether the reading is as expected (None: a reading with no expectation)
    missing: list = dataclasses.field(default_factory=list)


def c1(R: Runs) -> Check:
    """OPSD without PI: student and teacher are one model in one context, so the loss is 0."""
    folders = R.folders(f"opsd/{R.W['opsd']['none']}-s{{s}}")
    first = max(abs(run_folder.read_log(f)[0][0]["loss"]) for f in folders)
    gain = R.est(
        diff([records.scores(f, "final") for f in folders], [records.scores(f, "step0") for f in folders])
    )
    c = Check("C1", CHECKS["C1"])
    c.readings = {"largest loss at step 1": f"{first:.2e}", "accuracy after − before": gain}
    c.expected = "loss < 1e-3; the interval inside ±0.03"
    c.met = first < 1e-3 and -0.03 < gain.lo and gain.hi < 0.03
    return c


def c2_c4(R: Runs) -> list:
    """Mechanism 3's identities: −log Z of a shared rule is 0; that of the answer is positive, a
    property of the frozen teachers; after training KL(p‖g) < KL(p‖q own) for any blind student."""
    rule = [records.aggregation(f, "after") for f in R.folders(f"opsd/{R.W['opsd']['rule']}-s{{s}}")]
    largest = max(abs(r["irreducible/-logZ"]) for d in rule for r in d.values())
    c2 = Check("C2", CHECKS["C2"])
    c2.readings, c2.expected, c2.met = {"largest |−log Z|": f"{largest:.2e}"}, "< 1e-3", largest < 1e-3
    c3 = Check("C3", CHECKS["C3"])
    c4 = Check("C4", CHECKS["C4"])
    c3.met = c4.met = True
    for label, preset in (("on the student", R.W["opsd_student"][0]), ("as shipped", R.W["opsd"]["answer"])):
        folders = R.folders(f"opsd/{preset}-s{{s}}")
        for when in ("before", "after"):
            per = [records.aggregation(f, when) for f in folders]
            e = R.est([{i: r["irreducible/-logZ"] for i, r in d.items()} for d in per])
            c3.readings[f"{when}, {label}"] = e
            c3.met = c3.met and e.lo > 0
        after = [records.aggregation(f, "after") for f in folders]
        e = R.est([{i: r["kl/own_pi"] - r["kl/geo_mean"] for i, r in d.items()} for d in after])
        c4.readings[label] = e
        c4.met = c4.met and e.lo > 0
    c3.expected, c4.expected = "lo > 0", "lo > 0 (g lower)"
    return [c2, c3, c4]


def c5(R: Runs) -> Check:
    """Per-instance PI on the teacher, as shipped: a quarter of the set is hard products no model
    computes, so the learnable headroom is at most about the 0.03 margin."""
    c = Check("C5", CHECKS["C5"])
    for role in ("answer", "full"):
        folders = R.folders(f"opsd/{R.W['opsd'][role]}-s{{s}}")
        before = [records.scores(f, "step0") for f in folders]
        c.readings[f"{role}: gain"] = R.est(diff([records.scores(f, "final") for f in folders], before))
        c.readings[f"{role}: PI teacher − student"] = R.est(
            diff([records.scores(f, "teacher") for f in folders], before)
        )
    return c


def c6(R: Runs) -> Check:
    c = Check("C6", CHECKS["C6"])
    e = R.est(diff(table1.opd_after(R, "sft-grpo-tail"), table1.opd_after(R, "raw-big-plain")))
    c.readings, c.expected, c.met = {"recipe − raw-big-plain": e}, "lo > 0", e.lo > 0
    return c


def c7(R: Runs) -> Check:
    """OPD (`make opd`'s loss and teacher) against its baselines: the student unchanged, and SFT on
    the teacher's samples at the same teacher tokens (kd)."""
    folders = R.folders("opd/raw-big-tail-s{s}")
    after = [records.scores(f, "final") for f in folders]
    kd = [records.scores(f, "synthetic") for f in R.folders("kd-eval/s{s}")]
    c = Check("C7", CHECKS["C7"])
    c.readings = {
        "OPD after − the student unchanged": R.est(
            diff(after, [records.scores(f, "step0") for f in folders])
        ),
        "OPD after − kd": R.est(diff(after, kd)),
        "kd − the student unchanged": R.est(diff(kd, [records.scores(f, "step0") for f in folders])),
    }
    return c


def c8(R: Runs) -> Check:
    """Mechanism 1 at other cuts: the teacher alone − after the student's prefix, on all problems."""
    c = Check("C8", CHECKS["C8"])
    for name, cut in (("fit/big-s{s}", "tokens"), ("fit/big-lines-s{s}", "line ends")):
        folders = R.probes(name)
        alone = [{i: v[0] for i, v in records.probe(f, 0.0).items()} for f in folders]
        for frac in (0.25, 0.5, 0.75):
            at = [{i: v[0] for i, v in records.probe(f, frac).items()} for f in folders]
            c.readings[f"f = {frac}, {cut}"] = R.est(diff(alone, at))
    return c


def c9(R: Runs) -> Check:
    """Fix 3's route: whether SFT helped by keeping OPD from collapsing or by aligning the notation
    (world 2: the share of step lines in the student's rewrite notation, before → after)."""
    c = Check("C9", CHECKS["C9"])
    signature = [
        diagnostics.collapse_signature(run_folder.read_log(f)[0]) for f in R.folders("opd/raw-big-tail-s{s}")
    ]
    c.readings["raw-big-tail collapsed"] = f"{sum(s['collapsed'] for s in signature)}/{len(signature)} seeds"
    if R.world == 2:
        rewrite = lambda text: task.style_of(text)["rewrite"]
        for v in ("raw-big-tail", "sft-big-tail", "sft-grpo-tail"):
            folders = R.folders(f"opd/{v}-s{{s}}")
            for which in ("step0", "final"):
                c.readings[f"{v} rewrite share, {which}"] = R.est(
                    [records.means(f, which, rewrite) for f in folders]
                )
    return c


def c11(R: Runs) -> Check:
    """Each teacher's fit to the student on its own samples, and the probe at f = 0.5."""
    c = Check("C11", CHECKS["C11"])
    teachers = ["big", "mid", "grpo"] + (["bigo", "mido"] if R.world == 2 else [])
    for t in teachers:
        folders = R.probes(f"fit/{t}-s{{s}}")
        for key, label in (
            ("kl/full", "KL(p‖q)"),
            ("topk/overlap", "Top-20 overlap"),
            ("topk/teacher_rank", "rank"),
        ):
            c.readings[f"{t} {label}"] = R.est([records.fit(f, key) for f in folders])
        probe = [{i: v[0] for i, v in records.probe(f, 0.5).items()} for f in folders]
        c.readings[f"{t} after the cut at f = 0.5"] = R.est(probe)
    return c


MAKERS = [
    (("C1",), c1),
    (("C2", "C3", "C4"), c2_c4),
    (("C5",), c5),
    (("C6",), c6),
    (("C7",), c7),
    (("C8",), c8),
    (("C9",), c9),
    (("C11",), c11),
]


def checks(R: Runs) -> list:
    out = []
    for ids, make in MAKERS:
        try:
            made = make(R)
        except table1.NOT_DECIDED as e:
            made = [Check(i, CHECKS[i], missing=table1.why_not(e)) for i in ids]
        out += made if isinstance(made, list) else [made]
    return out


def table(R: Runs) -> str:
    lines = [
        "| # | check | readings: estimate [95 % interval] | expected | as expected |",
        "|---|---|---|---|---|",
    ]
    for c in checks(R):
        if c.missing:
            lines.append(f"| {c.id} | {c.check} | not read: {', '.join(c.missing)} | | |")
            continue
        readings = "; ".join(f"{k} {v}" for k, v in c.readings.items())
        met = "–" if c.met is None else "yes" if c.met else "**no**"
        lines.append(f"| {c.id} | {c.check} | {readings} | {c.expected or '–'} | {met} |")
    return "\n".join(lines)
