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
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

CLASSES = ("OK", "LOST", "STUCK", "SILENT", "RAW")
WORST_FIRST = ("LOST", "STUCK", "SILENT", "RAW")
TENSOR = "model.layers.0.mlp.up_proj.weight"  # the weight the NaN teacher spoils
HUGE_SEED = str(2**64)
STEPS = 4  # every training run of the probe has 4 steps, a checkpoint every 2

SETUP_CODE = """
import json, os, shutil, sys
import safetensors.torch
import models

root = sys.argv[1]
tok = models.tiny_tokenizer()
for name, seed in (("teacher", 1), ("student", 2)):
    models.save(models.build_tiny(seed=seed), tok, os.path.join(root, name))

nan = os.path.join(root, "nan_teacher")
shutil.copytree(os.path.join(root, "teacher"), nan)
weights = safetensors.torch.load_file(os.path.join(nan, "model.safetensors"))
weights[%(tensor)r][0, 0] = float("nan")
safetensors.torch.save_file(weights, os.path.join(nan, "model.safetensors"), metadata={"format": "pt"})

cut = os.path.join(root, "cut_tokenizer")
shutil.copytree(os.path.join(root, "student"), cut)
path = os.path.join(cut, models.TINY_MARKER)
text = open(path).read()
open(path, "w").write(text[: len(text) // 2])

bare = os.path.join(root, "bare_config")
shutil.copytree(os.path.join(root, "student"), bare)
path = os.path.join(bare, "config.json")
config = json.load(open(path))
config.pop("model_type")
json.dump(config, open(path, "w"), indent=2)
""" % {"tensor": TENSOR}

LOADS_CODE = "import sys, models; models.load(sys.argv[1], device='cpu'); print('loads')"

REPORT_CODE = (
    "import sys, errors\n"
    "from experiments import report, plan\n"
    "errors.run(lambda argv: report.execute([plan.Run('x', sys.argv[2:])], sys.argv[1], 1))\n"
)


# -----------------------------------------------------------------------------
# The flags of the tiny runs (tests/test_bad_inputs.py, tests/test_lost_runs.py)


def as_argv(flags: dict) -> list:
    return [x for k, v in flags.items() for x in (k, v)]


def opd_flags(P, **paths) -> dict:
    """train_opd.py: 4 steps of 4 problems, 8 new tokens, a checkpoint every 2 steps.
    `paths` replace the shared files: student=, teacher=, data=, eval_data=."""
    return {
        "--student": paths.get("student", P["student"]),
        "--teacher": paths.get("teacher", P["teacher"]),
        "--data": paths.get("data", P["train"]),
        "--eval-data": paths.get("eval_data", P["eval"]),
        "--steps": str(STEPS),
        "--batch-size": "4",
        "--micro-batch": "4",
        "--max-new-tokens": "8",
        "--eval-n": "4",
        "--ckpt-every": "2",
        "--lr": "3e-3",
        "--threads": "1",
    }


def opsd_flags(P, student) -> dict:
    flags = opd_flags(P, student=student)
    del flags["--teacher"]
    flags["--measure-n"] = "0"
    return flags


def grpo_flags(P) -> dict:
    flags = opd_flags(P)
    del flags["--teacher"]
    flags.update({"--steps": "2", "--group-size": "2", "--micro-batch": "8"})
    return flags


def sft_flags(student) -> dict:
    return {
        "--student": student,
        "--n-train": "8",
        "--eval-n": "4",
        "--batch-size": "4",
        "--micro-batch": "4",
        "--steps": "2",
        "--threads": "1",
    }


def eval_flags(model) -> dict:
    return {
        "--model": model,
        "--bench": "synthetic",
        "--synthetic-n": "4",
        "--max-new-tokens": "8",
        "--batch-size": "4",
        "--threads": "1",
        "--quiet": None,
    }


def eval_argv(script, model, out, **more) -> list:
    flags = eval_flags(model)
    flags.update(more)
    argv = [script]
    for k, v in flags.items():
        argv += [k] if v is None else [k, v]
    return argv + ["--out", out]


def problems(n, start=0) -> list:
    return [
        {"problem": f"What is {i % 7}+{i // 7}?", "answer": str(i % 7 + i // 7)}
        for i in range(start, start + n)
    ]


def write_lines(path, lines) -> str:
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in lines)
    return path


def write_jsonl(path, rows) -> str:
    return write_lines(path, [json.dumps(r) for r in rows])


# -----------------------------------------------------------------------------
# Running a command, and what it left


class Proc:
    """One finished command: argv, exit code (None after a timeout), stdout, stderr, seconds."""

    def __init__(self, label, argv, rc, out, err, secs, timed_out=False):
        self.label, self.argv, self.rc, self.out, self.err = label, argv, rc, out, err
        self.secs, self.timed_out = secs, timed_out

    @property
    def message(self) -> str:
        """The `error:` message on stderr (from its first line to the end), or ''."""
        lines = self.err.splitlines()
        for i, line in enumerate(lines):
            if ": error: " in line or line.startswith("error: "):
                return "\n".join(lines[i:]).strip()
        return ""

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err

    def brief(self) -> str:
        if self.timed_out:
            return f"timed out after {self.secs:.0f} s"
        last = self.message or (self.err.strip().splitlines() or ["(no stderr)"])[-1]
        return f"exit {self.rc}: {last.strip()[:220]}"

    def tail(self, chars=1500) -> str:
        return f"$ {self.label}\n" + self.err[-chars:]


def decode(x) -> str:
    if x is None:
        return ""
    return x.decode(errors="replace") if isinstance(x, bytes) else x


def snapshot(path) -> dict:
    """Every file under `path` (or `path` itself) and its bytes, the lock file aside; {} when absent."""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            return {"": f.read()}
    files = {}
    if os.path.isdir(path) and not os.path.islink(path):
        for root, _, names in os.walk(path):
            for name in names:
                full = os.path.join(root, name)
                if name != ".lock" and os.path.isfile(full):
                    with open(full, "rb") as f:
                        files[os.path.relpath(full, path)] = f.read()
    return files


def truncate_half(path) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def training_steps(out) -> list:
    return logged_steps(out)[0]


def logged_steps(out) -> tuple:
    """(the steps of the training records, the steps of the evaluation records) in out/metrics.jsonl."""
    steps, evals = [], []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                steps.append(rec["step"])
            if "eval" in rec:
                evals.append(rec["step"])
    return steps, evals


def run_complete(out):
    """Why the run in `out` is not a complete run of STEPS steps (None when it is): summary.json with
    the student before and after, every metrics line valid JSON, one record per step, one evaluation
    at step 0 and one at the end."""
    return run_complete_but(out)


def run_complete_but(out, missing_step=None):
    """run_complete, where the record of `missing_step` may be the one that is missing."""
    path = os.path.join(out, "summary.json")
    if not os.path.isfile(path):
        return "no summary.json"
    try:
        summary = json.load(open(path))
        steps, evals = logged_steps(out)
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    missing = [k for k in ("student_before", "student_after") if k not in summary]
    if missing:
        return f"summary.json lacks {missing}"
    if steps != [s for s in range(1, STEPS + 1) if s != missing_step]:
        return f"metrics.jsonl holds training steps {steps}, not 1..{STEPS}"
    if evals != [0, STEPS]:
        return f"metrics.jsonl holds evaluations at steps {evals}, not [0, {STEPS}]"
    return None


# -----------------------------------------------------------------------------
# The probe: its shared models, data and template runs, and one context per case


class SetupFailed(Exception):
    pass


class Probe:
    def __init__(self, checkout, timeout, keep):
        self.checkout = os.path.abspath(checkout)
        self.python = os.path.join(self.checkout, ".venv", "bin", "python")
        self.timeout = timeout
        self.keep = keep
        self.root = tempfile.mkdtemp(prefix="hostile_probe_")
        self.P = {}

    def run(self, label, argv, timeout=None) -> Proc:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
        start = time.time()
        try:
            p = subprocess.run(
                [self.python, *argv],
                cwd=self.checkout,
                env=env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout or self.timeout,
            )
            return Proc(label, argv, p.returncode, p.stdout, p.stderr, time.time() - start)
        except subprocess.TimeoutExpired as e:
            return Proc(label, argv, None, decode(e.stdout), decode(e.stderr), time.time() - start, True)

    def setup(self) -> None:
        """The tiny models and data under ROOT/shared, and three template folders: a train_opd.py run
        stopped after step 2 (its checkpoint there), the same run finished, an eval_math.py output."""
        shared = os.path.join(self.root, "shared")
        os.makedirs(shared)
        P = self.P
        p = self.run("build the tiny models", ["-c", SETUP_CODE, shared], timeout=300)
        if p.rc != 0:
            raise SetupFailed(p.tail(3000))
        for name in ("teacher", "student", "nan_teacher", "cut_tokenizer", "bare_config"):
            P[name] = os.path.join(shared, name)
        P["train"] = write_jsonl(os.path.join(shared, "train.jsonl"), problems(12))
        P["eval"] = write_jsonl(os.path.join(shared, "eval.jsonl"), problems(4, start=20))

        P["stopped"] = os.path.join(shared, "stopped")
        p = self.run(
            "template: stopped run",
            ["train_opd.py", *as_argv(opd_flags(P)), "--out", P["stopped"], "--stop-at", "2"],
        )
        if p.rc != 0 or not os.path.isfile(os.path.join(P["stopped"], "ckpt", "train_state.pt")):
            raise SetupFailed(p.tail(3000))
        P["finished"] = copy_run(P["stopped"], os.path.join(shared, "finished"))
        p = self.run("template: finished run", ["train_opd.py", "--out", P["finished"], "--resume"])
        if p.rc != 0 or run_complete(P["finished"]):
            raise SetupFailed(p.tail(3000))
        P["evaluation"] = os.path.join(shared, "evaluation")
        p = self.run("template: evaluation", eval_argv("eval_math.py", P["student"], P["evaluation"]))
        if p.rc != 0 or not os.path.isfile(os.path.join(P["evaluation"], "summary.json")):
            raise SetupFailed(p.tail(3000))

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)


def copy_run(src, dst, **paths) -> str:
    """A copy of the run folder `src` at `dst`, as if started there: its config.json's "out" is `dst`,
    and `paths` (student=, teacher=, data=, eval_data=) replace the files it names."""
    shutil.copytree(src, dst, symlinks=True)
    path = os.path.join(dst, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(paths, out=dst)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)
    return dst


class Case:
    """One case's folder, commands and faults."""

    def __init__(self, probe, name):
        self.probe = probe
        self.P = probe.P
        self.tmp = os.path.join(probe.root, "cases", name)
        os.makedirs(self.tmp)
        self.faults = []  # (class, why, stderr tail)
        self.procs = []
        self.notes = []

    def path(self, name) -> str:
        return os.path.join(self.tmp, name)

    def run(self, label, argv, timeout=None) -> Proc:
        p = self.probe.run(label, argv, timeout)
        self.procs.append(p)
        return p

    def fault(self, cls, why, proc=None) -> None:
        self.faults.append((cls, why, proc.tail() if proc else ""))

    def note(self, text) -> None:
        self.notes.append(text)

    def plain(self, text) -> str:
        """`text` with the case's folder written CASE and the probe's folder ROOT."""
        return text.replace(self.tmp, "CASE").replace(self.probe.root, "ROOT")

    # --- folders a case starts from

    def copy(self, src, name) -> str:
        dst = self.path(name)
        (shutil.copytree if os.path.isdir(src) else shutil.copyfile)(src, dst)
        return dst

    def stopped(self, name="run", **paths) -> tuple:
        """(a train_opd.py run stopped after step 2 at `name`, its fresh-start argv)."""
        out = copy_run(self.P["stopped"], self.path(name), **paths)
        return out, self.fresh_opd(out, **paths)

    def finished(self, name="run") -> tuple:
        out = copy_run(self.P["finished"], self.path(name))
        return out, self.fresh_opd(out)

    def fresh_opd(self, out, **paths) -> list:
        return ["train_opd.py", *as_argv(opd_flags(self.P, **paths)), "--out", out]

    def resume(self, out, *more, script="train_opd.py") -> Proc:
        return self.run(
            f"{script} --out {out} --resume {' '.join(more)}".strip(),
            [script, "--out", out, "--resume", *more],
        )


# -----------------------------------------------------------------------------
# Judgements shared by the cases


def names(c, message: str, culprit) -> bool:
    """Whether `message` names `culprit` (a substring, or a tuple of substrings any one of which will
    do). A culprit that is not a path must appear outside the paths of the case's own folders, so that
    a folder's name never names a culprit by accident."""
    plain = c.plain(message)
    alts = culprit if isinstance(culprit, tuple) else (culprit,)
    return any(alt in (message if alt.startswith(c.probe.root) else plain) for alt in alts)


def refused(c, p, culprits, accepted="accepted it") -> bool:
    """Whether `p` is a refusal that names every culprit; else the fault it shows."""
    if p.timed_out:
        c.fault("RAW", f"{p.label}: timed out after {p.secs:.0f} s", p)
    elif p.rc == 0:
        c.fault("SILENT", f"{p.label}: exit 0: {accepted}", p)
    elif p.traceback:
        c.fault("RAW", f"{p.label}: traceback: {p.err.strip().splitlines()[-1][:220]}", p)
    elif p.rc != 2:
        c.fault("RAW", f"{p.label}: exit code {p.rc}", p)
    else:
        missing = [x for x in culprits if not names(c, p.message, x)]
        if not missing:
            c.note(f"refused: {p.message[:240]}")
            return True
        c.fault("RAW", f"{p.label}: the message does not name {missing}: {p.message[:300]!r}", p)
    return False


def succeeded(c, p, problem=None) -> bool:
    """Whether `p` ended with exit 0 and `problem` (the case's check: None when it holds) is None."""
    if p.timed_out:
        c.fault("RAW", f"{p.label}: timed out after {p.secs:.0f} s", p)
    elif p.rc != 0:
        kind = "traceback" if p.traceback else f"exit code {p.rc}"
        c.fault("RAW", f"{p.label}: {kind} where a success was expected: {p.brief()}", p)
    elif problem:
        c.fault("SILENT", f"{p.label}: exit 0, but {problem}", p)
    else:
        return True
    return False


def kept(c, before, path, what, p=None) -> list:
    """LOST when a file of `before` (snapshot of `path`) changed or disappeared; returns the files added."""
    after = snapshot(path)
    gone = [k or os.path.basename(path) for k in before if k not in after]
    changed = [k or os.path.basename(path) for k in before if k in after and after[k] != before[k]]
    if gone or changed:
        parts = ([f"gone: {gone[:5]}"] if gone else []) + ([f"changed: {changed[:5]}"] if changed else [])
        c.fault("LOST", f"{what} ({path}): " + "; ".join(parts), p)
    return sorted(set(after) - set(before))


def model_kept(c, before, path, p=None) -> None:
    """The model folder at `path` holds the bytes of `before` and still loads."""
    added = kept(c, before, path, "the model folder", p)
    if added:
        c.note(f"files added to the model folder: {added[:6]}")
        q = c.run(f"models.load({path})", ["-c", LOADS_CODE, path])
        if q.rc != 0:
            c.fault("LOST", f"the model folder {path} no longer loads: {q.brief()}", q)


def finishes(c, out, fresh, message, lost_unless_resumed=False):
    """Bring the folder `out` to a finished run: the ways `message` names first (--restart,
    --resume), then --resume, --restart and a fresh start in turn. STUCK when none finishes; with
    `lost_unless_resumed`, LOST when only a start over does (the run's progress is gone). Returns
    the way that finished, or None."""
    script = fresh[0]
    ways = {
        "--resume": [script, "--out", out, "--resume"],
        "--restart": fresh + ["--restart"],
        "a fresh start": fresh,
    }
    order = [w for w in ("--restart", "--resume") if w in message] + list(ways)
    failures = []
    for way in dict.fromkeys(order):
        p = c.run(f"way out: {way}", ways[way])
        if p.rc == 0 and os.path.isfile(os.path.join(out, "summary.json")):
            if lost_unless_resumed and way != "--resume":
                c.fault(
                    "LOST", f"the run no longer resumes ({'; '.join(failures)}); only {way} finishes it", p
                )
            else:
                c.note(f"finished with {way}" + (f" after {'; '.join(failures)}" if failures else ""))
            return way
        failures.append(f"{way}: {p.brief()}")
    c.fault("STUCK", "no way to a finished run: " + " | ".join(failures), p)
    return None


def judge_resume(c, p, out, fresh, culprits, check=run_complete) -> None:
    """A --resume `p` of a damaged run: either it finishes a complete run (`check`), or it is refused by
    name and a way out finishes the run."""
    if p.rc == 0:
        succeeded(c, p, check(out))
        return
    refused(c, p, culprits)
    finishes(c, out, fresh, p.message)


# -----------------------------------------------------------------------------
# The cases

CASES = []  # (group, name, function)


def case(group, name):
    def register(fn):
        CASES.append((group, name, fn))
        return fn

    return register


# ---- folder ownership: a run touches only what it owns


@case("ownership", "sft-into-its-own-student-folder")
def _(c):
    model = c.copy(c.P["student"], "model")
    before = snapshot(model)
    p = c.run(
        "train_sft.py --student M --out M", ["train_sft.py", *as_argv(sft_flags(model)), "--out", model]
    )
    refused(c, p, [model], "fine-tuned into the model folder it reads")
    model_kept(c, before, model, p)


@case("ownership", "opd-out-into-its-teacher-folder")
def _(c):
    teacher = c.copy(c.P["teacher"], "teacher")
    before = snapshot(teacher)
    p = c.run("train_opd.py --teacher T --out T", c.fresh_opd(teacher, teacher=teacher))
    refused(c, p, [teacher], "trained into the teacher's folder")
    model_kept(c, before, teacher, p)


@case("ownership", "opd-into-a-finished-run-without-ckpt")
def _(c):
    out, fresh = c.finished()
    shutil.rmtree(os.path.join(out, "ckpt"))
    before = snapshot(out)
    p = c.run("train_opd.py --out FINISHED (ckpt/ deleted)", fresh)
    refused(c, p, [out, "summary.json"], "started over a finished run")
    kept(c, before, out, "the finished run's summary and metrics", p)


@case("ownership", "opd-into-an-evaluation")
def _(c):
    out = c.copy(c.P["evaluation"], "evaluation")
    before = snapshot(out)
    p = c.run("train_opd.py --out EVALUATION", c.fresh_opd(out))
    refused(c, p, [out], "trained into an evaluation's folder")
    kept(c, before, out, "the evaluation's summary and records", p)


@case("ownership", "grpo-into-a-stopped-opd-run")
def _(c):
    out, fresh = c.stopped()
    before = snapshot(out)
    p = c.run(
        "train_grpo.py --out STOPPED_OPD_RUN", ["train_grpo.py", *as_argv(grpo_flags(c.P)), "--out", out]
    )
    if refused(c, p, [out], "trained GRPO into an OPD run") and "--resume" in p.message:
        q = c.resume(out, script="train_grpo.py")  # the way out the message gives
        if q.rc == 0:
            c.fault("SILENT", "train_grpo.py --resume, as the message says, continued the OPD run as GRPO", q)
        kept(c, before, out, "the OPD run, after train_grpo.py --resume", q)
    kept(c, before, out, "the OPD run", p)


@case("ownership", "eval-into-a-stopped-run")
def _(c):
    out, fresh = c.stopped()
    before = snapshot(out)
    p = c.run("eval_math.py --out STOPPED_RUN", eval_argv("eval_math.py", c.P["student"], out))
    refused(c, p, [out], "evaluated into a training run's folder")
    kept(c, before, out, "the stopped run", p)
    q = c.resume(out)
    if q.rc != 0 or not os.path.isfile(os.path.join(out, "summary.json")):
        finishes(c, out, fresh, q.message, lost_unless_resumed=True)


@case("ownership", "probes-into-a-stopped-run")
def _(c):
    out, fresh = c.stopped()
    before = snapshot(out)
    argv = eval_argv("probes.py", c.P["student"], out, **{"--probe-teacher": c.P["teacher"]})
    p = c.run("probes.py --out STOPPED_RUN", argv)
    refused(c, p, [out], "probed into a training run's folder")
    if kept(c, before, out, "the stopped run", p):
        q = c.resume(out)
        if q.rc != 0 or not os.path.isfile(os.path.join(out, "summary.json")):
            finishes(c, out, fresh, q.message, lost_unless_resumed=True)


@case("ownership", "fresh-start-over-a-checkpointless-run-with-notes")
def _(c):
    out, fresh = c.stopped()
    shutil.rmtree(os.path.join(out, "ckpt"))
    notes = os.path.join(out, "notes.txt")
    write_lines(notes, ["lr 3e-3 looked best; try 1e-3 next"])
    before = snapshot(notes)
    p = c.run("train_opd.py --out UNFINISHED_RUN_WITH_NOTES", fresh)
    if p.rc == 0:
        succeeded(c, p, run_complete(out))
    else:
        refused(c, p, ["notes.txt"])
    kept(c, before, notes, "the user's notes.txt", p)


@case("ownership", "restart-over-a-run-with-notes")
def _(c):
    out, fresh = c.stopped()
    notes = os.path.join(out, "notes.txt")
    write_lines(notes, ["the step-2 checkpoint is the one to keep"])
    before = snapshot(notes)
    p = c.run("train_opd.py --out STOPPED_RUN_WITH_NOTES --restart", fresh + ["--restart"])
    if p.rc == 0:
        succeeded(c, p, run_complete(out))
    else:
        refused(c, p, ["notes.txt"])
    kept(c, before, notes, "the user's notes.txt", p)


@case("ownership", "restart-over-a-finished-run")
def _(c):
    out, fresh = c.finished()
    before = snapshot(out)
    p = c.run("train_opd.py --out FINISHED --restart", fresh + ["--restart"])
    refused(c, p, [out, "summary.json"], "started a finished run over")
    kept(c, before, out, "the finished run", p)


@case("ownership", "out-empty-string")
def _(c):
    watched = ("config.json", "metrics.jsonl", "run.json", "summary.json", "eval", "ckpt")
    there = {n for n in watched if os.path.exists(os.path.join(c.probe.checkout, n))}
    p = c.run("train_opd.py --out ''", c.fresh_opd(""))
    refused(c, p, ["--out"], "ran with --out ''")
    new = {n for n in watched if os.path.exists(os.path.join(c.probe.checkout, n))} - there
    if new:
        c.fault("SILENT", f"--out '' wrote {sorted(new)} into the checkout itself", p)


@case("ownership", "out-dangling-symlink")
def _(c):
    os.makedirs(c.path("elsewhere"))
    link = c.path("link")
    os.symlink(c.path("elsewhere/run"), link)
    p = c.run("train_opd.py --out DANGLING_LINK", c.fresh_opd(link))
    if p.rc == 0:
        succeeded(c, p, run_complete(link))
    else:
        refused(c, p, [link])


@case("ownership", "out-a-regular-file")
def _(c):
    out = write_lines(c.path("results.txt"), ["my results: 0.42"])
    before = snapshot(out)
    p = c.run("train_opd.py --out FILE", c.fresh_opd(out))
    refused(c, p, [out], "ran with a file as --out")
    kept(c, before, out, "the user's file", p)


@case("ownership", "out-a-folder-of-the-users-files")
def _(c):
    out = c.path("mine")
    os.makedirs(out)
    write_lines(os.path.join(out, "config.json"), ['{"learning_rate": 0.1, "note": "my own settings"}'])
    write_lines(os.path.join(out, "notes.txt"), ["do not delete"])
    before = snapshot(out)
    p = c.run("train_opd.py --out FOLDER_WITH_USER_CONFIG", c.fresh_opd(out))
    refused(c, p, [out], "trained into a folder of the user's files")
    kept(c, before, out, "the user's folder", p)


# ---- checkpoints, kills and power cuts


@case("ckpt", "torn-ckpt.tmp-with-train_state")
def _(c):
    out, fresh = c.stopped()
    ckpt = os.path.join(out, "ckpt")
    good = snapshot(ckpt)
    shutil.copytree(ckpt, ckpt + ".tmp")
    truncate_half(os.path.join(ckpt + ".tmp", "model.safetensors"))  # its bytes never reached the disk
    p = c.resume(out)
    if p.rc != 0 and not any(snapshot(ckpt + end) == good for end in ("", ".old")):
        c.fault("LOST", "the good step-2 checkpoint is gone: the torn ckpt.tmp/ took its place", p)
    judge_resume(c, p, out, fresh, ["ckpt"])


@case("ckpt", "truncated-train_state.pt")
def _(c):
    out, fresh = c.stopped()
    truncate_half(os.path.join(out, "ckpt", "train_state.pt"))
    judge_resume(c, c.resume(out), out, fresh, ["train_state.pt"])


@case("ckpt", "deleted-metrics.jsonl")
def _(c):
    out, fresh = c.stopped()
    os.remove(os.path.join(out, "metrics.jsonl"))
    judge_resume(c, c.resume(out), out, fresh, ["metrics.jsonl"])


@case("ckpt", "deleted-config.json")
def _(c):
    out, fresh = c.stopped()
    os.remove(os.path.join(out, "config.json"))
    judge_resume(c, c.resume(out), out, fresh, ["config.json"])


@case("ckpt", "deleted-run.json")
def _(c):
    out, fresh = c.stopped()
    if os.path.exists(os.path.join(out, "run.json")):
        os.remove(os.path.join(out, "run.json"))
    else:
        c.note("this checkout's runs write no run.json: nothing deleted")
    judge_resume(c, c.resume(out), out, fresh, ["run.json"])


@case("ckpt", "torn-ckpt.old-beside-a-good-ckpt")
def _(c):
    out, fresh = c.stopped()
    ckpt = os.path.join(out, "ckpt")
    shutil.copytree(ckpt, ckpt + ".old")
    truncate_half(os.path.join(ckpt + ".old", "model.safetensors"))
    judge_resume(c, c.resume(out), out, fresh, ["ckpt.old"])


@case("ckpt", "kill-between-the-renames-of-the-swap")
def _(c):
    out, fresh = c.stopped()
    ckpt = os.path.join(out, "ckpt")
    os.rename(ckpt, ckpt + ".old")  # ckpt -> ckpt.old done, ckpt.tmp -> ckpt not yet
    shutil.copytree(ckpt + ".old", ckpt + ".tmp")
    judge_resume(c, c.resume(out), out, fresh, ["ckpt"])


@case("ckpt", "sigkill-while-ckpt.tmp-is-written")
def _(c):
    out = c.path("run")
    fresh = c.fresh_opd(out)
    argv = [c.probe.python, *fresh, "--ckpt-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
    start = time.time()
    log = open(c.path("stderr.txt"), "w+")
    proc = subprocess.Popen(argv, cwd=c.probe.checkout, env=env, stdout=subprocess.DEVNULL, stderr=log)
    killed = False
    while proc.poll() is None and time.time() - start < c.probe.timeout:
        if os.path.isdir(os.path.join(out, "ckpt")) and os.path.isdir(os.path.join(out, "ckpt.tmp")):
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.001)
    if proc.poll() is None and not killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    log.seek(0)
    err = log.read()
    log.close()
    p = Proc(
        "train_opd.py --ckpt-every 1 (SIGKILL while ckpt.tmp/ is written)",
        fresh,
        proc.returncode,
        "",
        err,
        time.time() - start,
    )
    c.procs.append(p)
    if not killed:
        c.note(f"the run ended (exit {proc.returncode}) before a second ckpt.tmp/ was seen: no kill")
        succeeded(c, p, run_complete(out))
        return
    left = sorted(e for e in os.listdir(out) if e.startswith("ckpt"))
    c.note(f"killed with {left} in the folder")
    finishes(c, out, fresh, "--resume", lost_unless_resumed=True)


@case("ckpt", "killed-after-the-last-checkpoint-before-summary")
def _(c):
    out, fresh = c.finished()
    os.remove(os.path.join(out, "summary.json"))  # end_run: final evaluation logged, checkpoint saved
    judge_resume(c, c.resume(out), out, fresh, ["summary.json"])


@case("ckpt", "resume-a-run-stopped-by-the-previous-version")
def _(c):
    out, fresh = c.stopped()
    for name in ("run.json", os.path.join("ckpt", "manifest.json")):  # what the older scripts did not write
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    judge_resume(c, c.resume(out), out, fresh, [("manifest.json", "run.json")])


@case("ckpt", "killed-while-writing-the-first-run.json")
def _(c):
    out = c.path("run")
    os.makedirs(out)
    write_lines(os.path.join(out, ".lock"), [])
    with open(os.path.join(out, "run.json.part"), "w") as f:
        f.write('{\n  "script": "train_opd.py",\n  "inp')  # the first write of a start, cut by a kill
    fresh = c.fresh_opd(out)
    p = c.run("train_opd.py --out RUN (a kill left run.json.part)", fresh)
    if p.rc == 0:
        succeeded(c, p, run_complete(out))
    else:
        refused(c, p, [out])
        finishes(c, out, fresh, p.message)


@case("ckpt", "eval-again-after-a-killed-evaluation")
def _(c):
    out = c.copy(c.P["evaluation"], "evaluation")
    os.remove(os.path.join(out, "summary.json"))  # killed before its summary, its records cut short
    records = [n for n in os.listdir(out) if n.endswith(".jsonl")]
    for name in records:
        truncate_half(os.path.join(out, name))
    p = c.run("eval_math.py --out KILLED_EVALUATION", eval_argv("eval_math.py", c.P["student"], out))
    if p.rc == 0:
        done = os.path.isfile(os.path.join(out, "summary.json"))
        lines = [line for n in records for line in open(os.path.join(out, n))]
        whole = all(line.endswith("}\n") for line in lines) and len(lines) == 4
        succeeded(
            c,
            p,
            None if done and whole else f"summary.json: {done}, {len(lines)} records, all whole: {whole}",
        )
    else:
        refused(c, p, [out])
        q = c.run(
            "eval_math.py --out KILLED_EVALUATION (again)", eval_argv("eval_math.py", c.P["student"], out)
        )
        if q.rc != 0:
            c.fault("STUCK", f"the killed evaluation's folder takes no evaluation again: {q.brief()}", q)


@case("ckpt", "two-fresh-runs-into-one-new-folder-at-once")
def _(c):
    out = c.path("run")
    fresh = c.fresh_opd(out)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
    logs = [open(c.path(f"stderr{i}.txt"), "w+") for i in (1, 2)]
    start = time.time()
    procs = [
        subprocess.Popen(
            [c.probe.python, *fresh], cwd=c.probe.checkout, env=env, stdout=subprocess.DEVNULL, stderr=log
        )
        for log in logs
    ]
    for proc in procs:
        try:
            proc.wait(timeout=max(1, c.probe.timeout - (time.time() - start)))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ps = []
    for i, (proc, log) in enumerate(zip(procs, logs), 1):
        log.seek(0)
        ps.append(Proc(f"train_opd.py --out RUN (start {i} of 2)", fresh, proc.returncode, "", log.read(), 0))
        log.close()
    c.procs += ps
    winners = [p for p in ps if p.rc == 0]
    if len(winners) != 1:
        c.fault(
            "RAW" if not winners else "SILENT", f"{len(winners)} of the two starts ended with exit 0", ps[-1]
        )
        return
    loser = ps[1 - ps.index(winners[0])]
    refused(c, loser, [out], "both starts ran in one folder")
    succeeded(c, winners[0], run_complete(out))


@case("ckpt", "torn-middle-metrics-line-then-resume")
def _(c):
    out, fresh = c.stopped()
    path = os.path.join(out, "metrics.jsonl")
    lines = open(path).read().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]  # step 1's record, torn
    write_lines(path, lines)
    p = c.resume(out)

    def check(out):
        """A complete run, or one that lacks only the torn record and says on stderr that it dropped it."""
        told = "metrics.jsonl" in c.plain(p.err) and "torn" in p.err
        if told and run_complete(out) and run_complete_but(out, missing_step=1) is None:
            c.note("the torn step-1 record was dropped, with a word on stderr")
            return None
        return run_complete(out)

    judge_resume(c, p, out, fresh, ["metrics.jsonl"], check)


# ---- resume checks what the run reads, not only its flags


@case("resume", "teacher-weights-replaced-in-place")
def _(c):
    teacher = c.copy(c.P["teacher"], "teacher")
    out, fresh = c.stopped(teacher=teacher)
    shutil.copyfile(
        os.path.join(c.P["student"], "model.safetensors"), os.path.join(teacher, "model.safetensors")
    )
    p = c.resume(out)
    refused(c, p, [("--teacher", teacher)], "resumed against other teacher weights")


@case("resume", "held-out-file-changed-in-place")
def _(c):
    held_out = c.copy(c.P["eval"], "eval.jsonl")
    out, fresh = c.stopped(eval_data=held_out)
    rows = [json.loads(line) for line in open(held_out)]
    rows[0]["answer"] = "99"
    write_jsonl(held_out, rows)
    p = c.resume(out)
    refused(c, p, [("held-out", "--eval-data", held_out)], "resumed against another held-out set")


@case("resume", "training-data-changed-in-place")
def _(c):
    data = c.copy(c.P["train"], "train.jsonl")
    out, fresh = c.stopped(data=data)
    rows = [json.loads(line) for line in open(data)]
    rows[5] = {"problem": "What is 40+2?", "answer": "42"}
    write_jsonl(data, rows)
    p = c.resume(out)
    refused(c, p, [("training data", "--data", data)], "resumed on other training data")


@case("resume", "opsd-student-changed-in-place")
def _(c):
    student = c.copy(c.P["student"], "student")
    out = c.path("run")
    argv = ["train_opsd.py", *as_argv(opsd_flags(c.P, student)), "--out", out]
    p = c.run("train_opsd.py --stop-at 2", argv + ["--stop-at", "2"])
    if not succeeded(c, p):
        return
    shutil.copyfile(
        os.path.join(c.P["teacher"], "model.safetensors"), os.path.join(student, "model.safetensors")
    )
    q = c.resume(out, script="train_opsd.py")
    refused(c, q, [("--student", student)], "resumed with another self-teacher (--student changed)")


@case("resume", "moved-run-folder")
def _(c):
    old, _ = c.stopped("run")
    new = c.path("moved")
    os.rename(old, new)
    p = c.resume(new)
    if p.rc == 0:
        succeeded(
            c, p, run_complete(new) or (f"it wrote into the old path {old}" if os.path.exists(old) else None)
        )
    else:
        refused(c, p, [new])
        finishes(c, new, c.fresh_opd(new), p.message, lost_unless_resumed=True)


@case("resume", "resume-with-stop-at-below-the-checkpoint")
def _(c):
    out, fresh = c.stopped()
    before = snapshot(out)
    p = c.resume(out, "--stop-at", "1")
    if refused(c, p, ["--stop-at"], f"ran on, ignoring --stop-at 1 (training steps {training_steps(out)})"):
        kept(c, before, out, "the stopped run, after a refused resume", p)


@case("resume", "resume-while-another-process-holds-the-folder")
def _(c):
    out, fresh = c.stopped()
    before = snapshot(out)
    with open(os.path.join(out, ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = c.resume(out)
    refused(c, p, [out], "resumed into a folder another live process holds")
    if p.rc != 0:
        kept(c, before, out, "the held run", p)


@case("resume", "resume-naming-the-same-files-another-way")
def _(c):
    out, fresh = c.stopped()
    data = os.path.join(os.path.dirname(c.P["train"]), ".", os.path.basename(c.P["train"]))
    p = c.resume(out, "--data", data, "--teacher", c.P["teacher"] + "/")
    if p.rc == 2 and not p.traceback:
        c.fault(
            "RAW", f"{p.label}: refused a resume whose flags name the run's own files: {p.message[:300]!r}", p
        )
    else:
        succeeded(c, p, run_complete(out))


# ---- experiments/report.py


@case("report", "report-with-a-torn-timing.json")
def _(c):
    root = c.path("root")
    os.makedirs(root)
    write_lines(os.path.join(root, "timing.json"), ['{"wall_s": 1'])
    md = os.path.join(root, "RESULTS.md")
    argv = ["-m", "experiments.report", "--write-only", "--root", root, "--out", md, "--figs", root]
    p = c.run("python -m experiments.report --write-only (torn timing.json, no runs)", argv)
    c.note(
        "with no finished runs the report ends refusing the first missing run; what counts is "
        "that the torn timing.json neither raises nor is blamed"
    )
    if p.traceback or p.timed_out or p.rc not in (0, 2):
        c.fault("RAW", f"{p.label}: {p.brief()}", p)
    elif "timing.json" in c.plain(p.message):
        c.fault("RAW", f"{p.label}: refused because of its own torn timing.json: {p.message[:300]!r}", p)


@case("report", "report-runner-on-a-folder-another-process-holds")
def _(c):
    root = c.path("root")
    os.makedirs(root)
    x = copy_run(c.P["stopped"], os.path.join(root, "x"))
    shutil.rmtree(os.path.join(x, "ckpt"))  # an unfinished run before its first checkpoint
    before = snapshot(x)
    flags = opd_flags(c.P)
    del flags["--threads"]
    with open(os.path.join(x, ".lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        p = c.run(
            "report.execute([Run('x', train_opd.py ...)]) while x/.lock is held",
            ["-c", REPORT_CODE, root, "train_opd.py", *as_argv(flags)],
        )
    refused(c, p, [x], "ran the run in a folder another live process holds")
    kept(c, before, x, "the folder the other process holds", p)


# ---- bad inputs that once ended in tracebacks or passed without a word


@case("inputs", "opd-nan-teacher-weights")
def _(c):
    out = c.path("out")
    p = c.run("train_opd.py --teacher NAN_MODEL", c.fresh_opd(out, teacher=c.P["nan_teacher"]))
    refused(c, p, [c.P["nan_teacher"], TENSOR], "trained against a teacher with NaN weights")


@case("inputs", "eval-temperature-1e-30")
def _(c):
    out = c.path("out")
    p = c.run(
        "eval_math.py --temperature 1e-30",
        eval_argv("eval_math.py", c.P["student"], out, **{"--temperature": "1e-30"}),
    )
    if p.rc == 2 and not p.traceback:
        refused(c, p, [("--temperature", "1e-30")])
        return
    problem = None
    try:
        summary = json.load(open(os.path.join(out, "summary.json")))
        acc = [b["acc/pass@1"] for b in (summary if isinstance(summary, list) else [summary])]
        if not all(isinstance(a, (int, float)) and 0 <= a <= 1 for a in acc):
            problem = f"accuracy {acc}"
    except (OSError, ValueError, KeyError, TypeError) as e:
        problem = f"no readable summary.json ({type(e).__name__}: {e})"
    succeeded(c, p, problem)


@case("inputs", "eval-tokenizer-cut-mid-json")
def _(c):
    model = c.P["cut_tokenizer"]
    p = c.run(
        "eval_math.py --model MODEL_WITH_CUT_TOKENIZER", eval_argv("eval_math.py", model, c.path("out"))
    )
    refused(c, p, [model, "tiny_tokenizer.json"])


@case("inputs", "eval-config-without-model_type")
def _(c):
    model = c.P["bare_config"]
    p = c.run(
        "eval_math.py --model MODEL_WITHOUT_MODEL_TYPE", eval_argv("eval_math.py", model, c.path("out"))
    )
    refused(c, p, [model, "model_type"])


@case("inputs", "opd-seed-2**64")
def _(c):
    p = c.run(f"train_opd.py --seed {HUGE_SEED}", c.fresh_opd(c.path("out")) + ["--seed", HUGE_SEED])
    refused(c, p, ["--seed", HUGE_SEED])


@case("inputs", "eval-seed-2**64")
def _(c):
    p = c.run(
        f"eval_math.py --seed {HUGE_SEED}",
        eval_argv("eval_math.py", c.P["student"], c.path("out"), **{"--seed": HUGE_SEED}),
    )
    refused(c, p, ["--seed", HUGE_SEED])


@case("inputs", "eval-device-nosuchdevice")
def _(c):
    p = c.run(
        "eval_math.py --device nosuchdevice",
        eval_argv("eval_math.py", c.P["student"], c.path("out"), **{"--device": "nosuchdevice"}),
    )
    refused(c, p, ["--device", "nosuchdevice"])


@case("inputs", "eval-bench-file-with-a-duplicate-id")
def _(c):
    rows = [dict(r, id=i) for r, i in zip(problems(4), ("p1", "p2", "p1", "p3"))]
    bench = write_jsonl(c.path("bench.jsonl"), rows)
    p = c.run(
        "eval_math.py --bench FILE (ids p1, p2, p1, p3)",
        eval_argv("eval_math.py", c.P["student"], c.path("out"), **{"--bench": bench}),
    )
    refused(c, p, [bench, "p1"], "evaluated a file where two problems share the id p1")


@case("inputs", "eval-answer-json-1e20")
def _(c):
    lines = [json.dumps(r) for r in problems(3)] + ['{"problem": "What is 10 to the 20th?", "answer": 1e20}']
    bench = write_lines(c.path("bench.jsonl"), lines)
    out = c.path("out")
    p = c.run(
        "eval_math.py --bench FILE (an answer 1e20 as a JSON number)",
        eval_argv("eval_math.py", c.P["student"], out, **{"--bench": bench}),
    )
    if p.rc == 2 and not p.traceback:
        refused(c, p, [bench])
        return
    golds = []
    for name in sorted(os.listdir(out)) if os.path.isdir(out) else []:
        if name.endswith(".jsonl"):
            golds += [json.loads(line).get("gold") for line in open(os.path.join(out, name))]
    big = [g for g in golds if g not in ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")]
    succeeded(c, p, None if big == ["1e20"] else f"the records' gold for the answer 1e20 is {big!r}")


@case("inputs", "plot-metrics-with-a-torn-middle-line")
def _(c):
    run = c.path("run")
    os.makedirs(run)
    recs = [{"step": 0, "eval": {"student": {"acc/pass@1": 0.25}}}]
    recs += [{"step": s, "loss": 0.1, "len/mean": 10.0, "kl/full": 0.2} for s in range(1, 5)]
    lines = [json.dumps(r) for r in recs]
    lines[2] = '{"step": 2, "loss": 0.1, "len/m'
    write_lines(os.path.join(run, "metrics.jsonl"), lines)
    png = c.path("curves.png")
    p = c.run(
        "python -m experiments.plot RUN --out x.png (line 3 torn)",
        ["-m", "experiments.plot", run, "--out", png],
    )
    refused(c, p, [("metrics.jsonl:3", "metrics.jsonl, line 3")], "plotted past a torn line in the middle")


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
