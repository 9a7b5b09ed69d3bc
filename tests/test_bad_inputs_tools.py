"""Bad inputs that must neither pass without a word nor end in a traceback: duplicate problem ids,
float and NaN answers, JSON that Python's reader refuses, teacher contexts past the model's context,
flags the chosen mode ignores, two benchmarks writing one records file, a damaged tiny-world model,
unknown devices, and damaged or foreign run folders given to the tools that read them
(experiments/plot.py, train_opsd.py --table, python -m tiny_world --match).

Each row of CASES runs in-process through errors.run(module.main, argv), with tests/test_bad_inputs.py's
harness and contract: exit code 2, no traceback, a message of one or two lines that names the
culprits, and nothing written that `absent` names (--out by default). A row of stage "flags" is
refused before any model loads (the test makes a load fail loudly).

    .venv/bin/python -m pytest -q tests/test_bad_inputs_tools.py
"""

import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch
from test_bad_inputs import (
    EVAL,
    OPSD,
    PROBE,
    SFT,
    SFT_JSONL,
    assert_refused,
    broken_weights,
    case_placeholders,
    error_message,
    expand,
    forbid_model_loads,
    make_shared,
    missing_culprits,
    problems,
    write_jsonl,
)

import data
import data_files
import grader
import train_opsd
import train_sft

# stage: "flags" = refused before any model loads (enforced); "files" = may load a model first.
# absent: format strings of paths the refused command must not leave behind.
Case = collections.namedtuple("Case", "id script argv culprits setup stage absent", defaults=("{out}",))


def row(id, script, argv, culprits, setup=None, stage="flags", absent=("{out}",)):
    return Case(id, script, argv, culprits, setup, stage, absent)


# --- setups: each writes its files into the case's folder and adds placeholders to P


def lines_file(name, lines, key="bad"):
    """{key}: a data file `name` in the case's folder holding `lines` (text, one a line)."""

    def setup(tmp, P):
        path = pathlib.Path(tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines))
        P[key] = str(path)

    return setup


def problem_line(i, answer=None, **extra) -> str:
    """A JSON line of a problem; `answer` is inserted as written (raw JSON text)."""
    rec = {"problem": f"What is {i}+1?", **extra}
    text = json.dumps(rec)[:-1]
    return text + f', "answer": {answer if answer is not None else json.dumps(str(i + 1))}}}'


DUPLICATE_IDS = [
    problem_line(0, id="p1"),
    problem_line(1, id="p2"),
    problem_line(2, id="p1"),
    problem_line(3),
]
NAN_ANSWER = [problem_line(0), problem_line(1, "NaN"), problem_line(2), problem_line(3)]
INFINITE_ANSWER = [problem_line(i, "-Infinity" if i == 2 else None) for i in range(12)]
DEEP_LINE = '{"problem": "What is 1+1?", "answer": ' + "[" * 100_000 + "]" * 100_000 + "}"
LONG_INT_LINE = '{"problem": "What is 1+1?", "answer": ' + "7" * 5000 + "}"
DEEP_NESTING = [problem_line(0), DEEP_LINE, problem_line(2), problem_line(3)]
LONG_INTEGER = [problem_line(i) for i in range(12)]
LONG_INTEGER[2] = LONG_INT_LINE
LONG_ANSWER = "+".join(["1"] * 1000)  # a short problem whose answer hint alone fills a 2048-token context


def long_json_integer(tmp, P):
    """bad.json: a list of problems whose item on line 4 holds an integer of 5000 digits."""
    items = [problem_line(i) for i in range(3)] + [LONG_INT_LINE]
    path = pathlib.Path(tmp) / "bad.json"
    path.write_text("[\n" + ",\n".join(items) + "\n]\n")
    P["bad"] = str(path)


def long_answer_at(line, n):
    """bad.jsonl of n problems whose answer on `line` is long: the student's prompt fits the tiny
    model's 2048-token context, the teacher's answer_only context (the prompt and the answer) does not."""
    lines = [problem_line(i) for i in range(n)]
    lines[line - 1] = problem_line(line - 1, json.dumps(LONG_ANSWER))
    return lines_file("bad.jsonl", lines)


def two_files_named_x(tmp, P):
    """{tmp}/a/x.jsonl and {tmp}/b/x.jsonl: two benchmarks whose records would both be x.jsonl."""
    for sub in ("a", "b"):
        (pathlib.Path(tmp) / sub).mkdir()
        write_jsonl(pathlib.Path(tmp) / sub / "x.jsonl", problems(2))


def damaged_world(tmp, P):
    """{world}: a tiny world folder whose teacher's model.safetensors is cut in half, beside a record
    (sft_run.json) for each model: a record alone does not make a model reusable."""
    world = pathlib.Path(tmp) / "world"
    world.mkdir()
    broken_weights("truncated")(tmp, P)
    shutil.move(P["broken"], world / "teacher")
    shutil.copytree(P["student"], world / "student")
    for name in ("teacher", "student"):
        (world / name / "sft_run.json").write_text(json.dumps({"params": 1, "eval": {}}))
    P["world"] = str(world)


def metrics_run(lines, summary=None, config=None, key="run"):
    """{key}: a run folder whose metrics.jsonl holds `lines` (text), with summary.json and config.json
    when given (dicts, or text written as is)."""

    def setup(tmp, P):
        run = pathlib.Path(tmp) / key
        run.mkdir()
        (run / "metrics.jsonl").write_text("".join(line + "\n" for line in lines))
        for name, content in (("summary.json", summary), ("config.json", config)):
            if content is not None:
                (run / name).write_text(content if isinstance(content, str) else json.dumps(content))
        P[key] = str(run)

    return setup


def good_metrics(steps=4) -> list:
    recs = [{"step": 0, "eval": {"student": {"acc/pass@1": 0.25}}}]
    recs += [{"step": s, "loss": 0.1, "len/mean": 10.0, "kl/full": 0.2} for s in range(1, steps + 1)]
    return [json.dumps(r) for r in recs]


def with_line(lines, i, text) -> list:
    """`lines` with line i (1-based) replaced by `text`."""
    return lines[: i - 1] + [text] + lines[i:]


EVAL_CELL = {"acc/pass@1": 0.5, "acc/pass@1_ci": [0.2, 0.8], "format/boxed_only": 0.1, "len/mean": 12.0}
OPSD_SUMMARY = {"teacher": EVAL_CELL, "student_before": EVAL_CELL, "student_after": EVAL_CELL, "steps": 4}
OPSD_CONFIG = {"pi": "answer_only", "loss": "topk_tail", "seed": 0}
SFT_CONFIG = {"source": "jsonl", "loss": None, "seed": 0, "epochs": None}
SFT_SUMMARY = {"steps": 4, "steps_done": 4, "eval": {"greedy": {"acc": 0.5}, "sampled": {"acc": 0.4}}}
GRPO_CONFIG = {"group_size": 4, "clip_low": 0.2, "seed": 0}
GRPO_SUMMARY = {"student_before": EVAL_CELL, "student_after": EVAL_CELL, "steps": 4, "loss": "grpo"}
FAR_CONFIG = {
    "shape": {},
    "snapshot_every": 2,
    "data_seed": 0,
    "seed": 0,
    "eval_max_new_tokens": 8,
    "eval_batch_size": 4,
}
MATCH = ["--match", "{student}", "--far-run", "{run}", "--out", "{out}"]


CASES = [
    # ---- 1. duplicate problem ids: refused at load, naming the file, the id and both lines
    row(
        "eval_math-duplicate-ids-in-bench",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}:3", "{bad}:1", "'p1'"],
        lines_file("bad.jsonl", DUPLICATE_IDS),
    ),
    row(
        "train_opsd-duplicate-ids-in-held-out",
        "train_opsd",
        OPSD + ["--eval-data", "{bad}"],
        ["{bad}:3", "{bad}:1", "'p1'"],
        lines_file("bad.jsonl", DUPLICATE_IDS),
    ),
    # ---- 2. NaN and infinite answers: no answer equals them (a float keeps its text: see the tests below)
    row(
        "eval_math-nan-answer",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}:2", "answer", "NaN"],
        lines_file("bad.jsonl", NAN_ANSWER),
    ),
    row(
        "train_opsd-infinite-answer-in-training-data",
        "train_opsd",
        OPSD + ["--data", "{bad}"],
        ["{bad}:3", "answer", "-Infinity"],
        lines_file("bad.jsonl", INFINITE_ANSWER),
    ),
    # ---- 3. teacher contexts (with PI) past the model's context, before any weights load
    row(
        "train_opsd-held-out-teacher-context-too-long",
        "train_opsd",
        OPSD + ["--pi", "answer_only", "--eval-data", "{bad}"],
        ["{bad}:3", "teacher contexts", "2048"],
        long_answer_at(3, 4),
    ),
    row(
        "train_opsd--measure-n-teacher-context-too-long",
        "train_opsd",
        OPSD + ["--pi", "answer_only", "--eval-data", "{bad}", "--eval-n", "1", "--measure-n", "2"],
        ["{bad}", "--measure-n", "2048"],
        long_answer_at(2, 2),
    ),
    row(
        "probes-teacher-context-too-long",
        "probes",
        EVAL + ["--probe-teacher", "{short_teacher}", "--max-new-tokens", "200"],
        ["for the teacher", "256"],
    ),
    # ---- 4. flags the chosen mode ignores
    row(
        "eval_math--data-path-with-synthetic",
        "eval_math",
        EVAL + ["--data-path", "{eval}"],
        ["--data-path", "{eval}", "drop --data-path"],
    ),
    row(
        "eval_math--data-path-with-a-file-bench",
        "eval_math",
        EVAL + ["--bench", "{eval}", "--data-path", "{train}"],
        ["--data-path", "{train}", "drop --data-path"],
    ),
    row(
        "eval_math--rule-without-system_prompt",
        "eval_math",
        EVAL + ["--rule", "Be brief."],
        ["--rule", "Be brief."],
    ),
    row(
        "probes--rule", "probes", PROBE + ["--rule", "Be brief."], ["--rule", "Be brief.", "does not use it"]
    ),
    row(
        "train_opsd--rule-without-system_prompt",
        "train_opsd",
        OPSD + ["--pi", "answer_only", "--rule", "Be brief."],
        ["--rule", "--pi answer_only"],
    ),
    row(
        "train_sft--epochs-with--steps",
        "train_sft",
        SFT + ["--epochs", "1"],
        ["--steps 2", "--epochs 1.0", "drop one"],
    ),
    row(
        "train_opsd--ema-decay-without-ema-teacher",
        "train_opsd",
        OPSD + ["--ema-decay", "0.5"],
        ["--ema-decay", "0.5", "--teacher-mode ema"],
    ),
    row(
        "train_sft--max-rep-without-traces",
        "train_sft",
        SFT + ["--max-rep", "0.3"],
        ["--max-rep", "0.3", "--source reference"],
    ),
    row(
        "tiny_world--match-with--model",
        "tiny_world.build",
        MATCH + ["--model", "student"],
        ["--model", "drop it"],
        metrics_run(good_metrics(), {}, FAR_CONFIG),
    ),
    # ---- 5. two benchmarks whose records share a file name
    row(
        "eval_math-two-benches-named-x",
        "eval_math",
        EVAL + ["--bench", "{tmp}/a/x.jsonl,{tmp}/b/x.jsonl"],
        ["{tmp}/a/x.jsonl", "{tmp}/b/x.jsonl", "x.jsonl"],
        two_files_named_x,
    ),
    row(
        "eval_math-one-bench-twice",
        "eval_math",
        EVAL + ["--bench", "synthetic,synthetic"],
        ["synthetic", "twice"],
    ),
    # ---- 6. a tiny world whose model is cut short is not reused
    row(
        "tiny_world-reuses-a-truncated-model",
        "tiny_world.build",
        ["--dir", "{world}", "--threads", "1"],
        ["{world}/teacher", "model.safetensors", "--force"],
        damaged_world,
        "files",
    ),
    # ---- 7. valid JSON that Python's reader refuses
    row(
        "eval_math-deep-nesting",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}:2", "nested"],
        lines_file("bad.jsonl", DEEP_NESTING),
    ),
    row(
        "train_opsd-over-long-integer",
        "train_opsd",
        OPSD + ["--data", "{bad}"],
        ["{bad}:3", "integer"],
        lines_file("bad.jsonl", LONG_INTEGER),
    ),
    row(
        "train_sft-deep-nesting-in-pairs",
        "train_sft",
        SFT_JSONL + ["--data-path", "{bad}"],
        ["{bad}:1", "nested"],
        lines_file(
            "bad.jsonl", ['{"prompt": "What is 1+1?", "response": ' + "[" * 100_000 + "]" * 100_000 + "}"]
        ),
    ),
    row(
        "eval_math-over-long-integer-in-json-list",
        "eval_math",
        EVAL + ["--bench", "{bad}"],
        ["{bad}:5", "integer"],
        long_json_integer,
    ),
    # ---- 8. devices this machine does not have, refused before any weights load
    row("eval_math--device-foo", "eval_math", EVAL + ["--device", "foo"], ["--device", "foo"]),
    row("eval_math--device-cuda:7", "eval_math", EVAL + ["--device", "cuda:7"], ["--device", "cuda:7"]),
    row("probes--device-foo", "probes", PROBE + ["--device", "foo"], ["--device", "foo"]),
    # ---- 9. damaged or foreign run folders, and outputs that cannot be written
    row(
        "plot-torn-line",
        "experiments.plot",
        ["{run}"],
        ["{run}/metrics.jsonl:3"],
        metrics_run(with_line(good_metrics(), 3, '{"step": 2, "loss": 0.1, "len/m')),
        absent=("{run}/curves.png",),
    ),
    row(
        "plot-non-numeric-metric",
        "experiments.plot",
        ["{run}", "--table"],
        ["{run}/metrics.jsonl:2", "'loss'"],
        metrics_run(with_line(good_metrics(), 2, '{"step": 1, "loss": "n/a", "len/mean": 10.0}')),
        absent=("{run}/curves.png",),
    ),
    row(
        "plot-damaged-summary",
        "experiments.plot",
        ["{run}"],
        ["{run}/summary.json"],
        metrics_run(good_metrics(), '{"steps": 4, "eval": {"samp'),
        absent=("{run}/curves.png",),
    ),
    row("plot-missing-folder", "experiments.plot", ["{tmp}/no/such/run"], ["{tmp}/no/such/run"], absent=()),
    row(
        "plot--out-bad-extension",
        "experiments.plot",
        ["{run}", "--out", "{tmp}/curves.txt"],
        ["--out", "{tmp}/curves.txt"],
        metrics_run(good_metrics()),
        absent=("{tmp}/curves.txt",),
    ),
    row(
        "plot--out-into-missing-folder",
        "experiments.plot",
        ["{run}", "--out", "{tmp}/no/dir/c.png"],
        ["--out", "{tmp}/no/dir/c.png"],
        metrics_run(good_metrics()),
        absent=("{tmp}/no",),
    ),
    row(
        "train_opsd--table-sft-run",
        "train_opsd",
        ["--table", "{run}"],
        ["--table", "{run}", "config.json"],
        metrics_run(good_metrics(), SFT_SUMMARY, SFT_CONFIG),
    ),
    row(
        "train_opsd--table-grpo-run",
        "train_opsd",
        ["--table", "{run}"],
        ["--table", "{run}", "config.json"],
        metrics_run(good_metrics(), GRPO_SUMMARY, GRPO_CONFIG),
    ),
    row(
        "train_opsd--table-torn-summary",
        "train_opsd",
        ["--table", "{run}"],
        ["--table", "{run}/summary.json"],
        metrics_run(good_metrics(), '{"teacher": {"acc', OPSD_CONFIG),
    ),
    row(
        "train_opsd--table-unfinished-run",
        "train_opsd",
        ["--table", "{run}"],
        ["--table", "{run}/summary.json", "not found"],
        metrics_run(good_metrics(), None, OPSD_CONFIG),
    ),
    row(
        "train_opsd--table-summary-without-teacher",
        "train_opsd",
        ["--table", "{run}"],
        ["--table", "{run}", "teacher"],
        metrics_run(good_metrics(), dict(OPSD_SUMMARY, teacher=None), OPSD_CONFIG),
    ),
    row(
        "tiny_world--match-missing-far-run",
        "tiny_world.build",
        MATCH,
        ["--far-run", "{run}"],
        lambda tmp, P: P.update(run=f"{tmp}/no/such/run"),
    ),
    row(
        "tiny_world--match-sft-run",
        "tiny_world.build",
        MATCH,
        ["--far-run", "{run}", "config.json"],
        metrics_run(good_metrics(), SFT_SUMMARY, SFT_CONFIG),
    ),
    row(
        "tiny_world--match-torn-summary",
        "tiny_world.build",
        MATCH,
        ["--far-run", "{run}/summary.json"],
        metrics_run(good_metrics(), '{"snapshots": {"acc": {"2": 0.', FAR_CONFIG),
    ),
    row(
        "tiny_world--match-missing-snapshot",
        "tiny_world.build",
        MATCH,
        ["--far-run", "{run}/snapshots/step00002"],
        metrics_run(good_metrics(), {"snapshots": {"acc": {"2": 0.5}}}, FAR_CONFIG),
    ),
]
if not torch.cuda.is_available():
    CASES.append(
        row(
            "eval_math--device-cuda-without-cuda",
            "eval_math",
            EVAL + ["--device", "cuda"],
            ["--device", "cuda"],
        )
    )


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return make_shared(tmp_path_factory.mktemp("shared"))


def test_every_class_has_rows():
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"
    assert {c.script for c in CASES} == {
        "eval_math",
        "probes",
        "train_opsd",
        "train_sft",
        "experiments.plot",
        "tiny_world.build",
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, shared, tmp_path, capsys, monkeypatch):
    P = case_placeholders(shared, tmp_path)
    monkeypatch.chdir(tmp_path)  # python -m tiny_world writes runs/ under the current folder
    if case.setup:
        case.setup(tmp_path, P)
    argv, culprits = expand(case, P)
    absent = [a.format(**P) for a in case.absent if not os.path.exists(a.format(**P))]
    if case.stage == "flags":
        forbid_model_loads(monkeypatch)
    assert_refused(case.script, argv, culprits, capsys)
    left = [a for a in absent if os.path.exists(a)]
    assert not left, f"the refused command left {left} behind"
    assert not (tmp_path / "runs").exists(), "the refused command wrote runs/"


# -----------------------------------------------------------------------------
# What the refusals leave alone


@pytest.mark.parametrize("written", ["0.5", "0.50", "5e-1", "1e20", "42"])
def test_a_number_answer_keeps_its_text_and_grades(tmp_path, written):
    """A JSON number answer is the gold as written in the file (not Python's rendering: 1e20 would
    become "1e+20", which no boxed answer equals), so the model's boxed answer grades against it."""
    path = tmp_path / "floats.jsonl"
    path.write_text(problem_line(0, written) + "\n")
    (ex,) = data.load_examples(str(path))
    assert ex.answer == written
    assert grader.grade(f"so \\boxed{{{written}}}", ex.answer)
    if written in ("0.5", "0.50"):
        assert grader.grade("so \\boxed{0.5}", ex.answer)
        assert not grader.grade("so \\boxed{0.6}", ex.answer)
    # the same in a .json list, and in a DAPO record's ground truth
    listed = tmp_path / "floats.json"
    listed.write_text("[" + problem_line(0, written) + "]")
    assert data.load_examples(str(listed))[0].answer == written
    dapo = tmp_path / "dapo.jsonl"
    dapo.write_text(f'{{"prompt": "What is half of 1?", "reward_model": {{"ground_truth": {written}}}}}\n')
    assert data.load_examples("dapo", path=str(dapo))[0].answer == written


def test_ids_repeat_only_where_the_file_repeats_them(tmp_path):
    """Records without an id are numbered, and DAPO's repeated copies of one problem are dropped
    before ids are compared; two problems with one id are refused with both lines."""
    path = tmp_path / "p.jsonl"
    path.write_text("".join(problem_line(i) + "\n" for i in range(3)))
    assert [e.id for e in data.load_examples(str(path))] == ["0", "1", "2"]
    dapo = tmp_path / "dapo.jsonl"
    copy = '{"problem": "What is 1+1?", "answer": "2", "id": "a"}\n'
    dapo.write_text(copy * 3 + '{"problem": "What is 2+2?", "answer": "4", "id": "b"}\n')
    assert [e.id for e in data.load_examples("dapo", path=str(dapo))] == ["a", "b"]
    dapo.write_text(copy + '{"problem": "What is 2+2?", "answer": "4", "id": "a"}\n')
    with pytest.raises(data_files.DataError, match=r"dapo.jsonl:2: id 'a' is also the id of .*dapo.jsonl:1"):
        data.load_examples("dapo", path=str(dapo))


def test_flags_given_over_a_preset_win_without_a_refusal():
    """--steps over a preset that counts epochs counts steps; --pi over a preset with a rule drops
    the rule that belonged to the preset's system prompt. Neither is a refusal."""
    cfg = train_sft.parse_config(["--preset", "sft-student", "--steps", "3"])
    assert cfg["steps"] == 3 and cfg["epochs"] is None
    assert train_sft.parse_config(["--preset", "sft-student"])["epochs"] == 2.0
    cfg = train_opsd.parse_config(["--preset", "tiny2-concise", "--pi", "answer_only"])
    assert cfg["pi"] == "answer_only" and cfg["rule"] is None


# -----------------------------------------------------------------------------
# The command line: `python -m experiments.plot` and `python -m tiny_world` run main through errors.run

REPO = pathlib.Path(__file__).resolve().parents[1]
CLI = {
    "python -m experiments.plot": (["-m", "experiments.plot", "{tmp}/no/such/run"], ["{tmp}/no/such/run"]),
    "python -m tiny_world": (
        ["-m", "tiny_world", "--match", "tiny/student", "--far-run", "{tmp}/no/such/run", "--out", "{tmp}/o"],
        ["--far-run", "{tmp}/no/such/run"],
    ),
}


@pytest.mark.parametrize("prog", list(CLI))
def test_cli_exit_code_and_message(prog, tmp_path):
    argv, culprits = ([a.format(tmp=tmp_path) for a in x] for x in CLI[prog])
    proc = subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{prog}: error:" in proc.stderr
    assert not missing_culprits(error_message(proc.stderr), culprits), proc.stderr
    assert not (tmp_path / "o").exists()
