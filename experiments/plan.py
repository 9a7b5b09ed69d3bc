"""The plan of `make report`: every run of the report, the folder it writes and what it needs first.

What this file is
    `plan(scale, world)` lists the runs (`Run`: a project script and its flags) of every experiment
    of experiments/report.py's docstring, for one scale (settings.SCALES: the full report or the
    quick one) and one tiny world, in seeds; `only` keeps the runs one part of the plan needs. The
    runner and the command line are experiments/report.py; the runs' settings experiments/settings.py.

Command
    python -m experiments.report --only opsd/    # run one part of the plan (and what it needs)
"""

import dataclasses

import errors
from experiments import settings


@dataclasses.dataclass
class Run:
    name: str  # folder under the report's root
    argv: list  # script and flags; --out, --threads (and --resume) are added by the runner
    needs: tuple = ()  # names of runs that must finish first
    cost: float = 1.0  # rough minutes on one thread, to start long runs first
    done: str = "summary.json"  # the file a finished run has written last


def plan(scale: dict, world: int = 1) -> list:
    """Every run of the report at `scale` (settings.SCALES) in `world` (settings.WORLDS): Fix 2's
    control teachers, then for each seed Mechanism 2's grid, the OPSD settings and the fixes' runs."""
    runs = control_teachers(scale, world)
    for s in scale["seeds"]:
        runs += collapse_runs(scale, world, s) + opsd_runs(scale, world, s) + fix_runs(scale, world, s)
    return runs


def control_teachers(scale: dict, world: int) -> list:
    """Fix 2's controls, made once for all seeds (like the big teacher)."""
    if world == 1:
        # the tiny teacher's recipe (`python -m tiny_world --model teacher`) with mid_steps steps instead of 3,000
        return [
            Run(
                "teacher-mid",
                ["-m", "tiny_world", "--model", "teacher", "--steps", str(scale["mid_steps"])],
                cost=scale["mid_steps"] / 150,
            )
        ]
    # the far teacher's recipe with its snapshots (the full schedule; quick: far_steps), in its own
    # notation ("far") and in the student's ("far-o", docs/protocol.md §6)
    steps = [] if scale["far_steps"] == 3000 else ["--steps", str(scale["far_steps"])]
    far = ["-m", "tiny_world", "--world", "2", "--model", "teacher"] + steps
    return [
        Run("far", far, cost=scale["far_steps"] / 100),
        Run("far-o", far + ["--style", "O"], cost=scale["far_steps"] / 100),
    ]


def eval_and_seed(scale: dict, s: int) -> list:
    """The held-out evaluation's size and the seed, which every training run takes."""
    return ["--eval-n", str(scale["eval_n"]), "--seed", str(s)]


def collapse_steps(scale: dict, lr: float = settings.COLLAPSE_LR) -> int:
    """The steps of the collapse protocol's budget at a constant `lr`."""
    return round(scale["collapse_budget"] / lr)


def collapse_runs(scale: dict, world: int, s: int) -> list:
    """Mechanism 2 and Fix 1 (docs/collapse.md, part 2): OPD with each Top-K loss at each K at a
    constant rate over the budget, LONG_LOSSES at the largest K past it; plain Top-K again at half
    the rate over the same budget (`-lr2`)."""

    def run(name: str, loss: str, k: int, lr: float, steps: int) -> Run:
        flags = ["--loss", loss, "--k", str(k), "--steps", str(steps), "--batch-size", "32"]
        flags += ["--micro-batch", "32", "--lr", str(lr), "--min-lr", str(lr)]
        flags += ["--eval-every", str(settings.COLLAPSE_EVAL)]
        return Run(
            name,
            ["train_opd.py", *settings.WORLDS[world]["preset"], *flags] + eval_and_seed(scale, s),
            cost=steps / 60,
        )

    n, K = collapse_steps(scale), max(scale["collapse_ks"])
    runs = [
        run(f"collapse/{loss}-k{k}-s{s}", loss, k, settings.COLLAPSE_LR, n * long)
        for loss in settings.COLLAPSE_LOSSES
        for k in scale["collapse_ks"]
        for long in [scale["collapse_long"] if loss in settings.LONG_LOSSES and k == K else 1]
    ]
    n2 = collapse_steps(scale, settings.COLLAPSE_LR2)
    return runs + [
        run(f"collapse/topk_plain-k{k}-lr2-s{s}", "topk_plain", k, settings.COLLAPSE_LR2, n2)
        for k in scale["collapse_ks"]
    ]


def protocol_eval(scale: dict, s: int) -> list:
    """docs/protocol.md's evaluation of seed s: the seed's part E_s of the eval split, eval_k samples a
    problem (avg@k; 4 at full scale)."""
    return ["--eval-part", f"E{s}", "--eval-k", str(scale["eval_k"])]


def opsd_runs(scale: dict, world: int, s: int) -> list:
    """Mechanism 3: OPSD with each of the world's privileged contexts; and per-instance PI on the
    student (docs/protocol.md §6). Every one evaluated by the protocol."""
    steps, long = scale["opsd_steps"], scale["opsd_student_steps"]
    presets = [(p, steps) for p in settings.WORLDS[world]["opsd"].values()]
    presets += [(p, long) for p in settings.WORLDS[world]["opsd_student"]]
    return [
        Run(
            f"opsd/{p}-s{s}",
            ["train_opsd.py", "--preset", p, "--steps", str(n), "--eval-every", str(n // 4)]
            + eval_and_seed(scale, s)
            + protocol_eval(scale, s),
            cost=n / 25,
        )
        for p, n in presets
    ]


def fix_runs(scale: dict, world: int, s: int) -> list:
    """Fixes 2 and 3 and the recipe: the SFT student, the GRPO teacher, the control teachers, each
    teacher's probe against the student (Mechanism 1, Fix 2's fit), the OPD variants and OPD's
    baseline at the same teacher cost (kd)."""
    W, seed = settings.WORLDS[world], ["--seed", str(s)]
    pair = [] if world == 1 else ["--student", W["student"], "--teacher", W["teacher"]]
    sft = ["train_sft.py", "--preset", "sft-student", "--n-train", str(scale["sft_n"])] + seed
    grpo = ["train_grpo.py", *W["preset"], "--steps", str(scale["grpo_steps"])]
    grpo += (
        ["--eval-every", str(scale["grpo_steps"] // 3)] + eval_and_seed(scale, s) + protocol_eval(scale, s)
    )
    runs = [
        Run(f"sft/s{s}", sft[:3] + pair + sft[3:], cost=scale["sft_n"] / 2000),
        Run(f"grpo/s{s}", grpo, cost=scale["grpo_steps"] / 30),
    ]
    recipe_student = f"sft/s{s}"
    if W["recipe_sft"] == "grpo":
        recipe_student = f"sft-grpo/s{s}"
        own_teacher = ["--student", W["student"], "--teacher", f"{{root}}/grpo/s{s}/ckpt"]
        runs.append(
            Run(
                recipe_student,
                sft[:3] + own_teacher + sft[3:],
                needs=(f"grpo/s{s}",),
                cost=scale["sft_n"] / 2000,
            )
        )
    teachers = {"big": (W["teacher"], ()), "grpo": (f"{{root}}/grpo/s{s}/ckpt", (f"grpo/s{s}",))}
    if world == 1:
        teachers["mid"] = ("{root}/teacher-mid/final", ("teacher-mid",))
    else:  # the far snapshot nearest this seed's GRPO teacher, chosen on the selection set; also in O
        for far, mid, select in (("far", "mid", "select"), ("far-o", "mido", "select-o")):
            runs.append(
                Run(
                    f"{select}/s{s}",
                    [
                        "-m",
                        "tiny_world",
                        "--match",
                        f"{{root}}/grpo/s{s}/ckpt",
                        "--far-run",
                        f"{{root}}/{far}",
                    ],
                    needs=(far, f"grpo/s{s}"),
                    cost=0.5,
                )
            )
            teachers[mid] = (f"{{root}}/{select}/s{s}/teacher", (f"{select}/s{s}",))
        teachers["bigo"] = ("{root}/far-o/final", ("far-o",))
    runs += [
        probe_run(scale, world, s, f"fit/{t}-s{s}", path, needs) for t, (path, needs) in teachers.items()
    ]
    # Mechanism 1 with the student's response cut at line ends (docs/protocol.md Table 2, C8)
    runs.append(probe_run(scale, world, s, f"fit/big-lines-s{s}", W["teacher"], (), ["--probe-cut", "lines"]))
    return runs + opd_runs(scale, world, s, teachers, recipe_student) + kd_runs(scale, world, s)


def probe_run(scale: dict, world: int, s: int, name: str, teacher: str, needs: tuple, extra=()) -> Run:
    """probes.py: the prefix probe (Mechanism 1) and the teacher's fit to the student (Fix 2) on the
    first probe_n problems of the seed's evaluation part E_s."""
    argv = ["probes.py", "--model", settings.WORLDS[world]["student"], "--probe-teacher", teacher]
    argv += ["--bench", "synthetic", "--synthetic-part", f"E{s}", "--synthetic-n", str(scale["probe_n"])]
    argv += ["--seed", str(s), "--quiet", *extra]
    return Run(name, argv, needs=needs, cost=scale["probe_n"] / 300, done="probe_summary.json")


def opd_runs(scale: dict, world: int, s: int, teachers: dict, recipe_student: str) -> list:
    """The OPD variants of settings.opd_variants(world); `teachers` maps a teacher to (its path, the
    runs that make it), `recipe_student` is the SFT run the recipe's students come from."""
    runs, batch = [], str(scale["opd_batch"])
    for v in settings.opd_variants(world):
        student, teacher, loss = settings.OPD_VARIANTS[v]
        argv = ["train_opd.py", *settings.WORLDS[world]["preset"], "--loss", loss]
        argv += ["--steps", str(scale["opd_steps"]), "--batch-size", batch, "--micro-batch", batch]
        argv += (
            ["--eval-every", str(scale["opd_steps"] // 3)] + eval_and_seed(scale, s) + protocol_eval(scale, s)
        )
        needs = ()
        if student == "sft":
            run = recipe_student if v.startswith("sft-grpo") else f"sft/s{s}"
            argv += ["--student", f"{{root}}/{run}/final"]
            needs += (run,)
        if teacher != "big":
            argv += ["--teacher", teachers[teacher][0]]
            needs += teachers[teacher][1]
        runs.append(
            Run(f"opd/{v}-s{s}", argv, needs=needs, cost=scale["opd_steps"] * scale["opd_batch"] / 3000)
        )
    return runs


def kd_runs(scale: dict, world: int, s: int) -> list:
    """OPD's baseline at the same teacher cost (docs/protocol.md §6, kd): SFT of the student on the
    big teacher's samples at the teacher tokens of `opd/raw-big-tail`, then its evaluation on the
    OPD run's held-out set (E_s, eval_k samples a problem)."""
    W, opd = settings.WORLDS[world], f"opd/raw-big-tail-s{s}"
    pair = [] if world == 1 else ["--student", W["student"], "--teacher", W["teacher"]]
    kd = ["train_sft.py", "--preset", "kd", *pair, "--tokens-of", f"{{root}}/{opd}", "--seed", str(s)]
    ev = ["eval_math.py", "--model", f"{{root}}/kd/s{s}/final", "--bench", "synthetic", "--preset", "tiny"]
    ev += ["--synthetic-part", f"E{s}", "--synthetic-n", str(scale["eval_n"]), "--k", str(scale["eval_k"])]
    ev += ["--seed", str(s), "--quiet"]
    return [
        Run(f"kd/s{s}", kd, needs=(opd,), cost=scale["opd_steps"] * scale["opd_batch"] / 6000),
        Run(f"kd-eval/s{s}", ev, needs=(f"kd/s{s}",), cost=scale["eval_n"] * scale["eval_k"] / 1200),
    ]


def only(runs: list, prefixes: list) -> list:
    """The runs whose names start with one of `prefixes`, and every run they need (transitively)."""
    by_name, keep = {r.name: r for r in runs}, set()
    todo = [r.name for r in runs if r.name.startswith(tuple(prefixes))]
    if not todo:
        raise errors.UserError(
            f"--only {' '.join(prefixes)}: no run of the plan starts so; its runs are "
            f"named like {', '.join(sorted({r.name.split('/')[0] + '/' for r in runs}))}"
        )
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += list(by_name[name].needs)
    return [r for r in runs if r.name in keep]
