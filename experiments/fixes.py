"""RESULTS.md's sections on the paper's fixes: Fix 2 (an RLVR-adapted teacher), Fix 3 (an
SFT-stabilised student) and the recipe that chains them, each claim with its verdict rule.

What this file is
    `fix2` reads the teachers' fit to the student (fit/*), the GRPO runs (grpo/*) and the OPD runs
    from each teacher; `fix3_and_recipe` reads every OPD variant of experiments/settings.py
    (opd/*) into one table and judges Fix 3 and the recipe. Both fill a `claims.Report`.

Paper (docs/paper.md)
    §4 Fix 2 (choose the teacher by its closeness to the student, at similar accuracy), Fix 3 (SFT
    on filtered teacher traces before OPD), and the recipe: SFT → RLVR teacher → unbiased Top-K.

What it simplifies
    * Fix 2 at similar accuracy is judged only when the control teacher's mean accuracy lies within
      0.05 of the GRPO teacher's; otherwise its verdict is "not tested".
    * An OPD variant beats another when it ends higher in a seed; the verdict counts the seeds.
"""

import statistics

import common
from experiments import settings
from experiments.claims import Report, acc, collapsed, fmt, load, tail_mean, verdict

TEACHERS = ("big", "mid", "grpo")  # the bigger off-the-shelf teacher, Fix 2's control, the GRPO-lifted one


def opd_summaries(R: Report) -> dict:
    """{variant: the summaries of its OPD runs, one per seed} (opd/*)."""
    return {v: R.summaries(f"opd/{v}-s{{s}}") for v in settings.opd_variants(R.world)}


def after(V: dict, v: str) -> str:
    """The student's accuracy after OPD variant v, mean ± std over seeds."""
    return fmt([acc(s["student_after"]) for s in V[v]])


def ends_higher(V: dict, a: str, b: str) -> str:
    """The verdict of "OPD variant a ends above variant b", seed by seed."""
    wins = [acc(x["student_after"]) > acc(y["student_after"]) for x, y in zip(V[a], V[b])]
    return verdict(all(wins), any(wins))


def teacher_accuracy(V: dict) -> dict:
    """{teacher: its accuracy per seed}, as evaluated in the OPD run from it with the tail loss."""
    return {t: [acc(s["teacher"]) for s in V[f"raw-{t}-tail"]] for t in TEACHERS}


def control_teacher(R: Report) -> tuple:
    """Fix 2's control teacher: (its label in the table, how it was made)."""
    if R.world == 1:
        return (
            f"{R.teacher}'s recipe stopped at {R.scale['mid_steps']} steps (bigger, SFT)",
            f"`python -m tiny_world --model teacher --steps {R.scale['mid_steps']}` (one model for all seeds)",
        )
    picks = [load(R.root, n) for n in R.names("select/s{s}")]
    label = (
        f"{R.teacher}'s recipe, the snapshot nearest the GRPO teacher (steps "
        f"{', '.join(str(p['step']) for p in picks)}; bigger, SFT)"
    )
    how = (
        f"the snapshot of the far teacher's run (`python -m tiny_world --world 2 --model teacher`, a snapshot "
        f"every 100 steps) whose greedy accuracy on a selection set of {picks[0]['selection']['n']} "
        f"problems no evaluation uses is nearest the GRPO teacher's there (`python -m tiny_world --match`: GRPO "
        f"{fmt([p['model_selection_acc'] for p in picks])}, snapshot "
        f"{fmt([p['snapshot_selection_acc'] for p in picks])}), chosen before any OPD run"
    )
    return label, how


def fit_table(R: Report, fit: dict, V: dict, control: str) -> str:
    """One row per teacher: its accuracy, its fit to the student's samples, its prefix probe at
    f = 0.5, and the student after OPD from it."""
    teacher_acc, rows = teacher_accuracy(V), []
    for t, label in (
        ("big", f"{R.teacher} (bigger, SFT)"),
        ("mid", control),
        ("grpo", f"{R.student} + GRPO (RLVR-adapted)"),
    ):
        f = [p["fit"] for p in fit[t]]
        half = [next(r for r in p["probe"] if r["f"] == 0.5)["acc"] for p in fit[t]]
        rows.append(
            [
                label,
                fmt(teacher_acc[t]),
                fmt([x["kl/full"] for x in f]),
                fmt([x["topk/overlap"] for x in f]),
                fmt([x["topk/teacher_rank"] for x in f], 2),
                fmt(half),
                fmt([acc(s["student_after"]) for s in V[f"raw-{t}-tail"]]),
            ]
        )
    return common.md_table(
        [
            "teacher",
            "accuracy",
            "KL(p‖q) on student samples",
            "Top-20 overlap",
            "teacher rank of sampled token",
            "teacher after half the student's response",
            "student after OPD from it",
        ],
        rows,
    )


def fix2(R: Report) -> None:
    """Fix 2: the GRPO-lifted teacher against the bigger one and the control (fit/*, grpo/*, opd/*)."""
    V = opd_summaries(R)
    teacher_acc = teacher_accuracy(V)
    fit = {t: [load(R.root, n, "probe_summary.json") for n in R.names(f"fit/{t}-s{{s}}")] for t in TEACHERS}
    kl = {t: fmt([p["fit"]["kl/full"] for p in fit[t]]) for t in fit}
    grpo = R.summaries("grpo/s{s}")
    control, control_how = control_teacher(R)
    R.body += [
        "## Fix 2: an RLVR-adapted teacher (docs/paper.md §4)",
        "",
        f"`train_grpo.py{R.preset_flag} --steps {R.scale['grpo_steps']} --seed S` lifts a copy of "
        f"{R.student} with the grader's reward: {fmt([acc(s['student_before']) for s in grpo])} → "
        f"{fmt([acc(s['student_after']) for s in grpo])} in its own evaluation (the accuracy column "
        "below is the OPD run's evaluation of the same model, with other sampling noise). Each "
        "teacher is measured on the student's own samples (`probes.py --probe-teacher`), then used "
        f"as OPD teachers of {R.student} (the runs below). The middle row is the control for the "
        f"paper's comparison at similar accuracy: {control_how}. Mean ± std over {R.N} seed(s).",
        "",
        fit_table(R, fit, V, control),
        "",
    ]
    closer = [g["fit"]["kl/full"] < b["fit"]["kl/full"] for g, b in zip(fit["grpo"], fit["big"])]
    R.claim(
        "Fix 2: a GRPO-lifted copy of the student is closer to it than a bigger off-the-shelf teacher",
        "a 1.7B lifted by GRPO is closer in distribution to the 1.7B student than Qwen3-8B",
        f"KL(student‖teacher) per token: GRPO {kl['grpo']}, bigger {kl['big']}",
        "reproduced if the GRPO teacher's KL is lower in every seed",
        verdict(all(closer), any(closer)),
    )
    R.claim(
        "Fix 2: ... and the better OPD teacher",
        "choose teachers by distribution closeness, not benchmark score",
        f"student after OPD from the GRPO teacher {after(V, 'raw-grpo-tail')}, from the bigger one "
        f"{after(V, 'raw-big-tail')} (teachers {fmt(teacher_acc['grpo'])} and {fmt(teacher_acc['big'])})",
        "reproduced if OPD from the GRPO teacher ends higher in every seed",
        ends_higher(V, "raw-grpo-tail", "raw-big-tail"),
    )
    similar_accuracy(R, V, kl)
    if statistics.mean(teacher_acc["grpo"]) < statistics.mean(teacher_acc["big"]) - 0.1:
        overlap = lambda t: fmt([p["fit"]["topk/overlap"] for p in fit[t]])
        R.body += [
            f"Reading: the GRPO teacher is the closer one (KL {kl['grpo']} against {kl['big']}, "
            f"Top-20 overlap {overlap('grpo')} against {overlap('big')}), but it scores "
            f"{fmt(teacher_acc['grpo'])} against {fmt(teacher_acc['big'])}: OPD brings the student to "
            f"its level ({after(V, 'raw-grpo-tail')}) and no further, while the bigger teacher pulls "
            f"it to {after(V, 'raw-big-tail')}. The paper's premise, a lifted teacher of *similar "
            f"accuracy*, is not met by {R.scale['grpo_steps']} GRPO steps on a 0.4 M-parameter model; "
            "the control row compares at similar accuracy instead.",
            "",
        ]


def similar_accuracy(R: Report, V: dict, kl: dict) -> None:
    """Fix 2's controlled claim: the GRPO teacher against the control of about its accuracy; not
    tested when their mean accuracies are more than 0.05 apart."""
    teacher_acc = teacher_accuracy(V)
    gap = statistics.mean(teacher_acc["mid"]) - statistics.mean(teacher_acc["grpo"])
    matched = abs(gap) <= 0.05
    R.claim(
        "Fix 2 at similar accuracy: the GRPO teacher beats a far teacher of about its accuracy",
        "a GRPO-improved 1.7B is the better teacher than Qwen3-8B *at similar accuracy*, being closer to "
        "the student",
        f"student after OPD from the GRPO teacher {after(V, 'raw-grpo-tail')}, from the early-stopped "
        f"bigger one {after(V, 'raw-mid-tail')} (teachers {fmt(teacher_acc['grpo'])} and "
        f"{fmt(teacher_acc['mid'])}; KL to the student {kl['grpo']} and {kl['mid']})",
        "reproduced if OPD from the GRPO teacher ends higher in every seed; not tested unless the two "
        "teachers' mean accuracies are within 0.05",
        ends_higher(V, "raw-grpo-tail", "raw-mid-tail") if matched else "not tested",
    )
    if not matched:
        fix = (
            "change `mid_steps` in experiments/settings.py's SCALES to match them"
            if R.world == 1
            else "no snapshot of the far teacher lies close enough, and the design (docs/tiny_world2.md) "
            "reports this as not tested rather than re-running with another schedule"
        )
        R.body += [
            f"Reading: the control teacher's accuracy is {abs(gap):.3f} "
            f"{'above' if gap > 0 else 'below'} the GRPO teacher's, so this is not a comparison at "
            f"similar accuracy (verdict: not tested); {fix}.",
            "",
        ]


def opd_table(R: Report, V: dict) -> str:
    """One row per OPD variant: accuracy before and after, the training monitors at the end, how
    many seeds collapsed; in world 2 also the student's notation before → after."""
    rows = []
    for v in V:
        student, teacher, loss = settings.OPD_VARIANTS[v]
        names, sums = R.names(f"opd/{v}-s{{s}}"), V[v]
        tails = [
            fmt([tail_mean(R.root, n, k) for n in names])
            for k in ("len/mean", "len/truncated_frac", "topk/student_mass", "kl/full")
        ]
        rows.append(
            [
                v,
                student,
                teacher,
                loss,
                fmt([acc(s["student_before"]) for s in sums]),
                fmt([acc(s["student_after"]) for s in sums]),
                fmt([acc(s["student_after"]) - acc(s["student_before"]) for s in sums]),
                *tails,
                f"{sum(collapsed(R.root, n) for n in names)}/{R.N}",
            ]
        )
        if R.world == 2:  # the student's notation: its share of step lines in the teacher's (rewrite) form
            rows[-1].append(
                " → ".join(
                    fmt([s[w]["style/rewrite"] for s in sums], 2) for w in ("student_before", "student_after")
                )
            )
    return common.md_table(
        [
            "run",
            "student",
            "teacher",
            "loss",
            "acc before",
            "acc after",
            "gain",
            "len",
            "trunc",
            "student Top-K mass",
            "reverse KL",
            "collapsed",
        ]
        + (["rewrite-notation lines before → after"] if R.world == 2 else []),
        rows,
    )


def fix3_and_recipe(R: Report) -> None:
    """Fix 3 (OPD from the SFT student) and the recipe against no fix, from every OPD variant (opd/*)."""
    V = opd_summaries(R)
    recipe_sft = (
        ""
        if R.W["recipe_sft"] == "big"
        else (
            "; in the recipe's row, sft-grpo-tail, on the GRPO teacher's traces instead, the recipe's own "
            "teacher, so that student and teacher write one notation"
        )
    )
    R.body += [
        "## Fix 3 and the recipe: SFT → RLVR teacher → unbiased Top-K (docs/paper.md §4)",
        "",
        f"`train_opd.py{R.preset_flag} --loss L --steps {R.scale['opd_steps']} --batch-size "
        f"{R.scale['opd_batch']} --seed S [--student S] [--teacher T]`: the `make opd` settings "
        f"otherwise (lr 3e-4, K = 20). student: raw = {R.student}, sft = {R.student} after SFT on "
        f"{R.scale['sft_n']} of {R.teacher}'s graded traces (`train_sft.py --preset "
        f"sft-student`{recipe_sft}); teacher: big = {R.teacher}, grpo = the GRPO-lifted student "
        "above, mid = the control teacher of about its accuracy; loss: plain = `topk_plain` (biased), "
        "tail = `topk_tail` (unbiased; Fix 1 in this world, see Mechanism 2 above). Mean ± std over "
        f"{R.N} seed(s).",
        "",
        opd_table(R, V),
        "",
        R.figure(
            [f"opd/{v}-s{R.seeds[0]}" for v in V], "report_opd.png", f"OPD variants (seed {R.seeds[0]})"
        ),
        "",
    ]
    R.claim(
        "Fix 3: SFT on filtered teacher traces first, then OPD, ends higher than OPD alone",
        "a short SFT pass stabilises the student so that OPD raises accuracy instead of collapsing",
        f"after OPD: from the SFT student {after(V, 'sft-big-tail')}, from the raw one "
        f"{after(V, 'raw-big-tail')}",
        "reproduced if higher in every seed",
        ends_higher(V, "sft-big-tail", "raw-big-tail"),
    )
    mean_after = {v: statistics.mean(acc(s["student_after"]) for s in V[v]) for v in V}
    best = max(V, key=lambda v: mean_after[v])
    R.claim(
        "The recipe (SFT student, RLVR teacher, unbiased Top-K) beats OPD with none of the fixes",
        "SFT → RLVR-adapted teacher → sg Top-K, each step removing one failure mechanism",
        f"recipe {after(V, 'sft-grpo-tail')}, no fix {after(V, 'raw-big-plain')}; best variant here: "
        f"{best} {after(V, best)}",
        "reproduced if the recipe ends higher in every seed",
        ends_higher(V, "sft-grpo-tail", "raw-big-plain"),
    )
    tail = [v for v in V if "tail" in v]
    if best != "sft-grpo-tail" and all(mean_after[v] > mean_after["raw-big-plain"] for v in tail):
        recipe = V["sft-grpo-tail"]
        R.body += [
            "Reading: every variant with the unbiased loss ends above the biased baseline, which "
            f"collapses. The best here is {best} ({after(V, best)}); with the GRPO teacher the SFT "
            "student gains only "
            f"{fmt([acc(s['student_after']) - acc(s['student_before']) for s in recipe])}, because "
            f"that teacher ({fmt(teacher_accuracy(V)['grpo'])}) is barely ahead of it "
            f"({fmt([acc(s['student_before']) for s in recipe])}).",
            "",
        ]
