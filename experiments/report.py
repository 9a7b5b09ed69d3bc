"""`make report`: every mechanism and fix of the paper, run in the tiny world with several seeds,
and RESULTS.md: each claim of the paper next to what this code shows, with a verdict.

What this file is
    The plan of runs (experiments/plan.py: the project's own scripts, each a subprocess on one CPU
    thread), a runner that executes them `--jobs` at a time in dependency order and reuses finished
    runs (a killed report resumes: finished runs are kept, a run with a checkpoint continues with
    --resume; a failed run stops only the runs that need it, and the report ends naming both),
    and the command line, which then has experiments/results.py read the runs' summaries and
    metrics into RESULTS.md (tables of mean ± std over seeds, PNG plots, one verdict per claim
    with its rule written out) and the README's headline. The runs' settings are in
    experiments/settings.py; the sections of RESULTS.md and their claims in
    experiments/mechanisms.py and experiments/fixes.py.

    The experiments (docs/paper.md sections):
      Mechanism 1 (§4)   the prefix probe: tiny/teacher alone vs continuing tiny/student's prefixes
      Mechanism 2 (§3.9) and Fix 1 (§3.4, §3.5)  OPD with plain, sg and renormalised Top-K × K
                         (make collapse)
      Mechanism 3 (§5)   OPSD with a shared rule, the answer, the solution, no PI, and the geometric mean;
                         the answer and the solution on the student (docs/protocol.md §6)
      Fix 2 (§4)         GRPO lifts a copy of tiny/student; its fit to the student against the big
                         teacher's and an early-stopped big teacher's (about the GRPO teacher's
                         accuracy); OPD from each; in world 2 also from the far teacher retrained in
                         the student's notation (far-o) and its matched snapshot
      Fix 3, recipe (§4) OPD from the SFT student; SFT + RLVR teacher + unbiased Top-K against no fix
                         and against each leave-one-out variant
      OPD's baseline     SFT on the big teacher's samples at the teacher tokens of `make opd`'s run (kd)

    Every run but Mechanism 2's reads docs/protocol.md's evaluation: the seed's part E_s of the eval
    split, 4 samples a problem (plan.protocol_eval).

    The report runs on tiny world 2 (`--world 2`, the default; settings.WORLDS): tiny2/ models in
    two notations, the conciseness rule, the constitution as a fifth OPSD setting, and as Fix 2's
    control the far teacher's snapshot chosen on a selection set to match each seed's GRPO teacher.
    `--world 1` runs the same plan on the first tiny world (one notation, the bare-answer rule, a
    shorter teacher schedule as the control); RESULTS.md shows its verdict beside each claim.

Commands (from the project root: the trainers run as `python train_opd.py ...` there)
    make report                  # tiny world 2, 3 seeds, full-length runs: RESULTS.md, results/tiny2/,
                                 # README headline
    make report-quick            # 1 seed, short runs: runs/report2-quick/RESULTS.md
    make report WORLD=1          # the first tiny world: RESULTS_tiny1.md, results/report_*.png
    python -m experiments.report --write-only    # rewrite RESULTS.md from the finished runs
    python -m experiments.report --only opsd/    # one part of the plan (and what it needs), no report
    python -m experiments.report --section mechanism2   # rewrite one section from its runs (make collapse)
    python -m experiments.report --tables    # docs/protocol.md's Tables 1 and 2 from the runs so far,
                                             # and the README's headline from every report's runs

What it simplifies
    * One thread per run and `--jobs` runs at once: two runs share a 2-core machine, so wall times
      of single runs are longer than alone.
    * Fix 1 in the recipe is the tail-bucket Top-20 (`make opd`'s loss, §3.6): in the tiny world
      sg Top-20 leaks its free tail mass at the learning rates that train in minutes.
"""

import argparse
import concurrent.futures
import json
import os
import platform
import subprocess
import sys
import time

import common
import errors
import folders
from experiments import headline, plan, results, settings

COMMAND = "python -m experiments.report"  # how RESULTS.md names the command that wrote it

# -----------------------------------------------------------------------------
# The runner: `jobs` subprocesses at a time, dependencies first, finished runs reused


def command(run: plan.Run, root: str) -> list:
    """The subprocess for a run: `{root}` in its flags is the report's folder, --out and
    --threads added, --resume when the folder holds a checkpoint (a killed report continues; a
    run killed before its first checkpoint starts over by itself). Its script path is relative:
    the report runs from the project root."""
    folder = os.path.join(root, run.name)
    argv = [a.replace("{root}", root) for a in run.argv]
    cmd = [sys.executable] + argv + ["--out", folder, "--threads", "1"]
    if folders.resumable(folder):
        cmd.append("--resume")
    return cmd


def log_path(run: plan.Run, root: str) -> str:
    """Where a run's output goes: beside its folder, which only the run itself writes."""
    return os.path.join(root, run.name + ".log")


def execute(runs: list, root: str, jobs: int) -> None:
    names = {r.name for r in runs}
    for r in runs:
        missing = [n for n in r.needs if n not in names]
        if missing:
            raise ValueError(f"run {r.name} needs {missing}, which are not in the plan")
    is_done = lambda r: os.path.exists(os.path.join(root, r.name, r.done))
    pending = sorted([r for r in runs if not is_done(r)], key=lambda r: -r.cost)
    live = [r.name for r in pending if folders.is_locked(os.path.join(root, r.name))]
    if live:
        raise errors.UserError(
            f"{os.path.join(root, live[0])}: another live process is running it ({len(live)} such runs); "
            "wait for it to end, or run another part of the plan (--only)"
        )
    finished = {r.name for r in runs if is_done(r)}
    common.say(
        f"report: {len(runs)} runs, {len(finished)} already finished, {len(pending)} to run, {jobs} at a time"
    )
    t0, bar = time.time(), common.progress(total=len(runs), initial=len(finished), desc="report runs")

    def launch(r):
        cmd = command(r, root)
        os.makedirs(os.path.dirname(log_path(r, root)), exist_ok=True)
        with open(log_path(r, root), "a") as log:
            start = time.time()
            rc = subprocess.call(cmd, stdout=log, stderr=log, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return r, rc, time.time() - start

    failed, skipped = [], []  # a failed run stops only the runs that need it; the others go on
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        running = set()
        while pending or running:
            blocked = [r for r in pending if any(n in failed or n in skipped for n in r.needs)]
            for r in blocked:
                pending.remove(r)
                skipped.append(r.name)
            ready = [r for r in pending if all(n in finished for n in r.needs)]
            while ready and len(running) < jobs:
                r = ready.pop(0)
                pending.remove(r)
                running.add(pool.submit(launch, r))
            if not running:
                break
            done, running = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                r, rc, secs = fut.result()
                if rc != 0 or not is_done(r):
                    failed.append(r.name)
                    common.say(f"run {r.name} failed (exit {rc}); its log: {log_path(r, root)}")
                    continue
                finished.add(r.name)
                bar.update()
                common.say(
                    f"[{time.time() - t0:6.0f} s] {r.name} done in {secs:.0f} s ({len(finished)}/{len(runs)})"
                )
    bar.close()
    if failed:
        logs = [log_path(r, root) for r in runs if r.name in failed]
        raise RuntimeError(
            f"{len(failed)} run(s) failed: {', '.join(failed)} (their logs: {', '.join(logs)}); not "
            f"started because they need one: {', '.join(skipped) or 'none'}; every other run finished"
        )


# -----------------------------------------------------------------------------
# Command line


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next(
            (l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), cpu
        )
    return f"{os.cpu_count()} × {cpu}, torch {torch.__version__}, Python {platform.python_version()}"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=COMMAND,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument(
        "--world",
        type=int,
        choices=sorted(settings.WORLDS),
        default=settings.DEFAULT_WORLD,
        help="2 (default): tiny world 2 (tiny2/, RESULTS.md); 1: the first tiny world (tiny/, "
        "RESULTS_tiny1.md)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="one seed, shortened runs (make report-quick, ~10 min on 2 cores)",
    )
    ap.add_argument("--seeds", type=int, nargs="+", help="seeds (default: 0 1 2; quick: 0)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time, one CPU thread each (default: 2)")
    ap.add_argument(
        "--root", help="folder of the runs (default: runs/report2, world 1 runs/report; quick: ...-quick)"
    )
    ap.add_argument(
        "--out",
        help="the Markdown report (default: the world's, RESULTS.md for world 2; quick: ROOT/RESULTS.md)",
    )
    ap.add_argument("--figs", help="folder of the PNG plots (default: results, quick: ROOT)")
    ap.add_argument(
        "--write-only", action="store_true", help="do not run anything: write the report from finished runs"
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="PREFIX",
        help="run only the plan's runs whose names start so (e.g. opsd/ grpo/) and what they "
        "need, and write no report (the next full call reuses them)",
    )
    ap.add_argument(
        "--tables",
        action="store_true",
        help="run nothing: print docs/protocol.md's Tables 1 and 2 from the runs finished so far, and "
        "the README's headline (§7) from every report under runs/",
    )
    ap.add_argument(
        "--section",
        choices=sorted(results.REWRITABLE),
        help="run nothing: rewrite only this section of the world's report, and its rows of the "
        "claims table, from that section's finished runs (mechanism2: docs/collapse.md's protocol, "
        "make collapse); the other sections stay as they are",
    )
    return ap


def rewrite_section(args, runs: list, root: str, scale: dict, out_md: str, figs: str, readme: str) -> None:
    """--section: the named section rewritten from its runs alone, once they are all finished."""
    section, prefixes, part = results.REWRITABLE[args.section]
    mine = [r for r in runs if r.name.startswith(part)]
    missing = [r.name for r in mine if not os.path.exists(os.path.join(root, r.name, r.done))]
    if missing:
        raise errors.UserError(
            f"--section {args.section}: {len(missing)} of its {len(mine)} runs are not finished in "
            f"{root}/ (the first: {missing[0]}); run them first: {COMMAND} --world {args.world} --only {part}"
        )
    wall = sum(json.load(open(os.path.join(root, r.name, r.done))).get("wall_s", 0.0) for r in mine)
    seeds = ", ".join(map(str, scale["seeds"]))
    note = (
        f"and its claims: rewritten by `{COMMAND} --world {args.world} --section {args.section}` from "
        f"its {len(mine)} runs in `{root}/{part}` (seeds {seeds}; {wall / 3600:.1f} h of run time, the "
        f"sum of the runs' own, on {hardware()}), made by `{COMMAND} --world {args.world} --only {part}`. "
        "The other sections are from the runs named above."
    )
    verdicts = results.write_section(root, scale, out_md, figs, section, prefixes, note, readme, args.world)
    print(f"rewrote {args.section} in {out_md}: {len(verdicts)} claims", file=sys.stderr)


def read_timing(path: str) -> dict:
    """The report's running totals (its runs' wall time, jobs, command); a missing or torn file
    starts them again, with a word."""
    fresh = {"wall_s": 0.0}
    if not os.path.exists(path):
        return fresh
    try:
        with open(path) as f:
            timing = json.load(f)
        if not isinstance(timing, dict) or not isinstance(timing.get("wall_s"), (int, float)):
            raise ValueError
        return timing
    except (ValueError, UnicodeDecodeError):
        common.say(f"{path} is torn; the report's wall time counts from now")
        return fresh


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    scale = dict(settings.SCALES["quick" if args.quick else "full"])
    if args.seeds:
        scale["seeds"] = tuple(args.seeds)
    W = settings.WORLDS[args.world]
    root = args.root or (W["root"] + "-quick" if args.quick else W["root"])
    out_md = args.out or (os.path.join(root, "RESULTS.md") if args.quick else W["out"])
    figs = args.figs or (root if args.quick else W["figs"])
    runs = plan.plan(scale, args.world)
    # the full report (RESULTS.md at the top level) also writes the README's headline
    readme = (
        "README.md"
        if args.world == settings.DEFAULT_WORLD
        and not args.quick
        and args.out is None
        and os.path.exists("README.md")
        else None
    )
    if args.tables:
        if args.only or args.write_only or args.section:
            raise errors.UserError("--tables runs nothing and writes nothing: pass it alone")
        print("\n".join(results.protocol_tables(root, args.world, scale["seeds"])))
        pairs = headline.reports()  # the README's headline from every report under runs/ so far
        if pairs:
            print("## The README's headline (docs/protocol.md §7)\n")
            print(headline.headline(headline.verdicts(pairs), pairs))
        return
    if args.section:
        if args.only or args.write_only:
            raise errors.UserError("--section runs nothing and writes one section: pass it alone")
        rewrite_section(args, runs, root, scale, out_md, figs, readme)
        return
    if args.only:
        if args.write_only:
            raise errors.UserError(
                "--only runs part of the plan and --write-only runs nothing: pass one of them"
            )
        execute(plan.only(runs, args.only), root, args.jobs)
        return
    os.makedirs(root, exist_ok=True)
    timing_path = os.path.join(root, "timing.json")
    timing = read_timing(timing_path)
    this_command = COMMAND + " " + " ".join(sys.argv[1:] if argv is None else argv)
    if not args.write_only:
        t0 = time.time()
        try:
            execute(runs, root, args.jobs)
        finally:
            timing["wall_s"] += time.time() - t0
            timing["jobs"] = args.jobs
            timing["command"] = this_command
            folders.write_json(timing_path, timing)
    wall = timing["wall_s"]
    meta = {
        "command": this_command,
        "runs": len(runs),
        "quick": args.quick,
        "run_command": timing.get("command", "?"),
        "hardware": hardware(),
        "jobs": timing.get("jobs", args.jobs),
        "wall": f"{wall / 60:.0f} min",
    }
    results.write_results(root, scale, out_md, figs, meta, readme, args.world)
    print(f"wrote {out_md} ({len(runs)} runs in {root}/)", file=sys.stderr)


if __name__ == "__main__":
    sys.argv[0] = COMMAND  # what errors.run prints before `error:`
    errors.run(main)
