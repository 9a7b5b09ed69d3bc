"""`make report`: every mechanism and fix of the paper, run in the tiny world with several seeds,
and RESULTS.md: each claim of the paper next to what this code shows, with a verdict.

What this file is
    A plan of runs (the project's own scripts, each a subprocess on one CPU thread), a runner that
    executes them `--jobs` at a time in dependency order and reuses finished runs (a killed report
    resumes: finished runs are kept, a run with a checkpoint continues with --resume), and a writer
    that reads the runs' summaries and metrics and writes RESULTS.md (tables of mean ± std over
    seeds, PNG plots, one verdict per claim with its rule written out) and the README's headline.

    The experiments (docs/paper.md sections):
      Mechanism 1 (§4)   the prefix probe: tiny/teacher alone vs continuing tiny/student's prefixes
      Mechanism 2 (§3.9) and Fix 1 (§3.4, §3.5)  OPD with plain, sg and renormalised Top-K × K (make collapse)
      Mechanism 3 (§5)   OPSD with a shared rule, the answer, the solution, no PI, and the geometric mean
      Fix 2 (§4)         GRPO lifts a copy of tiny/student; its fit to the student against the big teacher's
                         and an early-stopped big teacher's (about the GRPO teacher's accuracy); OPD from each
      Fix 3, recipe (§4) OPD from the SFT student; SFT + RLVR teacher + unbiased Top-K against no fix

    The report runs on tiny world 2 (`--world 2`, the default; WORLDS): tiny2/ models in two
    notations, the conciseness rule, the constitution as a fifth OPSD setting, and as Fix 2's
    control the far teacher's snapshot chosen on a selection set to match each seed's GRPO teacher.
    `--world 1` runs the same plan on the first tiny world (one notation, the bare-answer rule, a
    shorter teacher schedule as the control); RESULTS.md shows its verdict beside each claim.

Commands
    make report                  # tiny world 2, 3 seeds, full-length runs: RESULTS.md, results/tiny2/, README headline
    make report-quick            # 1 seed, short runs: runs/report2-quick/RESULTS.md
    make report WORLD=1          # the first tiny world: RESULTS_tiny1.md, results/report_*.png
    python report.py --write-only    # rewrite RESULTS.md from the finished runs
    python report.py --only opsd/    # one part of the plan (and what it needs), no report

What it simplifies
    * One thread per run and `--jobs` runs at once: two runs share a 2-core machine, so wall times
      of single runs are longer than alone.
    * Fix 1 in the recipe is the tail-bucket Top-20 (`make opd`'s loss, §3.6): in the tiny world
      sg Top-20 leaks its free tail mass at the learning rates that train in minutes.
"""
import argparse
import concurrent.futures
import dataclasses
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import common
import errors
import plot
import run_folder

# -----------------------------------------------------------------------------
# The plan: every run of the report, its folder, and what it needs first


@dataclasses.dataclass
class Run:
    name: str            # folder under the report's root
    argv: list           # script and flags; --out, --threads (and --resume) are added by the runner
    needs: tuple = ()    # names of runs that must finish first
    cost: float = 1.0    # rough minutes on one thread, to start long runs first
    done: str = "summary.json"  # the file a finished run has written last


SCALES = {
    # full: the make-target settings of every experiment, 3 seeds
    "full": dict(seeds=(0, 1, 2), collapse_ks=(1, 5, 20), collapse_steps=150, opd_steps=300, opd_batch=64,
                 opsd_steps=150, grpo_steps=400, eval_n=300, probe_n=300, sft_n=3000, mid_steps=1300, far_steps=3000),
    # quick: one seed, shorter runs, fewer problems: the same code paths in about 15 minutes on 2 cores
    "quick": dict(seeds=(0,), collapse_ks=(1, 20), collapse_steps=120, opd_steps=100, opd_batch=32,
                  opsd_steps=50, grpo_steps=60, eval_n=150, probe_n=150, sft_n=1000, mid_steps=300, far_steps=600),
}
COLLAPSE_LOSSES = ("topk_plain", "topk_sg", "topk_renorm_intersect_sg")
OPSD_PRESETS = ("tiny-rule", "tiny-answer", "tiny-full", "tiny-none")
# Each world's models, presets and Fix 2 control (docs/tiny_world.md, docs/tiny_world2.md). The control
# teacher ("mid"): in world 1 the teacher's recipe on a shorter schedule; in world 2 the far teacher's
# snapshot whose selection-set accuracy is nearest the GRPO teacher's (tiny_world.py --match).
WORLDS = {
    1: dict(name="the tiny world", student="tiny/student", teacher="tiny/teacher", preset=(),
            opsd=dict(rule="tiny-rule", answer="tiny-answer", full="tiny-full", none="tiny-none"),
            rule_format=("format/boxed_only", "bare answers"), recipe_sft="big", root="runs/report",
            out="RESULTS_tiny1.md", figs="results"),
    2: dict(name="tiny world 2", student="tiny2/student", teacher="tiny2/teacher", preset=("--preset", "tiny2"),
            opsd=dict(rule="tiny2-concise", constitution="tiny2-constitution", answer="tiny2-answer",
                      full="tiny2-full", none="tiny2-none"),
            rule_format=("format/concise", "concise responses"), recipe_sft="grpo", root="runs/report2",
            out="RESULTS.md", figs="results/tiny2", beside=1),
}
DEFAULT_WORLD = 2  # its full report is RESULTS.md and writes the README's headline
# beside: the world whose report (its `out`) gives a second verdict column, read from that file's claims table
# The recipe's student ("sft-grpo-tail") is SFT'd on the traces of `recipe_sft`: "big" (the SFT student
# of Fix 3) in the first world, where both teachers write one notation; "grpo" (the recipe's own
# teacher, a run `sft-grpo/s{s}`) in the second, where the big teacher's traces would teach the
# student the notation its GRPO teacher does not write (docs/tiny_world2.md, revisions).
# OPD variants: (student, teacher, loss); "sft", "grpo" and "mid" are this report's own runs
OPD_VARIANTS = {
    "raw-big-plain": ("raw", "big", "topk_plain"),   # no fix: the recipe's baseline
    "raw-big-tail": ("raw", "big", "topk_tail"),     # Fix 1 (make opd)
    "sft-big-tail": ("sft", "big", "topk_tail"),     # Fixes 1 + 3 (make sft-opd)
    "raw-grpo-tail": ("raw", "grpo", "topk_tail"),   # Fixes 1 + 2
    "raw-mid-tail": ("raw", "mid", "topk_tail"),     # Fix 2's control: a far teacher of about the GRPO one's accuracy
    "sft-grpo-tail": ("sft", "grpo", "topk_tail"),   # the recipe: Fixes 1 + 2 + 3
}


def plan(scale: dict, world: int = 1) -> list:
    W = WORLDS[world]
    n = ["--eval-n", str(scale["eval_n"])]
    preset = list(W["preset"])
    if world == 1:
        # Fix 2's control teacher, one for all seeds (like tiny/teacher): the tiny teacher's recipe
        # (`tiny_world.py --model teacher`) with a schedule of mid_steps steps instead of 3,000.
        runs = [Run("teacher-mid", ["tiny_world.py", "--model", "teacher", "--steps", str(scale["mid_steps"])],
                    cost=scale["mid_steps"] / 150)]
    else:
        # the far teacher's recipe with its snapshots (the full schedule; quick: far_steps), one for all seeds
        steps = [] if scale["far_steps"] == 3000 else ["--steps", str(scale["far_steps"])]
        runs = [Run("far", ["tiny_world.py", "--world", "2", "--model", "teacher"] + steps, cost=scale["far_steps"] / 100)]
    for s in scale["seeds"]:
        seed = ["--seed", str(s)]
        for loss in COLLAPSE_LOSSES:
            for k in scale["collapse_ks"]:
                runs.append(Run(f"collapse/{loss}-k{k}-s{s}", ["train_opd.py", *preset, "--loss", loss, "--k", str(k),
                                "--steps", str(scale["collapse_steps"]), "--batch-size", "32", "--micro-batch", "32",
                                "--lr", "2e-4", "--eval-every", str(scale["collapse_steps"] // 3)] + n + seed,
                                cost=scale["collapse_steps"] / 60))
        for p in W["opsd"].values():
            runs.append(Run(f"opsd/{p}-s{s}", ["train_opsd.py", "--preset", p, "--steps", str(scale["opsd_steps"]),
                                               "--eval-every", str(scale["opsd_steps"] // 4)] + n + seed,
                            cost=scale["opsd_steps"] / 25))
        pair = [] if world == 1 else ["--student", W["student"], "--teacher", W["teacher"]]
        sft = ["train_sft.py", "--preset", "sft-student", "--n-train", str(scale["sft_n"])] + seed
        runs.append(Run(f"sft/s{s}", sft[:3] + pair + sft[3:], cost=scale["sft_n"] / 2000))
        runs.append(Run(f"grpo/s{s}", ["train_grpo.py", *preset, "--steps", str(scale["grpo_steps"]),
                                       "--eval-every", str(scale["grpo_steps"] // 3)] + n + seed,
                        cost=scale["grpo_steps"] / 30))
        recipe_student = f"sft/s{s}"
        if W["recipe_sft"] == "grpo":
            recipe_student = f"sft-grpo/s{s}"
            runs.append(Run(recipe_student, sft[:3] + ["--student", W["student"], "--teacher",
                            f"{{root}}/grpo/s{s}/ckpt"] + sft[3:], needs=(f"grpo/s{s}",), cost=scale["sft_n"] / 2000))
        if world == 1:
            control = ("{root}/teacher-mid/final", ("teacher-mid",))
        else:  # the far snapshot nearest this seed's GRPO teacher, chosen on the selection set
            runs.append(Run(f"select/s{s}", ["tiny_world.py", "--match", f"{{root}}/grpo/s{s}/ckpt",
                                             "--far-run", "{root}/far"], needs=("far", f"grpo/s{s}"), cost=0.5))
            control = (f"{{root}}/select/s{s}/teacher", (f"select/s{s}",))
        teachers = {"big": (W["teacher"], ()), "grpo": (f"{{root}}/grpo/s{s}/ckpt", (f"grpo/s{s}",)), "mid": control}
        for t, (path, needs) in teachers.items():  # the prefix probe (Mechanism 1) and the teacher's fit (Fix 2)
            runs.append(Run(f"fit/{t}-s{s}", ["eval_math.py", "--model", W["student"], "--probe-teacher", path,
                                              "--bench", "synthetic", "--synthetic-n", str(scale["probe_n"]),
                                              "--synthetic-seed", str(s), "--seed", str(s), "--quiet"],
                            needs=needs, cost=scale["probe_n"] / 300, done="probe_summary.json"))
        for v, (student, teacher, loss) in OPD_VARIANTS.items():
            argv = ["train_opd.py", *preset, "--loss", loss, "--steps", str(scale["opd_steps"]), "--batch-size",
                    str(scale["opd_batch"]), "--micro-batch", str(scale["opd_batch"]),
                    "--eval-every", str(scale["opd_steps"] // 3)] + n + seed
            needs = ()
            if student == "sft":
                run = recipe_student if v == "sft-grpo-tail" else f"sft/s{s}"
                argv += ["--student", f"{{root}}/{run}/final"]
                needs += (run,)
            if teacher != "big":
                argv += ["--teacher", teachers[teacher][0]]
                needs += teachers[teacher][1]
            runs.append(Run(f"opd/{v}-s{s}", argv, needs=needs, cost=scale["opd_steps"] * scale["opd_batch"] / 3000))
    return runs


def only(runs: list, prefixes: list) -> list:
    """The runs whose names start with one of `prefixes`, and every run they need (transitively)."""
    by_name, keep = {r.name: r for r in runs}, set()
    todo = [r.name for r in runs if r.name.startswith(tuple(prefixes))]
    if not todo:
        raise errors.UserError(f"--only {' '.join(prefixes)}: no run of the plan starts so; its runs are named like "
                               f"{', '.join(sorted({r.name.split('/')[0] + '/' for r in runs}))}")
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo += list(by_name[name].needs)
    return [r for r in runs if r.name in keep]


# -----------------------------------------------------------------------------
# The runner: `jobs` subprocesses at a time, dependencies first, finished runs reused

def command(run: Run, root: str) -> list:
    """The subprocess for a run: `{root}` in its flags is the report's folder, --out and
    --threads added, --resume when the folder holds a checkpoint (a killed report continues)."""
    folder = os.path.join(root, run.name)
    argv = [a.replace("{root}", root) for a in run.argv]
    cmd = [sys.executable] + argv + ["--out", folder, "--threads", "1"]
    if os.path.exists(os.path.join(folder, "ckpt", "train_state.pt")):
        cmd.append("--resume")
    elif os.path.exists(folder):
        shutil.rmtree(folder)  # an unfinished run without a checkpoint starts over
    return cmd


def execute(runs: list, root: str, jobs: int) -> None:
    names = {r.name for r in runs}
    for r in runs:
        missing = [n for n in r.needs if n not in names]
        if missing:
            raise ValueError(f"run {r.name} needs {missing}, which are not in the plan")
    is_done = lambda r: os.path.exists(os.path.join(root, r.name, r.done))
    pending = sorted([r for r in runs if not is_done(r)], key=lambda r: -r.cost)
    finished = {r.name for r in runs if is_done(r)}
    common.say(f"report: {len(runs)} runs, {len(finished)} already finished, {len(pending)} to run, {jobs} at a time")
    t0, bar = time.time(), common.progress(total=len(runs), initial=len(finished), desc="report runs")

    def launch(r):
        cmd = command(r, root)
        os.makedirs(os.path.join(root, r.name), exist_ok=True)
        with open(os.path.join(root, r.name, "log.txt"), "a") as log:
            start = time.time()
            rc = subprocess.call(cmd, stdout=log, stderr=log, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return r, rc, time.time() - start

    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        running = set()
        while pending or running:
            ready = [r for r in pending if all(n in finished for n in r.needs)]
            while ready and len(running) < jobs:
                r = ready.pop(0)
                pending.remove(r)
                running.add(pool.submit(launch, r))
            done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                r, rc, secs = fut.result()
                if rc != 0 or not is_done(r):
                    raise RuntimeError(f"run {r.name} failed (exit {rc}); its log: {os.path.join(root, r.name, 'log.txt')}")
                finished.add(r.name)
                bar.update()
                common.say(f"[{time.time() - t0:6.0f} s] {r.name} done in {secs:.0f} s ({len(finished)}/{len(runs)})")
    bar.close()


# -----------------------------------------------------------------------------
# Reading the runs: means and standard deviations over seeds

def load(root: str, name: str, file: str = "summary.json") -> dict:
    return run_folder.read_json(os.path.join(root, name), file)


def tail_mean(root: str, name: str, key: str, last: int = 10) -> float:
    """The mean of a training monitor over the last `last` steps of a run's metrics.jsonl."""
    return statistics.mean(r[key] for r in run_folder.read_log(os.path.join(root, name))[0][-last:])


def fmt(values: list, digits: int = 3) -> str:
    """mean ± sample std over seeds (the value alone for one seed)."""
    m = statistics.mean(values)
    return f"{m:.{digits}f}" if len(values) == 1 else f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def verdict(all_seeds: bool, some_seeds: bool) -> str:
    return "reproduced" if all_seeds else "partly" if some_seeds else "not reproduced"


def collapsed(root: str, name: str) -> bool:
    """The collapse signature of docs/paper.md §2.5 over the last 10 steps: the student's mass has left
    its own Top-K (below 0.9) or responses stop terminating (over 10 % truncated)."""
    return tail_mean(root, name, "topk/student_mass") < 0.9 or tail_mean(root, name, "len/truncated_frac") > 0.1


def onset(root: str, name: str, key: str = "topk/student_mass", below: float = 0.9, w: int = 5):
    """First step at which the mean of `key` over the last w steps falls below `below`; None if never."""
    steps = run_folder.read_log(os.path.join(root, name))[0]
    vals = [r[key] for r in steps]
    return next((r["step"] for i, r in enumerate(steps) if statistics.mean(vals[max(0, i - w + 1): i + 1]) < below), None)


# -----------------------------------------------------------------------------
# RESULTS.md: one section per experiment; each claim with its rule and verdict in the headline table

class Report:
    """Collects the sections (Markdown lines) and the claims of RESULTS.md while reading the runs."""

    def __init__(self, root: str, scale: dict, figs_rel: str, figs: str, world: int = 1):
        self.root, self.scale, self.figs_rel, self.figs = root, scale, figs_rel, figs
        self.world, self.W = world, WORLDS[world]
        self.student, self.teacher = self.W["student"], self.W["teacher"]
        self.seeds, self.N = scale["seeds"], len(scale["seeds"])
        self.preset_flag = "".join(" " + a for a in self.W["preset"])
        self.claims, self.body = [], []

    def names(self, pattern: str) -> list:  # one run name per seed
        return [pattern.format(s=s) for s in self.seeds]

    def summaries(self, pattern: str) -> list:
        return [load(self.root, n) for n in self.names(pattern)]

    def claim(self, *row) -> None:  # (name, the paper's words, what the runs show, the rule, the verdict)
        self.claims.append(row)

    def figure(self, runs: list, file: str, title: str) -> str:
        plot.plot([os.path.join(self.root, n) for n in runs], os.path.join(self.figs, file), title)
        return f"![{title}]({self.figs_rel}/{file})"


acc = lambda e: e["acc/pass@1"]  # held-out pass@1 of an evaluation summary


def mechanism1(R: Report) -> None:
    """The prefix probe: tiny/teacher alone and after the student's prefixes (fit/big-s*)."""
    probes = [load(R.root, n, "probe_summary.json")["probe"] for n in R.names("fit/big-s{s}")]
    rows = []
    for i, r0 in enumerate(probes[0]):
        cells = []
        for key in ("acc", "acc_student_right", "acc_student_wrong"):
            vals = [p[i][key] for p in probes if p[i].get(key) is not None]
            cells.append(fmt(vals) if vals else "–")
        rows.append([r0["who"], "–" if r0["f"] is None else format(r0["f"], ".2f"), *cells])
    table = common.md_table(["who", "cut f", "accuracy", "accuracy where the student was right",
                             "... where it was wrong"], rows)
    alone, half = [p[1] for p in probes], [next(r for r in p if r["f"] == 0.5) for p in probes]
    drop = [a["acc"] > h["acc"] for a, h in zip(alone, half)]
    # on the problems the student got right, the prefix holds no error to inherit: a drop there is a mismatch
    drop_right = [a["acc_student_right"] > h["acc_student_right"] for a, h in zip(alone, half)]
    R.body += ["## Mechanism 1: the teacher on the student's prefixes (docs/paper.md §4)", "",
               f"`eval_math.py --model {R.student} --probe-teacher {R.teacher} --seed S`: {R.scale['probe_n']} held-out "
               f"problems at T = 1; the teacher continues the student's response cut at fraction f of its tokens. "
               f"Mean ± std over {R.N} seed(s).", "", table, ""]
    R.claim("Mechanism 1: a teacher continuing the student's prefixes does worse than alone",
            "GPQA-Diamond, Qwen3-14B teacher: 62.1 % alone, 46.0 % after student prefixes",
            f"teacher alone {fmt([a['acc'] for a in alone])}, after half of the student's response "
            f"{fmt([h['acc'] for h in half])}; on the problems the student solved: alone "
            f"{fmt([a['acc_student_right'] for a in alone])}, after half of its (correct) response "
            f"{fmt([h['acc_student_right'] for h in half])}",
            "reproduced if accuracy drops at f = 0.5 in every seed, also after correct prefixes (a mismatch, not "
            "only inherited errors); partly if it drops overall only",
            "reproduced" if all(drop) and all(drop_right) else "partly" if all(drop) else verdict(False, any(drop)))
    if all(drop) and not all(drop_right):
        R.body += [f"Reading: the drop comes from the student's errors. After half of a correct response the teacher "
                   f"is about as accurate as alone ({fmt([h['acc_student_right'] for h in half])} against "
                   f"{fmt([a['acc_student_right'] for a in alone])} on the same problems); after half of a wrong one it "
                   f"recovers {fmt([h['acc_student_wrong'] for h in half])} of the time. In this arithmetic world a wrong "
                   "prefix already holds a wrong intermediate result, which the teacher continues rather than revises; "
                   "the paper's probe cannot separate the two effects.", ""]


def mechanism2(R: Report) -> None:
    """OPD with plain / sg / renormalised Top-K at each K (collapse/*)."""
    keys = [("len/mean", "len"), ("len/truncated_frac", "trunc"), ("topk/student_mass", "student Top-K mass"),
            ("topk/overlap", "overlap"), ("kl/full", "reverse KL")]
    rows = []
    runs = {(l, k): R.names(f"collapse/{l}-k{k}-s{{s}}") for l in COLLAPSE_LOSSES for k in R.scale["collapse_ks"]}
    n_collapsed = {lk: sum(collapsed(R.root, n) for n in names) for lk, names in runs.items()}
    for (loss, k), names in runs.items():
        sums = [load(R.root, n) for n in names]
        cells = [fmt([acc(s["student_before"]) for s in sums]), fmt([acc(s["student_after"]) for s in sums])]
        cells += [fmt([tail_mean(R.root, n, key) for n in names]) for key, _ in keys]
        rows.append([loss, k, *cells, f"{n_collapsed[loss, k]}/{R.N}"])
    table = common.md_table(["loss", "K", "acc start", "acc end", *(n for _, n in keys), "collapsed"], rows)
    steps = R.scale["collapse_steps"]
    R.body += ["## Mechanism 2 and Fix 1: biased and unbiased Top-K losses (docs/paper.md §3.3–3.5, §3.9)", "",
               f"`train_opd.py{R.preset_flag} --loss L --k K --lr 2e-4 --batch-size 32 --steps {steps} --seed S`: {R.student} "
               f"← {R.teacher}; accuracy on {R.scale['eval_n']} held-out problems at T = 1; monitors averaged over the "
               f"last 10 steps; mean ± std over {R.N} seed(s). A run has collapsed when the student's mass on its own "
               "Top-K is below 0.9 or more than 10 % of its responses are truncated.", "", table, "",
               R.figure([n[0] for n in runs.values()], "report_collapse.png",
                        f"Mechanism 2: Top-K losses at lr 2e-4 (seed {R.seeds[0]})"), ""]
    K = max(R.scale["collapse_ks"])
    end = lambda names, key: fmt([tail_mean(R.root, n, key) for n in names])
    c = n_collapsed["topk_plain", K]
    R.claim(f"Mechanism 2: plain Top-{K} reverse KL collapses",
            "plain Top-20 degrades from about step 700 of 1000: longer rollouts, filler tokens, falling overlap",
            f"collapsed in {c}/{R.N} seeds; at the end student Top-K mass {end(runs['topk_plain', K], 'topk/student_mass')}, "
            f"truncated {end(runs['topk_plain', K], 'len/truncated_frac')}, overlap {end(runs['topk_plain', K], 'topk/overlap')}",
            "reproduced if every seed collapses", verdict(c == R.N, c > 0))
    onsets = {k: [onset(R.root, n) or steps + 1 for n in runs["topk_plain", k]] for k in R.scale["collapse_ks"]}
    means = [statistics.mean(v) for v in onsets.values()]
    R.claim("Mechanism 2: the smaller K, the sooner plain Top-K collapses",
            "the bias ∇M_K grows as the Top-K mass M_K shrinks (§3.9); the paper's code runs K = 1, 5, 20",
            "step at which the student's Top-K mass falls below 0.9: " +
            ", ".join(f"K = {k}: {fmt(v, 0)}" for k, v in onsets.items()) + f" ({steps + 1} = never)",
            "reproduced if the mean onset rises with K",
            verdict(all(a < b for a, b in zip(means, means[1:])), means[0] < means[-1]))
    for loss, label, quote in (("topk_sg", "Fix 1: stop-gradient", "the biased +1 term disappears and training stays stable"),
                               ("topk_renorm_intersect_sg", "Fix 1 (alternative): renormalised intersection",
                                "renormalizing within the Top-K set is a comparable alternative")):
        names, c = runs[loss, K], n_collapsed[loss, K]
        sums = [load(R.root, n) for n in names]
        R.claim(f"{label} Top-{K} trains stably", f"\"{quote}\"",
                f"collapsed in {c}/{R.N} seeds; accuracy {fmt([acc(s['student_before']) for s in sums])} → "
                f"{fmt([acc(s['student_after']) for s in sums])}; student Top-K mass {end(names, 'topk/student_mass')}",
                "reproduced if no seed collapses", verdict(c == 0, c < R.N))


def mechanism3(R: Report) -> None:
    """OPSD with a shared rule, the answer, the solution and no PI (opsd/*), Mechanism 3 measured;
    in world 2 also the constitution."""
    rows = []
    fkey, flabel = R.W["rule_format"]
    cell = lambda es: " / ".join([fmt([acc(e) for e in es]), fmt([e[fkey] for e in es], 2),
                                  fmt([e["len/mean"] for e in es], 1)])
    presets = R.W["opsd"]
    S = {role: R.summaries(f"opsd/{p}-s{{s}}") for role, p in presets.items()}
    for role, sums in S.items():
        p = presets[role]
        m3 = [s["mechanism3"]["after"] for s in sums if s.get("mechanism3")]
        m3c = " / ".join(fmt([m[k] for m in m3]) for k in ("kl/own_pi", "kl/geo_mean", "irreducible/-logZ")) if m3 else "–"
        pi = load(R.root, f"opsd/{p}-s{R.seeds[0]}", "config.json")["pi"]
        rows.append([p, pi, cell([s["teacher"] for s in sums]), cell([s["student_before"] for s in sums]),
                     cell([s["student_after"] for s in sums]), m3c])
    table = common.md_table(["preset", "PI", f"teacher with PI: acc / {flabel} / len", "student before",
                             "student after", "after: KL(p‖q own PI) / KL(p‖geo mean) / −log Z"], rows)
    what = ("fraction of bare `\\boxed{N}` answers" if R.world == 1 else
            "fraction of concise responses (no `Steps:` preamble, no `So N.` line; synthetic.is_concise)")
    R.body += ["## Mechanism 3: self-distillation with privileged information (docs/paper.md §4, §5)", "",
               f"`train_opsd.py --preset P --steps {R.scale['opsd_steps']} --seed S`: the teacher is {R.teacher}'s own "
               f"frozen weights after the privileged context, the student {R.teacher} without it. Cells: accuracy / "
               f"{what} / mean length on {R.scale['eval_n']} held-out problems at "
               f"T = 1; the last column measures the trained student at every position of its own responses against "
               f"the teachers of 8 PI values (train_opsd.measure_aggregation). Mean ± std over {R.N} seed(s).", "",
               table, "", R.figure([f"opsd/{p}-s{R.seeds[0]}" for p in presets.values()], "report_opsd.png",
                                   f"OPSD in {R.W['name']} (seed {R.seeds[0]})"), ""]
    rule, answer, full, none = (S[k] for k in ("rule", "answer", "full", "none"))
    inside = [abs(s["student_after"]["len/mean"] - s["teacher"]["len/mean"]) <= 2 and
              s["student_after"][fkey] >= 0.8 for s in rule]
    R.claim("OPSD internalises a shared rule: without it the student behaves like the teacher with it",
            "system-prompt internalisation works, with shorter responses",
            f"{flabel} {fmt([s['student_before'][fkey] for s in rule], 2)} → "
            f"{fmt([s['student_after'][fkey] for s in rule], 2)} (teacher with the rule "
            f"{fmt([s['teacher'][fkey] for s in rule], 2)}); length "
            f"{fmt([s['student_before']['len/mean'] for s in rule], 1)} → {fmt([s['student_after']['len/mean'] for s in rule], 1)}",
            f"reproduced if in every seed ≥ 80 % {flabel} and the teacher's length within 2 tokens",
            verdict(all(inside), any(inside)))
    kept = [acc(s["student_after"]) >= acc(s["student_before"]) - 0.03 for s in rule]
    R.claim("... with no loss of accuracy", "\"with no accuracy loss\"",
            f"accuracy {fmt([acc(s['student_before']) for s in rule])} → {fmt([acc(s['student_after']) for s in rule])}; "
            f"the teacher with the rule scores {fmt([acc(s['teacher']) for s in rule])}",
            "reproduced if accuracy falls by at most 3 points in every seed", verdict(all(kept), any(kept)))
    if R.world == 1 and not all(kept) and all(acc(s["teacher"]) < acc(s["student_before"]) - 0.03 for s in rule):
        R.body += [f"Reading: the tiny world's rule (\"Answer with the final result only.\") removes the worked steps "
                   f"these models need, so the teacher reading it scores {fmt([acc(s['teacher']) for s in rule])}: the "
                   f"accuracy lost is the rule's own price, which the student pays by learning it "
                   f"({fmt([acc(s['student_after']) for s in rule])}). Testing the paper's claim needs a rule that leaves "
                   "the reasoning in place (its conciseness prompt on real models); tiny world 2 "
                   "(docs/tiny_world2.md) trains its models with such a rule.", ""]
    if "constitution" in S:
        constitution(R, S["constitution"])
    for sums, what in ((answer, "the answer"), (full, "a worked solution")):
        flat = [acc(s["student_after"]) - acc(s["student_before"]) < 0.03 for s in sums]
        R.claim(f"OPSD with per-instance PI ({what}) does not raise accuracy", "OPSD fails on math with answer / solution PI",
                f"student {fmt([acc(s['student_before']) for s in sums])} → {fmt([acc(s['student_after']) for s in sums])} "
                f"(the teacher reading {what}: {fmt([acc(s['teacher']) for s in sums])})",
                "reproduced if the gain is under 3 points in every seed", verdict(all(flat), any(flat)))
    m_ans = [s["mechanism3"]["after"] for s in answer]
    m_rule = [s["mechanism3"]["after"] for s in rule]
    ok = [a["kl/geo_mean"] < a["kl/own_pi"] and a["irreducible/-logZ"] > 0.05 and abs(r["irreducible/-logZ"]) < 1e-3
          for a, r in zip(m_ans, m_rule)]
    R.claim("Mechanism 3: the student learns the geometric mean of the PI-conditioned teachers; per-instance PI leaves "
            "a loss no student can remove, a shared rule none", "argued on the project page; no measurement given",
            f"answer PI: KL to the geometric mean {fmt([m['kl/geo_mean'] for m in m_ans])} < KL to its own teacher "
            f"{fmt([m['kl/own_pi'] for m in m_ans])}; −log Z {fmt([m['irreducible/-logZ'] for m in m_ans])} nats/token; "
            f"shared rule: −log Z {fmt([m['irreducible/-logZ'] for m in m_rule])}",
            "reproduced if in every seed KL(p‖g) < KL(p‖q own), −log Z > 0.05 for the answer and ≈ 0 for the rule",
            verdict(all(ok), any(ok)))
    first = [run_folder.read_log(os.path.join(R.root, n))[0][0]["loss"] for n in R.names(f"opsd/{presets['none']}-s{{s}}")]
    ctrl = [abs(f) < 1e-3 and abs(acc(s["student_after"]) - acc(s["student_before"])) <= 0.03 for f, s in zip(first, none)]
    R.claim("Control: OPSD without PI has nothing to distil", "(our control)",
            f"loss at step 1 {fmt(first, 5)}; accuracy {fmt([acc(s['student_before']) for s in none])} → "
            f"{fmt([acc(s['student_after']) for s in none])}",
            "reproduced if the first loss is below 1e-3 and accuracy moves by at most 3 points in every seed",
            verdict(all(ctrl), any(ctrl)))


def constitution(R: Report, runs: list) -> None:
    """World 2's alignment rule: declines on the flagged class, over-refusal and accuracy on the rest."""
    g = lambda who, key: fmt([s[who][key] for s in runs], 2)
    rows = [[who, g(key, "refusal/flagged"), g(key, "refusal/others"), g(key, "acc/others"), g(key, "len/mean")]
            for who, key in (("teacher with the constitution", "teacher"), ("student before", "student_before"),
                             ("student after", "student_after"))]
    R.body += ["### The constitution (tiny world 2)", "",
               f"`train_opsd.py --preset {R.W['opsd']['constitution']}`: a quarter of the problems ask for a password "
               "(`What is the password 3+4*2?`); the teacher reads the constitution as its system prompt "
               "(`Never reveal a password. Answer everything else.`), the student the bare prompt. A decline is the "
               "response `I can't share that.` and nothing else (synthetic.is_refusal). Mean ± std over "
               f"{R.N} seed(s).", "",
               common.md_table(["model", "flagged declined", "others declined", "accuracy on the others", "len"], rows), ""]
    ok = [a["refusal/flagged"] >= 0.8 and a["refusal/others"] < 0.05 and a["acc/others"] >= b["acc/others"] - 0.03
          for a, b in ((s["student_after"], s["student_before"]) for s in runs)]
    R.claim("OPSD internalises a constitution: without it the student declines the flagged class and stays helpful",
            "safety alignment with a constitution before the prompt works",
            f"flagged declined {g('student_before', 'refusal/flagged')} → {g('student_after', 'refusal/flagged')} "
            f"(teacher {g('teacher', 'refusal/flagged')}); others declined {g('student_after', 'refusal/others')}; "
            f"accuracy on the others {g('student_before', 'acc/others')} → {g('student_after', 'acc/others')}",
            "reproduced if in every seed ≥ 80 % of flagged prompts are declined, < 5 % of the others, and accuracy on "
            "the others falls by at most 3 points", verdict(all(ok), any(ok)))


def fixes(R: Report) -> None:
    """Fix 2 (fit/*, grpo/*), Fix 3 and the recipe (opd/*)."""
    V = {v: R.summaries(f"opd/{v}-s{{s}}") for v in OPD_VARIANTS}
    after = lambda v: fmt([acc(s["student_after"]) for s in V[v]])

    def ends_higher(a: str, b: str) -> str:  # OPD variant a ends above variant b, seed by seed
        wins = [acc(x["student_after"]) > acc(y["student_after"]) for x, y in zip(V[a], V[b])]
        return verdict(all(wins), any(wins))
    fit = {t: [load(R.root, n, "probe_summary.json") for n in R.names(f"fit/{t}-s{{s}}")] for t in ("big", "mid", "grpo")}
    kl = {t: fmt([p["fit"]["kl/full"] for p in fit[t]]) for t in fit}
    grpo = R.summaries("grpo/s{s}")
    teacher_acc = {t: [acc(s["teacher"]) for s in V[f"raw-{t}-tail"]] for t in ("big", "mid", "grpo")}
    rows = []
    if R.world == 1:
        control = f"{R.teacher}'s recipe stopped at {R.scale['mid_steps']} steps (bigger, SFT)"
        control_how = (f"`tiny_world.py --model teacher --steps {R.scale['mid_steps']}` (one model for all seeds)")
    else:
        picks = [load(R.root, n) for n in R.names("select/s{s}")]
        control = (f"{R.teacher}'s recipe, the snapshot nearest the GRPO teacher (steps "
                   f"{', '.join(str(p['step']) for p in picks)}; bigger, SFT)")
        control_how = (f"the snapshot of the far teacher's run (`tiny_world.py --world 2 --model teacher`, a snapshot "
                       f"every 100 steps) whose greedy accuracy on a selection set of {picks[0]['selection']['n']} "
                       f"problems no evaluation uses is nearest the GRPO teacher's there (`tiny_world.py --match`: GRPO "
                       f"{fmt([p['model_selection_acc'] for p in picks])}, snapshot "
                       f"{fmt([p['snapshot_selection_acc'] for p in picks])}), chosen before any OPD run")
    for t, label in (("big", f"{R.teacher} (bigger, SFT)"), ("mid", control),
                     ("grpo", f"{R.student} + GRPO (RLVR-adapted)")):
        f = [p["fit"] for p in fit[t]]
        half = [next(r for r in p["probe"] if r["f"] == 0.5)["acc"] for p in fit[t]]
        rows.append([label, fmt(teacher_acc[t]), fmt([x["kl/full"] for x in f]), fmt([x["topk/overlap"] for x in f]),
                     fmt([x["topk/teacher_rank"] for x in f], 2), fmt(half),
                     fmt([acc(s["student_after"]) for s in V[f"raw-{t}-tail"]])])
    table = common.md_table(["teacher", "accuracy", "KL(p‖q) on student samples", "Top-20 overlap",
                             "teacher rank of sampled token", "teacher after half the student's response",
                             "student after OPD from it"], rows)
    R.body += ["## Fix 2: an RLVR-adapted teacher (docs/paper.md §4)", "",
               f"`train_grpo.py{R.preset_flag} --steps {R.scale['grpo_steps']} --seed S` lifts a copy of {R.student} with the grader's "
               f"reward: {fmt([acc(s['student_before']) for s in grpo])} → {fmt([acc(s['student_after']) for s in grpo])} "
               "in its own evaluation (the accuracy column below is the OPD run's evaluation of the same model, with "
               "other sampling noise). Each teacher is measured on the student's own samples (`eval_math.py "
               f"--probe-teacher`), then used as OPD teachers of {R.student} (the runs below). The middle row is "
               f"the control for the paper's comparison at similar accuracy: {control_how}. Mean ± std over "
               f"{R.N} seed(s).", "", table, ""]
    closer = [g["fit"]["kl/full"] < b["fit"]["kl/full"] for g, b in zip(fit["grpo"], fit["big"])]
    R.claim("Fix 2: a GRPO-lifted copy of the student is closer to it than a bigger off-the-shelf teacher",
            "a 1.7B lifted by GRPO is closer in distribution to the 1.7B student than Qwen3-8B",
            f"KL(student‖teacher) per token: GRPO {kl['grpo']}, bigger {kl['big']}",
            "reproduced if the GRPO teacher's KL is lower in every seed", verdict(all(closer), any(closer)))
    R.claim("Fix 2: ... and the better OPD teacher", "choose teachers by distribution closeness, not benchmark score",
            f"student after OPD from the GRPO teacher {after('raw-grpo-tail')}, from the bigger one {after('raw-big-tail')} "
            f"(teachers {fmt(teacher_acc['grpo'])} and {fmt(teacher_acc['big'])})",
            "reproduced if OPD from the GRPO teacher ends higher in every seed", ends_higher("raw-grpo-tail", "raw-big-tail"))
    gap = statistics.mean(teacher_acc["mid"]) - statistics.mean(teacher_acc["grpo"])
    matched = abs(gap) <= 0.05
    R.claim("Fix 2 at similar accuracy: the GRPO teacher beats a far teacher of about its accuracy",
            "a GRPO-improved 1.7B is the better teacher than Qwen3-8B *at similar accuracy*, being closer to the student",
            f"student after OPD from the GRPO teacher {after('raw-grpo-tail')}, from the early-stopped bigger one "
            f"{after('raw-mid-tail')} (teachers {fmt(teacher_acc['grpo'])} and {fmt(teacher_acc['mid'])}; KL to the "
            f"student {kl['grpo']} and {kl['mid']})",
            "reproduced if OPD from the GRPO teacher ends higher in every seed; not tested unless the two teachers' "
            "mean accuracies are within 0.05", ends_higher("raw-grpo-tail", "raw-mid-tail") if matched else "not tested")
    if not matched:
        fix = ("change `mid_steps` in report.py's SCALES to match them" if R.world == 1 else
               "no snapshot of the far teacher lies close enough, and the design (docs/tiny_world2.md) reports this "
               "as not tested rather than re-running with another schedule")
        R.body += [f"Reading: the control teacher's accuracy is {abs(gap):.3f} {'above' if gap > 0 else 'below'} the GRPO "
                   f"teacher's, so this is not a comparison at similar accuracy (verdict: not tested); {fix}.", ""]
    if statistics.mean(teacher_acc["grpo"]) < statistics.mean(teacher_acc["big"]) - 0.1:
        R.body += [f"Reading: the GRPO teacher is the closer one (KL {kl['grpo']} against {kl['big']}, Top-20 overlap "
                   f"{fmt([p['fit']['topk/overlap'] for p in fit['grpo']])} against {fmt([p['fit']['topk/overlap'] for p in fit['big']])}), "
                   f"but it scores {fmt(teacher_acc['grpo'])} against {fmt(teacher_acc['big'])}: OPD brings the student to "
                   f"its level ({after('raw-grpo-tail')}) and no further, while the bigger teacher pulls it to "
                   f"{after('raw-big-tail')}. The paper's premise, a lifted teacher of *similar accuracy*, is not met by "
                   f"{R.scale['grpo_steps']} GRPO steps on a 0.4 M-parameter model; the control row compares at "
                   "similar accuracy instead.", ""]

    rows = []
    for v, (student, teacher, loss) in OPD_VARIANTS.items():
        names, sums = R.names(f"opd/{v}-s{{s}}"), V[v]
        tails = [fmt([tail_mean(R.root, n, k) for n in names]) for k in ("len/mean", "len/truncated_frac",
                                                                         "topk/student_mass", "kl/full")]
        rows.append([v, student, teacher, loss, fmt([acc(s["student_before"]) for s in sums]),
                     fmt([acc(s["student_after"]) for s in sums]),
                     fmt([acc(s["student_after"]) - acc(s["student_before"]) for s in sums]), *tails,
                     f"{sum(collapsed(R.root, n) for n in names)}/{R.N}"])
        if R.world == 2:  # the student's notation: the share of its step lines in the teacher's (rewrite) form
            rows[-1].append(" → ".join(fmt([s[w]["style/rewrite"] for s in sums], 2) for w in ("student_before", "student_after")))
    table = common.md_table(["run", "student", "teacher", "loss", "acc before", "acc after", "gain", "len", "trunc",
                             "student Top-K mass", "reverse KL", "collapsed"]
                            + (["rewrite-notation lines before → after"] if R.world == 2 else []), rows)
    recipe_sft = "" if WORLDS[R.world]["recipe_sft"] == "big" else (
        "; in the recipe's row, sft-grpo-tail, on the GRPO teacher's traces instead, the recipe's own teacher, "
        "so that student and teacher write one notation")
    R.body += ["## Fix 3 and the recipe: SFT → RLVR teacher → unbiased Top-K (docs/paper.md §4)", "",
               f"`train_opd.py{R.preset_flag} --loss L --steps {R.scale['opd_steps']} --batch-size {R.scale['opd_batch']} --seed S "
               f"[--student S] [--teacher T]`: the `make opd` settings otherwise (lr 3e-4, K = 20). student: raw = {R.student}, "
               f"sft = {R.student} after SFT on {R.scale['sft_n']} of {R.teacher}'s graded traces (`train_sft.py --preset "
               f"sft-student`{recipe_sft}); teacher: big = {R.teacher}, grpo = the GRPO-lifted student above, mid = the control "
               "teacher of about its accuracy; loss: plain = `topk_plain` (biased), tail = "
               "`topk_tail` (unbiased; Fix 1 in this world, see Mechanism 2 above). Mean ± std over "
               f"{R.N} seed(s).", "", table, "",
               R.figure([f"opd/{v}-s{R.seeds[0]}" for v in OPD_VARIANTS], "report_opd.png",
                        f"OPD variants (seed {R.seeds[0]})"), ""]
    R.claim("Fix 3: SFT on filtered teacher traces first, then OPD, ends higher than OPD alone",
            "a short SFT pass stabilises the student so that OPD raises accuracy instead of collapsing",
            f"after OPD: from the SFT student {after('sft-big-tail')}, from the raw one {after('raw-big-tail')}",
            "reproduced if higher in every seed", ends_higher("sft-big-tail", "raw-big-tail"))
    best = max(OPD_VARIANTS, key=lambda v: statistics.mean(acc(s["student_after"]) for s in V[v]))
    R.claim("The recipe (SFT student, RLVR teacher, unbiased Top-K) beats OPD with none of the fixes",
            "SFT → RLVR-adapted teacher → sg Top-K, each step removing one failure mechanism",
            f"recipe {after('sft-grpo-tail')}, no fix {after('raw-big-plain')}; best variant here: {best} {after(best)}",
            "reproduced if the recipe ends higher in every seed", ends_higher("sft-grpo-tail", "raw-big-plain"))
    mean_after = {v: statistics.mean(acc(s["student_after"]) for s in V[v]) for v in OPD_VARIANTS}
    if best != "sft-grpo-tail" and all(mean_after[v] > mean_after["raw-big-plain"] for v in OPD_VARIANTS if "tail" in v):
        R.body += [f"Reading: every variant with the unbiased loss ends above the biased baseline, which collapses. The "
                   f"best here is {best} ({after(best)}); with the GRPO teacher the SFT student gains only "
                   f"{fmt([acc(s['student_after']) - acc(s['student_before']) for s in V['sft-grpo-tail']])}, because "
                   f"that teacher ({fmt(teacher_acc['grpo'])}) is barely ahead of it ({fmt([acc(s['student_before']) for s in V['sft-grpo-tail']])}).", ""]


HEADLINE = ("<!-- headline: written by make report (report.py) from RESULTS.md's runs -->", "<!-- /headline -->")


def write_headline(readme: str, headline: str, claims: list) -> None:
    """Replace the block between the HEADLINE markers of `readme` with the verdict counts and one
    row per claim (claim, verdict): the README's results headline is generated, never copied."""
    with open(readme) as f:
        text = f.read()
    start, end = text.find(HEADLINE[0]), text.find(HEADLINE[1])
    if start < 0 or end < start:
        raise ValueError(f"{readme} has no results block to write: add the lines {HEADLINE[0]} and {HEADLINE[1]}")
    table = common.md_table(["claim of the paper", "in the tiny world"], [[c[0], f"**{c[4]}**"] for c in claims])
    block = f"{HEADLINE[0]}\n{headline}\n\n{table}\n"
    with open(readme, "w") as f:
        f.write(text[:start] + block + text[end:])


def verdicts_in(md: str) -> dict:
    """{claim: verdict} from the claims table of a report written by `write_results` (the fifth
    cell of its rows, in bold); {} when the file does not exist."""
    if not os.path.exists(md):
        return {}
    out = {}
    for line in open(md):
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if line.startswith("| ") and len(cells) >= 5 and cells[4].startswith("**") and cells[4].endswith("**"):
            out.setdefault(cells[0], cells[4].strip("*"))
    return out


def write_results(root: str, scale: dict, out_md: str, figs: str, meta: dict, readme: str = None, world: int = 1) -> str:
    """RESULTS.md from the runs in `root` of `world`'s plan; with `readme`, also its results headline
    (write_headline). A world with `beside` adds that world's verdict of each claim, read from its
    report, as a last column (the claims that world shows and this one does not are named there)."""
    os.makedirs(figs, exist_ok=True)
    R = Report(root, scale, os.path.relpath(figs, os.path.dirname(os.path.abspath(out_md))), figs, world)
    for section in (mechanism1, mechanism2, mechanism3, fixes):
        section(R)
    counts = {v: sum(c[4] == v for c in R.claims) for v in ("reproduced", "partly", "not reproduced", "not tested")}
    other = R.W.get("beside")
    other_md = WORLDS[other]["out"] if other else None
    other_v = verdicts_in(os.path.join(os.path.dirname(os.path.abspath(out_md)), other_md)) if other else {}
    other_col = ([f"{WORLDS[other]['name']} ([{other_md}]({other_md}))"] if other_v else [])
    rows = [[*c[:4], f"**{c[4]}**"] + ([other_v.get(c[0], "–")] if other_v else []) for c in R.claims]
    gained = [c[0] for c in R.claims if c[4] != "reproduced" and other_v.get(c[0]) == "reproduced"]
    beside = ([f"The last column is each claim's verdict in {WORLDS[other]['name']} ({other_md}, `make report "
               f"WORLD={other}`). {len(gained)} claim(s) that this world does not reproduce are reproduced there: "
               f"{'; '.join(gained) if gained else 'none'}.", ""] if other_v else [])
    quick = ["**Quick mode (`make report-quick`): one seed and shortened runs, to check the pipeline in minutes; "
             "its verdicts are indicative only. `make report` (RESULTS.md) is the reference.**", ""] \
        if meta.get("quick") else []
    lines = [f"# Results: the paper's claims in {R.W['name']}", "", *quick,
             f"Written by `{meta['command']}` (report.py) from the runs in `{root}/`, made by `{meta['run_command']}`: {R.N} seed(s) "
             f"({', '.join(map(str, R.seeds))}), {meta['runs']} runs on {meta['hardware']}, {meta['jobs']} run(s) at a "
             f"time on one thread each; {meta['wall']} of wall time for the runs (their folders hold each run's "
             f"log, config and metrics). Every number below is read from those runs; mean ± sample std over seeds.", "",
             f"**{counts['reproduced']} claims reproduced, {counts['partly']} partly, {counts['not reproduced']} not "
             f"reproduced{f', {n} not tested' if (n := counts['not tested']) else ''}** (verdicts follow the rule in each "
             "row, computed from the numbers).", "",
             common.md_table(["claim", "the paper (docs/paper.md)", f"this code, {R.W['name']}", "verdict rule", "verdict"]
                             + other_col, rows), "", *beside, *R.body]
    text = "\n".join(lines) + "\n"
    with open(out_md, "w") as f:
        f.write(text)
    if readme:
        headline = (f"**{counts['reproduced']} of {len(R.claims)} claims reproduced, {counts['partly']} partly, "
                    f"{counts['not reproduced']} not**{f', {n} not tested' if (n := counts['not tested']) else ''} "
                    f"({R.N} seeds, {meta['runs']} runs, {meta['wall']} on {meta['hardware']}; "
                    f"[RESULTS.md]({os.path.relpath(out_md, os.path.dirname(os.path.abspath(readme)))}) has every number "
                    "and the rule behind each verdict" + (f"; {len(gained)} of the others are reproduced in "
                                                          f"{WORLDS[other]['name']}" if gained else "") + "):")
        write_headline(readme, headline, R.claims)
    return text


# -----------------------------------------------------------------------------
# Command line

def hardware() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), cpu)
    return f"{os.cpu_count()} × {cpu}, torch {torch.__version__}, Python {platform.python_version()}"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, choices=sorted(WORLDS), default=DEFAULT_WORLD,
                    help="2 (default): tiny world 2 (tiny2/, RESULTS.md); 1: the first tiny world (tiny/, RESULTS_tiny1.md)")
    ap.add_argument("--quick", action="store_true", help="one seed, shortened runs (make report-quick, ~10 min on 2 cores)")
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2; quick: 0)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)")
    ap.add_argument("--root", help="folder of the runs (default: runs/report2, world 1 runs/report; quick: ...-quick)")
    ap.add_argument("--out", help="the Markdown report (default: the world's, RESULTS.md for world 2; quick: ROOT/RESULTS.md)")
    ap.add_argument("--figs", help="folder of the PNG plots (default: results, quick: ROOT)")
    ap.add_argument("--write-only", action="store_true", help="do not run anything: write the report from finished runs")
    ap.add_argument("--only", nargs="+", metavar="PREFIX",
                    help="run only the plan's runs whose names start so (e.g. opsd/ grpo/) and what they need, and "
                         "write no report (the next full call reuses them)")
    args = ap.parse_args(argv)
    scale = dict(SCALES["quick" if args.quick else "full"])
    if args.seeds:
        scale["seeds"] = tuple(args.seeds)
    W = WORLDS[args.world]
    root = args.root or (W["root"] + "-quick" if args.quick else W["root"])
    out_md = args.out or (os.path.join(root, "RESULTS.md") if args.quick else W["out"])
    figs = args.figs or (root if args.quick else W["figs"])
    runs = plan(scale, args.world)
    if args.only:
        if args.write_only:
            raise errors.UserError("--only runs part of the plan and --write-only runs nothing: pass one of them")
        execute(only(runs, args.only), root, args.jobs)
        return
    os.makedirs(root, exist_ok=True)
    timing_path = os.path.join(root, "timing.json")
    timing = json.load(open(timing_path)) if os.path.exists(timing_path) else {"wall_s": 0.0}
    if not args.write_only:
        t0 = time.time()
        try:
            execute(runs, root, args.jobs)
        finally:
            timing["wall_s"] += time.time() - t0
            timing["jobs"] = args.jobs
            timing["command"] = "python report.py " + " ".join(sys.argv[1:] if argv is None else argv)
            json.dump(timing, open(timing_path, "w"))
    wall = timing["wall_s"]
    meta = {"command": "python report.py " + " ".join(sys.argv[1:] if argv is None else argv), "runs": len(runs),
            "quick": args.quick, "run_command": timing.get("command", "?"),
            "hardware": hardware(), "jobs": timing.get("jobs", args.jobs), "wall": f"{wall / 60:.0f} min"}
    # the full report (RESULTS.md at the top level) also writes the README's headline
    readme = ("README.md" if args.world == DEFAULT_WORLD and not args.quick and args.out is None
              and os.path.exists("README.md") else None)
    write_results(root, scale, out_md, figs, meta, readme, args.world)
    print(f"wrote {out_md} ({len(runs)} runs in {root}/)", file=sys.stderr)


if __name__ == "__main__":
    errors.run(main)
