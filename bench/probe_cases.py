"""The hostile probe's cases (bench/hostile_probe.py), by group: folder ownership, checkpoints and
kills, resume by content, the report's runner, bad inputs. Each is a function of its `Case` that
sets up what a careless or unlucky user leaves behind, runs the scripts, and records a fault for
every outcome that is not the one a user should get (probe_harness.py's judgements).
"""

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time

from probe_harness import (
    HUGE_SEED,
    REPORT_CODE,
    TENSOR,
    Proc,
    as_argv,
    copy_run,
    eval_argv,
    finishes,
    grpo_flags,
    judge_resume,
    kept,
    model_kept,
    opd_flags,
    opsd_flags,
    problems,
    refused,
    run_complete,
    run_complete_but,
    sft_flags,
    snapshot,
    succeeded,
    training_steps,
    truncate_half,
    write_jsonl,
    write_lines,
)

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
