"""How many CPU threads a tiny-world run should use when the cores may be shared.

    make bench-threads                                 # about 10 min on 2 cores
    python bench/bench_threads.py --threads 1 2 --steps 40

Runs `train_opd.py` (make opd's run, cut to `--steps` steps and a 100-problem evaluation) once per
thread count, first alone and then beside one busy neighbour (a second python process spinning on
one core for the whole run), and prints each run's training seconds and its slowdown against the
same thread count alone. With one thread per core, a neighbour that takes one core leaves a
two-thread run waiting at every parallel region for the thread that shares the neighbour's core;
a one-thread run moves to the free core. The order alternates between rounds so that a drift of
the machine loads both thread counts alike.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_opd(threads: int, steps: int, out: str) -> float:
    """One shortened `make opd` with `threads` threads; its training seconds (summary.json's wall_s)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "train_opd.py", "--steps", str(steps), "--eval-every", "0", "--eval-n", "100"]
    cmd += ["--ckpt-every", "0", "--threads", str(threads), "--out", out]
    done = subprocess.run(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        return json.load(f)["wall_s"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    ap.add_argument("--steps", type=int, default=40, help="OPD steps of each run")
    ap.add_argument("--rounds", type=int, default=1, help="repeats of the whole comparison")
    args = ap.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores; make opd cut to {args.steps} steps; seconds of training")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.threads if r % 2 == 0 else args.threads[::-1]
            for busy in (False, True):
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                try:
                    for t in order:
                        out = os.path.join(tmp, f"r{r}-t{t}-{'busy' if busy else 'alone'}")
                        t0 = time.time()
                        s = run_opd(t, args.steps, out)
                        rows.setdefault((t, busy), []).append(s)
                        where = "beside a busy process" if busy else "alone"
                        print(
                            f"  round {r}, {t} thread(s), {where}: {s:.1f} s of training, "
                            f"{time.time() - t0:.0f} s wall",
                            flush=True,
                        )
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
    print("\n| threads | alone (s) | beside one busy process (s) | slowdown |")
    print("|---|---|---|---|")
    for t in args.threads:
        alone, busy = min(rows[(t, False)]), min(rows[(t, True)])
        print(f"| {t} | {alone:.1f} | {busy:.1f} | {busy / alone:.2f}x |")


if __name__ == "__main__":
    main()
