"""Bad inputs across the entry points: every expected one ends in exit code 2 and a short message
that names the culprit, before anything is written (faults during a run: tests/test_lost_runs.py).

The contract (errors.py): a bad flag, file or folder raises errors.UserError; errors.run prints it
as `<script>: error: <message>` on stderr (one or two lines: the flag as written and its value, or
the path and line, and what to do) and exits with 2, without a traceback. Flags are checked before
any model loads and before the run folder (--out) is made, so a refused run leaves no --out behind.

    CASES            one row per bad input: script, argv, the files its setup writes, the culprits
    test_bad_input   runs each row in-process through errors.run(module.main, argv)
    test_cli_*       a few rows through a real `python script.py ...` subprocess

The section between the CASES markers is plain Python without pytest, so that the same table
can be run row by row as subprocesses against any checkout of the project.

    .venv/bin/python -m pytest -q tests/test_bad_inputs.py
"""

# ==== CASES-BEGIN ==================================================================================
# Everything down to CASES-END is plain Python without pytest (see the module docstring).
# argv and culprits are format strings over the placeholders P: {student} {teacher} (tiny random
# models), {short_student} {short_teacher} (the same with a 256-token context), {train} {eval} {sft}
# (small data files), {tmp} (the case's own folder), {out} (= {tmp}/out, absent before the call) and
# whatever the case's setup adds. A culprit is a substring the error message must contain; a tuple
# is a choice of substrings, any one of which will do.
import collections as _collections
import importlib
import json as _json
import os
import pathlib
import pathlib as _pathlib
import shutil as _shutil
import subprocess
import sys
import time

import pytest
import transformers

import errors
import models

Case = _collections.namedtuple("Case", "id script argv culprits setup stage max_s")
# stage: "flags" = refused from the flags alone, before any model loads (the test enforces it);
#        "files" = refused once a model folder or data file is read (may load models first).
# max_s: the refusal must come within this many seconds (in-process), e.g. no hub round-trips.

NOT_EXIST = ("not exist", "no such", "not found")  # the missing-folder message, in any of its wordings
LONG_PROBLEM = "What is " + "+".join(["1"] * 160) + "?"  # ~420 tokens in the prompt: past a 256 context


def make_shared(root) -> dict:
    """Tiny random models and small data files under `root`; returns the placeholders P."""
    import models  # the models.py of the checkout under test

    root = _pathlib.Path(root)
    tok = models.tiny_tokenizer()
    P = {"root": str(root)}
    for name, seed, extra in (
        ("teacher", 1, {}),
        ("student", 2, {}),
        ("short_teacher", 1, {"max_position_embeddings": 256}),
        ("short_student", 2, {"max_position_embeddings": 256}),
    ):
        models.save(models.build_tiny(seed=seed, **extra), tok, str(root / name))
        P[name] = str(root / name)
    P["train"] = write_jsonl(root / "train.jsonl", problems(12))
    P["eval"] = write_jsonl(root / "eval.jsonl", problems(4, start=20))
    P["sft"] = write_jsonl(
        root / "sft.jsonl",
        [{"prompt": f"What is {i}+1?", "response": f"\\boxed{{{i + 1}}}"} for i in range(8)],
    )
    return P


def problems(n, start=0) -> list:
    return [
        {"problem": f"What is {i % 7}+{i // 7}?", "answer": str(i % 7 + i // 7)}
        for i in range(start, start + n)
    ]


def write_jsonl(path, rows) -> str:
    path = _pathlib.Path(path)
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    return str(path)


def without(argv, *flags) -> list:
    """argv without the given flags and their values."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in flags:
            skip = True
        else:
            out.append(a)
    return out


# --- setups: each writes its files into the case's folder `tmp` and adds placeholders to P


def broken_weights(how):
    def setup(tmp, P):
        dst = _pathlib.Path(tmp) / "broken"
        _shutil.copytree(P["student"], dst)
        f = dst / "model.safetensors"
        raw = f.read_bytes()
        f.write_bytes(raw[: len(raw) // 2] if how == "truncated" else b"\x17not a safetensors file\x00" * 64)
        P["broken"] = str(dst)

    return setup


def empty_model_dir(tmp, P):
    (_pathlib.Path(tmp) / "empty_model").mkdir()
    P["empty_model"] = str(_pathlib.Path(tmp) / "empty_model")


def data_dir(tmp, P):
    (_pathlib.Path(tmp) / "data_dir").mkdir()
    P["data_dir"] = str(_pathlib.Path(tmp) / "data_dir")


def sft_row(i, prompt=None):
    return {"prompt": prompt or f"What is {i}+2?", "response": f"\\boxed{{{i + 2}}}"}


def non_utf8(kind):
    """bad.jsonl whose line 2 holds the bytes ff fe inside a string."""

    def setup(tmp, P):
        good = sft_row(0) if kind == "sft" else problems(1)[0]
        key = "prompt" if kind == "sft" else "problem"
        line2 = (
            ('{"%s": "What is 1+' % key).encode()
            + b"\xff\xfe"
            + (b'?", "response": "\\\\boxed{2}"}\n' if kind == "sft" else b'?", "answer": "2"}\n')
        )
        path = _pathlib.Path(tmp) / "bad.jsonl"
        path.write_bytes((_json.dumps(good) + "\n").encode() + line2 + (_json.dumps(good) + "\n").encode())
        P["bad"] = str(path)

    return setup


def missing_field(kind):
    """bad.jsonl whose line 3 lacks its answer (problems) or its response (SFT pairs)."""

    def setup(tmp, P):
        rows = [sft_row(i) for i in range(4)] if kind == "sft" else problems(4)
        rows[2].pop("response" if kind == "sft" else "answer")
        P["bad"] = write_jsonl(_pathlib.Path(tmp) / "bad.jsonl", rows)

    return setup


def long_prompt_at(line, n, kind="problem"):
    """bad.jsonl of n rows whose row `line` (1-based) is longer than a 256-token context."""

    def setup(tmp, P):
        if kind == "sft":
            rows = [sft_row(i, LONG_PROBLEM if i == line - 1 else None) for i in range(n)]
        else:
            rows = problems(n)
            rows[line - 1] = {"problem": LONG_PROBLEM, "answer": "160"}
        P["bad"] = write_jsonl(_pathlib.Path(tmp) / "bad.jsonl", rows)

    return setup


def folder_with_checkpoint(tmp, P):
    """{out} holds a run with a checkpoint (a stand-in: the fresh run must refuse it unread)."""
    ckpt = _pathlib.Path(P["out"]) / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "train_state.pt").write_bytes(b"a checkpoint")
    (ckpt / "manifest.json").write_text('{"step": 1, "files": {"train_state.pt": 12}}')
    (_pathlib.Path(P["out"]) / "config.json").write_text("{}")
    (_pathlib.Path(P["out"]) / "run.json").write_text('{"script": "train_opd.py", "inputs": {}}')


def run_folder_without_config(tmp, P):
    """{out} exists but holds no config.json: no run started there."""
    _pathlib.Path(P["out"]).mkdir()


def saved_run(script, argv):
    """{out} holds the config.json of a run of `script` started with `argv` (a flag given with
    --resume is compared with it before anything else is read: no checkpoint is needed)."""

    def setup(tmp, P):
        if script == "tiny_world.build":
            from tiny_world import mix

            cfg = dict(mix.MODELS["student"], out=P["out"], threads=1, resume=False, steps=int(argv[0]))
        else:
            cfg = importlib.import_module(script).parse_config([a.format(**P) for a in argv])
        _pathlib.Path(P["out"]).mkdir()
        (_pathlib.Path(P["out"]) / "config.json").write_text(_json.dumps(cfg))

    return setup


def resumed(script, base, name, saved_value, value, culprits):
    """A row: --resume with `name` other than the saved run's (it ran with `name saved_value`)."""
    return Case(
        f"{script}--resume-with-another{name}",
        script,
        ["--out", "{out}", "--resume", name, value],
        culprits,
        saved_run(script, base + [name, saved_value]),
        "flags",
        None,
    )


def out_is_a_file(tmp, P):
    """--out names an existing file."""
    _pathlib.Path(P["out"]).write_text("not a folder")


# --- the rows

OPD = [
    "--student",
    "{student}",
    "--teacher",
    "{teacher}",
    "--data",
    "{train}",
    "--eval-data",
    "{eval}",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--micro-batch",
    "4",
    "--max-new-tokens",
    "8",
    "--eval-n",
    "4",
    "--threads",
    "1",
    "--out",
    "{out}",
]
OPD_SHORT = [a.replace("{student}", "{short_student}").replace("{teacher}", "{short_teacher}") for a in OPD]
OPSD = [
    "--student",
    "{student}",
    "--data",
    "{train}",
    "--eval-data",
    "{eval}",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--micro-batch",
    "4",
    "--max-new-tokens",
    "8",
    "--eval-n",
    "4",
    "--measure-n",
    "0",
    "--threads",
    "1",
    "--out",
    "{out}",
]
GRPO = [
    "--student",
    "{student}",
    "--data",
    "{train}",
    "--eval-data",
    "{eval}",
    "--steps",
    "2",
    "--batch-size",
    "4",
    "--group-size",
    "2",
    "--micro-batch",
    "8",
    "--max-new-tokens",
    "8",
    "--eval-n",
    "4",
    "--threads",
    "1",
    "--out",
    "{out}",
]
SFT = [
    "--student",
    "{student}",
    "--n-train",
    "8",
    "--eval-n",
    "4",
    "--batch-size",
    "4",
    "--micro-batch",
    "4",
    "--steps",
    "2",
    "--threads",
    "1",
    "--out",
    "{out}",
]
SFT_JSONL = SFT + ["--source", "jsonl", "--data-path", "{sft}"]
EVAL = [
    "--model",
    "{student}",
    "--bench",
    "synthetic",
    "--synthetic-n",
    "4",
    "--max-new-tokens",
    "8",
    "--batch-size",
    "4",
    "--threads",
    "1",
    "--quiet",
    "--out",
    "{out}",
]
PROBE = EVAL + ["--probe-teacher", "{teacher}"]


def flag(script, base, name, value, *more, id=None):
    """A row whose culprit is one flag and its value."""
    return Case(
        id or f"{script}{name}={value}",
        script,
        base + [name, value],
        [name, value, *more],
        None,
        "flags",
        None,
    )


def files(id, script, argv, culprits, setup=None, max_s=None):
    return Case(id, script, argv, culprits, setup, "files", max_s)


CASES = [
    # ---- train_opd.py: every numeric flag out of range
    flag("train_opd", OPD, "--top-p", "1.5"),
    flag("train_opd", OPD, "--top-p", "0"),
    flag("train_opd", OPD, "--temperature", "-1"),
    flag("train_opd", OPD, "--max-new-tokens", "0"),
    flag("train_opd", OPD, "--batch-size", "0"),
    flag("train_opd", OPD, "--micro-batch", "0"),
    flag("train_opd", OPD, "--micro-batch", "64", "4 rows"),  # above --batch-size 4: typed, so refused
    flag("train_opd", OPD, "--lr", "-1"),
    flag("train_opd", OPD + ["--lr", "0.0001"], "--min-lr", "0.0002", "--lr 0.0001"),
    flag("train_opd", OPD, "--eval-n", "0"),
    flag("train_opd", OPD, "--steps", "0"),
    flag("train_opd", OPD, "--steps", "-3"),
    flag("train_opd", OPD, "--ckpt-every", "-1"),
    flag("train_opd", OPD, "--eval-every", "-1"),
    flag("train_opd", OPD, "--rollout-batch", "-1"),
    flag("train_opd", OPD, "--chunk-size", "-1"),
    flag("train_opd", OPD, "--grad-clip", "-1"),
    flag("train_opd", OPD, "--k", "0"),
    flag("train_opd", OPD, "--stop-at", "-1"),
    flag("train_opd", OPD, "--threads", "-1"),
    Case(
        "train_opd--data-path-without--data",
        "train_opd",
        without(OPD, "--data") + ["--data-path", "{train}"],
        ["--data-path", "{train}"],
        None,
        "flags",
        None,
    ),
    # ---- train_opd.py: model folders, data files, run folders
    files(
        "train_opd--student-missing-folder",
        "train_opd",
        OPD[2:] + ["--student", "./no/such/dir"],
        ["no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    files(
        "train_opd--teacher-missing-folder",
        "train_opd",
        OPD + ["--teacher", "{tmp}/no/such/dir"],
        ["{tmp}/no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    files(
        "train_opd--teacher-folder-without-config",
        "train_opd",
        OPD + ["--teacher", "{empty_model}"],
        ["{empty_model}", "config.json"],
        empty_model_dir,
    ),
    files(
        "train_opd--student-truncated-safetensors",
        "train_opd",
        OPD + ["--student", "{broken}"],
        ["{broken}", "model.safetensors"],
        broken_weights("truncated"),
    ),
    files(
        "train_opd--data-missing-file",
        "train_opd",
        OPD + ["--data", "{tmp}/missing.jsonl"],
        ["{tmp}/missing.jsonl"],
    ),
    files(
        "train_opd--data-is-a-directory",
        "train_opd",
        OPD + ["--data", "{data_dir}"],
        ["{data_dir}", ("director", "folder", "not a file")],
        data_dir,
    ),
    files(
        "train_opd--data-non-utf8",
        "train_opd",
        OPD + ["--data", "{bad}"],
        ["{bad}", ("{bad}:2", "line 2")],
        non_utf8("problem"),
    ),
    files(
        "train_opd--data-missing-field",
        "train_opd",
        OPD + ["--data", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3"), "answer"],
        missing_field("problem"),
    ),
    files(
        "train_opd--eval-data-missing-field",
        "train_opd",
        OPD + ["--eval-data", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3"), "answer"],
        missing_field("problem"),
    ),
    files(
        "train_opd-long-prompt-at-line-1001",
        "train_opd",
        OPD_SHORT + ["--data", "{bad}"],
        ["{bad}", ("{bad}:1001", "line 1001")],
        long_prompt_at(1001, 1010),
    ),
    files(
        "train_opd-long-prompt-in-held-out",
        "train_opd",
        OPD_SHORT + ["--eval-data", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3")],
        long_prompt_at(3, 4),
    ),
    files("train_opd--k-above-vocabulary", "train_opd", OPD + ["--k", "300"], ["--k", "300"]),
    files("train_opd--resume-without-checkpoint", "train_opd", OPD + ["--resume"], ["--resume", "{out}"]),
    files(
        "train_opd-fresh-run-into-a-checkpoint",
        "train_opd",
        OPD,
        ["{out}", "--resume"],
        folder_with_checkpoint,
    ),
    files("train_opd--out-is-a-file", "train_opd", OPD, ["{out}"], out_is_a_file),
    Case(
        "train_opd--resume-without-config-json",
        "train_opd",
        ["--out", "{out}", "--resume"],
        ["--resume", "{out}", "config.json"],
        run_folder_without_config,
        "flags",
        None,
    ),
    resumed("train_opd", OPD, "--lr", "3e-3", "1e-3", ["--lr", "0.003", "0.001", "{out}"]),
    resumed("train_opsd", OPSD, "--k", "5", "7", ["--k", "5", "7"]),
    resumed("train_grpo", GRPO, "--group-size", "2", "4", ["--group-size", "2", "4"]),
    resumed("train_sft", SFT, "--batch-size", "4", "8", ["--batch-size", "4", "8"]),
    # ---- train_opsd.py
    flag("train_opsd", OPSD, "--ema-decay", "1.5"),
    flag("train_opsd", OPSD, "--measure-n", "-1"),
    flag("train_opsd", OPSD, "--top-p", "1.5"),
    flag("train_opsd", OPSD, "--micro-batch", "0"),
    files(
        "train_opsd--student-missing-folder",
        "train_opsd",
        OPSD + ["--student", "{tmp}/no/such/dir"],
        ["{tmp}/no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    files(
        "train_opsd--table-missing-run", "train_opsd", ["--table", "{tmp}/no/such/run"], ["{tmp}/no/such/run"]
    ),
    files(
        "train_opsd--data-non-utf8",
        "train_opsd",
        OPSD + ["--data", "{bad}"],
        ["{bad}", ("{bad}:2", "line 2")],
        non_utf8("problem"),
    ),
    # ---- train_grpo.py
    flag("train_grpo", GRPO, "--clip-low", "2"),
    flag("train_grpo", GRPO, "--clip-high", "-1"),
    flag("train_grpo", GRPO, "--group-size", "1"),
    flag("train_grpo", GRPO, "--minibatches", "0"),
    flag("train_grpo", GRPO, "--batch-size", "0"),
    flag("train_grpo", GRPO, "--micro-batch", "9", "8 rows"),  # 4 prompts x 2 samples
    flag("train_grpo", GRPO, "--temperature", "-1"),
    flag("train_grpo", GRPO, "--eval-every", "-1"),
    Case(
        "train_grpo--data-path-without--data",
        "train_grpo",
        without(GRPO, "--data") + ["--data-path", "{train}"],
        ["--data-path", "{train}"],
        None,
        "flags",
        None,
    ),
    files(
        "train_grpo-long-prompt-at-line-1001",
        "train_grpo",
        GRPO + ["--student", "{short_student}", "--data", "{bad}"],
        ["{bad}", ("{bad}:1001", "line 1001")],
        long_prompt_at(1001, 1010),
    ),
    # ---- train_sft.py
    flag("train_sft", SFT, "--epochs", "0"),
    flag("train_sft", SFT, "--epochs", "-1"),
    flag("train_sft", SFT, "--lr", "-1"),
    flag("train_sft", SFT, "--min-lr", "-1"),
    flag("train_sft", SFT, "--steps", "0"),
    flag("train_sft", SFT, "--n-train", "0"),
    flag("train_sft", SFT, "--micro-batch", "0"),
    flag("train_sft", SFT, "--micro-batch", "5", "4 rows"),
    flag("train_sft", SFT, "--grad-clip", "-1"),
    flag(
        "train_sft", SFT + ["--preset", "sft-student", "--teacher", "{teacher}"], "--trace-temperature", "-1"
    ),
    Case(
        "train_sft--data-path-without--data",
        "train_sft",
        SFT + ["--data-path", "{train}"],
        ["--data-path", "{train}"],
        None,
        "flags",
        None,
    ),
    files(
        "train_sft--student-missing-folder",
        "train_sft",
        SFT + ["--student", "{tmp}/no/such/dir"],
        ["{tmp}/no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    files(
        "train_sft--data-path-missing-file",
        "train_sft",
        SFT_JSONL + ["--data-path", "{tmp}/missing.jsonl"],
        ["{tmp}/missing.jsonl"],
    ),
    files(
        "train_sft--data-path-non-utf8",
        "train_sft",
        SFT_JSONL + ["--data-path", "{bad}"],
        ["{bad}", ("{bad}:2", "line 2")],
        non_utf8("sft"),
    ),
    files(
        "train_sft--data-path-missing-field",
        "train_sft",
        SFT_JSONL + ["--data-path", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3"), "response"],
        missing_field("sft"),
    ),
    files(
        "train_sft-long-prompt-in-sft-data",
        "train_sft",
        SFT_JSONL + ["--student", "{short_student}", "--data-path", "{bad}"],
        ["{bad}", ("{bad}:5", "line 5")],
        long_prompt_at(5, 8, "sft"),
    ),
    # ---- eval_math.py
    flag("eval_math", EVAL, "--limit", "-1"),
    flag("eval_math", EVAL, "--k", "0"),
    flag("eval_math", EVAL, "--top-p", "1.5"),
    flag("eval_math", EVAL, "--top-p", "0"),
    flag("eval_math", EVAL, "--temperature", "-1"),
    flag("eval_math", EVAL, "--max-new-tokens", "0"),
    flag("eval_math", EVAL, "--batch-size", "0"),
    flag("eval_math", EVAL, "--top-k", "-1"),
    flag("eval_math", EVAL, "--synthetic-n", "0"),
    flag("eval_math", EVAL, "--hard-frac", "2"),
    flag("eval_math", EVAL, "--max-ops", "0"),
    files(
        "eval_math--model-missing-folder",
        "eval_math",
        EVAL + ["--model", "./no/such/dir"],
        ["no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    files(
        "eval_math--model-corrupt-safetensors",
        "eval_math",
        EVAL + ["--model", "{broken}"],
        ["{broken}", "model.safetensors"],
        broken_weights("garbage"),
    ),
    files(
        "eval_math--bench-missing-file",
        "eval_math",
        EVAL + ["--bench", "{tmp}/missing.jsonl"],
        ["{tmp}/missing.jsonl"],
    ),
    files(
        "eval_math--bench-is-a-directory",
        "eval_math",
        EVAL + ["--bench", "{data_dir}"],
        ["{data_dir}", ("director", "folder", "not a file")],
        data_dir,
    ),
    files(
        "eval_math--bench-non-utf8",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}", ("{bad}:2", "line 2")],
        non_utf8("problem"),
    ),
    files(
        "eval_math--bench-missing-field",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3"), "answer"],
        missing_field("problem"),
    ),
    files(
        "eval_math-long-prompt-in-bench",
        "eval_math",
        EVAL + ["--model", "{short_student}", "--bench", "{bad}"],
        ["{bad}", ("{bad}:3", "line 3")],
        long_prompt_at(3, 4),
    ),
    # ---- probes.py (eval_math.py's flags and checks, and the teacher's)
    flag("probes", PROBE, "--probe-fractions", "0,1.5"),
    flag("probes", PROBE, "--probe-fractions", "0,half"),
    flag("probes", PROBE, "--k", "0"),
    flag("probes", PROBE, "--k", "2", "does not use it"),  # an evaluation flag the probe has no use for
    flag("probes", PROBE, "--pi", "answer_only", "does not use it"),
    files(
        "probes--probe-teacher-missing-folder",
        "probes",
        EVAL + ["--probe-teacher", "{tmp}/no/such/dir"],
        ["{tmp}/no/such/dir", NOT_EXIST],
        max_s=5,
    ),
    # ---- python -m tiny_world (tiny_world/build.py)
    Case(
        "tiny_world--steps=-1",
        "tiny_world.build",
        ["--model", "student", "--steps", "-1", "--threads", "1", "--out", "{out}"],
        ["--steps", "-1"],
        None,
        "flags",
        None,
    ),
    files(
        "tiny_world--resume-without-checkpoint",
        "tiny_world.build",
        ["--model", "student", "--resume", "--threads", "1", "--out", "{out}"],
        ["--resume", "{out}"],
    ),
    Case(
        "tiny_world--resume-without-config-json",
        "tiny_world.build",
        ["--out", "{out}", "--resume"],
        ["--resume", "{out}", "config.json"],
        run_folder_without_config,
        "flags",
        None,
    ),
    Case(
        "tiny_world--resume-with-another--steps",
        "tiny_world.build",
        ["--out", "{out}", "--resume", "--steps", "9"],
        ["--steps", "7", "9"],
        saved_run("tiny_world.build", ["7"]),
        "flags",
        None,
    ),
]


def case_placeholders(shared: dict, tmp) -> dict:
    tmp = _pathlib.Path(tmp)
    return dict(shared, tmp=str(tmp), out=str(tmp / "out"))


def expand(case: Case, P: dict) -> tuple:
    """(argv, culprits) of a case with the placeholders filled in."""
    argv = [a.format(**P) for a in case.argv]
    culprits = [
        tuple(c.format(**P) for c in alt) if isinstance(alt, tuple) else alt.format(**P)
        for alt in case.culprits
    ]
    return argv, culprits


def error_message(stderr: str) -> str:
    """The error message: from the last `error:` on stderr to the end ('' when there is none)."""
    i = stderr.rfind("error:")
    return stderr[i:].strip() if i >= 0 else ""


def missing_culprits(message: str, culprits: list) -> list:
    """The culprits (or choices of culprits) that the message does not name."""
    return [
        c for c in culprits if not (any(x in message for x in c) if isinstance(c, tuple) else c in message)
    ]


# ==== CASES-END ====================================================================================


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    return make_shared(tmp_path_factory.mktemp("shared"))


class LoadedTooEarly(AssertionError):
    """A model was loaded (or built) before a bad flag was refused."""


def forbid_model_loads(monkeypatch):
    def refuse(*a, **kw):
        raise LoadedTooEarly(
            "a model was loaded before the bad flag was refused: check flags before any model loads"
        )

    monkeypatch.setattr(models, "load", refuse)
    monkeypatch.setattr(models, "build_tiny", refuse)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)


def test_the_table_covers_every_entry_point():
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.script for c in CASES} == {
        "train_opd",
        "train_opsd",
        "train_grpo",
        "train_sft",
        "eval_math",
        "probes",
        "tiny_world.build",
    }


COMMAND_LINE = {"eval_math": "eval_cli"}  # `python eval_math.py` runs eval_cli.main


def assert_refused(script: str, argv: list, culprits: list, capsys) -> str:
    """Run `script`'s main(argv) through errors.run and check the contract: exit code 2, no
    traceback, a message of one or two lines that names every culprit. Returns the message."""
    module = importlib.import_module(COMMAND_LINE.get(script, script))
    with pytest.raises(SystemExit) as exit_:
        errors.run(module.main, argv)
    err = capsys.readouterr().err
    message = error_message(err)
    assert exit_.value.code == 2, f"exit code {exit_.value.code!r}; stderr:\n{err[-2000:]}"
    assert "Traceback" not in err
    assert message, f"no `error:` line on stderr:\n{err[-2000:]}"
    assert len(message.splitlines()) <= 2, f"the message should be one or two lines:\n{message}"
    assert not missing_culprits(message, culprits), (
        f"the message does not name {missing_culprits(message, culprits)}:\n{message}"
    )
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, shared, tmp_path, capsys, monkeypatch):
    P = case_placeholders(shared, tmp_path)
    if case.setup:
        case.setup(tmp_path, P)
    argv, culprits = expand(case, P)
    out_existed = os.path.exists(P["out"])
    if case.stage == "flags":
        forbid_model_loads(monkeypatch)
    t0 = time.perf_counter()
    assert_refused(case.script, argv, culprits, capsys)
    elapsed = time.perf_counter() - t0
    if not out_existed:
        assert not os.path.exists(P["out"]), (
            f"the refused run left its --out folder behind: {os.listdir(P['out'])}"
        )
    if case.max_s:
        assert elapsed < case.max_s, f"refused after {elapsed:.1f} s (should be under {case.max_s} s)"


# -----------------------------------------------------------------------------
# The command line: errors.run is what `python script.py` runs

CLI_CASES = {
    "train_opd--top-p=1.5": ("train_opd.py", OPD + ["--top-p", "1.5"], ["--top-p", "1.5"]),
    "train_grpo--clip-low=2": ("train_grpo.py", GRPO + ["--clip-low", "2"], ["--clip-low", "2"]),
    "eval_math--model-missing-folder": (
        "eval_math.py",
        EVAL + ["--model", "./no/such/dir"],
        ["no/such/dir", NOT_EXIST],
    ),
    "probes--probe-fractions=0,1.5": (
        "probes.py",
        PROBE + ["--probe-fractions", "0,1.5"],
        ["--probe-fractions", "0,1.5"],
    ),
}
REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cli_runs(shared, tmp_path_factory):
    """Start every CLI case at once (each pays the import of torch), then collect them."""
    procs = {}
    for name, (script, argv, culprits) in CLI_CASES.items():
        P = case_placeholders(shared, tmp_path_factory.mktemp("cli"))
        argv = [a.format(**P) for a in argv]
        procs[name] = (
            P,
            subprocess.Popen(
                [sys.executable, str(REPO / script), *argv],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=dict(os.environ, OMP_NUM_THREADS="1"),
            ),
        )
    yield {name: (P, *proc.communicate(timeout=300), proc.returncode) for name, (P, proc) in procs.items()}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_exit_code_and_message(name, cli_runs):
    P, stdout, stderr, code = cli_runs[name]
    culprits = [
        tuple(c.format(**P) for c in x) if isinstance(x, tuple) else x.format(**P) for x in CLI_CASES[name][2]
    ]
    assert code == 2, f"exit code {code}; stderr:\n{stderr[-2000:]}"
    assert "Traceback" not in stderr
    message = error_message(stderr)
    assert message.startswith("error:") and f"{CLI_CASES[name][0]}: error:" in stderr
    assert not missing_culprits(message, culprits), message
    assert not os.path.exists(P["out"])
