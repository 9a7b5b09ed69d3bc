"""The hostile probe's harness (bench/hostile_probe.py): the tiny models, data and template runs it
builds with the checkout's own code, a command run as a user runs it (`Proc`), a case's record of
its faults (`Case`), and the judgements the cases share: a refusal that names its culprit, a
success, files kept byte for byte, a folder that still reaches a finished run.
"""

import json
import os
import shutil
import subprocess
import tempfile
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
