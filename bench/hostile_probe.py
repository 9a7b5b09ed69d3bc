"""A hostile user's probe of the project's scripts: run folders, checkpoints, resumes and bad inputs.

Each case does what a careless or unlucky user does (trains into a model folder, deletes a file of
a stopped run, cuts a checkpoint short as a power cut would, edits the teacher's weights between two
starts, passes a NaN model or a huge seed, ...) and runs the project's scripts the way a user does:
`python SCRIPT ...` as a subprocess of the checkout's own interpreter (DIR/.venv/bin/python), with
the checkout as the working folder and OMP_NUM_THREADS=1, in a fresh temporary folder per case. The
tiny models (models.build_tiny, seeds 1 and 2) and data files are built once per probe with the
checkout's own code, together with a run stopped at step 2 of 4, the same run finished and an
evaluation; a case that needs a run copies one of them (its config.json pointed at the copy).

The outcome of each case is one class:

    OK      an expected refusal (exit code 2, no traceback, and the `error:` message names the
            culprit the case gives, such as the folder or the file), or an expected success (exit
            code 0 and the case's own check of the result holds)
    LOST    something the user owns changed or disappeared: a model folder, a finished run, an
            evaluation, a file of their own, a good checkpoint (the bytes of the protected files
            are compared before and after)
    STUCK   the run folder is left where neither the way out the message gives (--resume,
            --restart, a fresh start) nor any of those tried in turn gets to a finished run
    SILENT  exit code 0, but the wrong thing happened (the case's check fails: a resume that
            accepted changed inputs, a run written into another folder, ...)
    RAW     a traceback, an exit code other than 0 and 2, a hang past the time limit, or a message
            that does not name the culprit

A case can show several faults; it is given the worst, in the order LOST, STUCK, SILENT, RAW, and
its record keeps all of them with the tail of stderr of the commands concerned. A flag the checkout
does not know (argparse: "unrecognized arguments") is judged like any other outcome: by what the user
ends up with.

The probe is three files: this one (the command line, running the cases, the table),
probe_harness.py (the setup, running a command, the judgements the cases share) and
probe_cases.py (the cases, by group).

Usage (any Python 3 runs the probe itself; the scripts run with the checkout's interpreter):

    python bench/hostile_probe.py --checkout /work/main --json results/hostile_probe/after.json
    python bench/hostile_probe.py --checkout /work/before --only resume ckpt --keep

    --checkout DIR   the checkout under test (default: this file's project)
    --json PATH      write the per-case results (class, faults, stderr tails, seconds) as JSON
    --only WORD...   run only the cases whose names contain one of the words, or whose group
                     (ownership, ckpt, resume, report, inputs) is one of them
    --timeout S      the limit of each command (default 120 s)
    --jobs N         cases run at once (default 1)
    --keep           keep the temporary folders (their path is printed)

The probe prints one line per case as it ends, then the table of cases and the count of each class.
It exits with 0 whatever the classes are (1 when its own setup fails). The scripts run with
HF_HUB_OFFLINE=1: every model and file the cases use is local.
"""

import argparse
import collections
import concurrent.futures
import json
import os
import sys
import threading
import time

from probe_cases import CASES
from probe_harness import CLASSES, WORST_FIRST, Case, Probe, SetupFailed

# -----------------------------------------------------------------------------
# Running the cases and reporting


def run_case(probe, group, name, fn) -> dict:
    c = Case(probe, name)
    start = time.time()
    try:
        fn(c)
    except Exception as e:  # the probe's own failure while judging: shown, not hidden
        c.fault("RAW", f"the probe itself failed: {type(e).__name__}: {e}")
    worst = next((cls for cls in WORST_FIRST if any(f[0] == cls for f in c.faults)), "OK")
    deciding = [f for f in c.faults if f[0] == worst]
    why = deciding[0][1] if deciding else "; ".join(c.notes) or "as expected"
    tail = deciding[0][2] if deciding else (c.procs[0].tail() if c.procs else "")
    return {
        "id": name,
        "group": group,
        "class": worst,
        "why": why,
        "faults": [{"class": f[0], "why": f[1], "stderr_tail": f[2]} for f in c.faults],
        "notes": c.notes,
        "commands": [{"label": p.label, "rc": p.rc, "secs": round(p.secs, 1)} for p in c.procs],
        "stderr_tail": tail,
        "secs": round(time.time() - start, 1),
    }


def table(results) -> str:
    width = max(len(r["id"]) for r in results)
    lines = [f"{'case'.ljust(width)}  {'group':9}  {'class':6}  {'s':>5}  why", "-" * (width + 100)]
    for r in results:
        why = r["why"].replace("\n", " ")
        lines.append(f"{r['id'].ljust(width)}  {r['group']:9}  {r['class']:6}  {r['secs']:5.0f}  {why[:160]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkout", default=here, help="the checkout under test (default: %(default)s)")
    ap.add_argument("--json", help="write the per-case results here")
    ap.add_argument("--only", nargs="+", metavar="WORD", help="only the cases whose names contain a word")
    ap.add_argument("--timeout", type=int, default=120, help="seconds per command (default: 120)")
    ap.add_argument("--jobs", type=int, default=1, help="cases at once (default: 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = ap.parse_args(argv)

    probe = Probe(args.checkout, args.timeout, args.keep)
    if not os.path.isfile(probe.python):
        ap.error(f"--checkout {args.checkout}: no {probe.python}")
    chosen = [x for x in CASES if not args.only or any(w in x[1] or w == x[0] for w in args.only)]
    print(f"checkout {probe.checkout}: {len(chosen)} cases; temporary folder {probe.root}", flush=True)
    t0 = time.time()
    try:
        probe.setup()
    except SetupFailed as e:
        print(f"setup failed:\n{e}", file=sys.stderr)
        probe.cleanup()
        return 1
    print(f"setup: {time.time() - t0:.0f} s", flush=True)

    results, lock = {}, threading.Lock()

    def one(entry):
        r = run_case(probe, *entry)
        with lock:
            results[entry[1]] = r
            print(f"  {r['class']:6} {r['id']} ({r['secs']:.0f} s): {r['why'][:200]}", flush=True)

    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(one, chosen))
    ordered = [results[name] for _, name, _ in chosen]
    counts = collections.Counter(r["class"] for r in ordered)
    wall = time.time() - t0
    print()
    print(table(ordered))
    print()
    print(
        "counts: "
        + ", ".join(f"{cls} {counts.get(cls, 0)}" for cls in CLASSES)
        + f"  ({len(ordered)} cases, {wall:.0f} s)"
    )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(
                {
                    "checkout": probe.checkout,
                    "python": probe.python,
                    "wall_s": round(wall),
                    "counts": {cls: counts.get(cls, 0) for cls in CLASSES},
                    "cases": ordered,
                },
                f,
                indent=2,
            )
        print(f"wrote {args.json}")
    if probe.keep:
        print(f"kept {probe.root}")
    probe.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
