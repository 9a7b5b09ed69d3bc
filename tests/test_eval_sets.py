"""Held-out sets from the partition of the eval split (docs/protocol.md §2) in the scripts that read
them: a trainer's --eval-part and --eval-k, Mechanism 3's measured problems, eval_math.py's
--synthetic-part; each against tiny_world.partition's own sets, and each misuse refused by name
before anything is written."""

import json
import os

import pytest
from test_opd import tiny_pair

import eval_cli
import mechanism3
import models
import train_opd
import train_opsd
from errors import UserError
from tiny_world import partition


def test_a_run_evaluates_the_first_problems_of_its_part_k_times(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    out = tmp_path / "run"
    argv = ["--student", student, "--teacher", teacher, "--out", str(out), "--steps", "1"]
    argv += ["--batch-size", "2", "--micro-batch", "2", "--max-new-tokens", "6"]
    train_opd.main(argv + ["--eval-n", "7", "--eval-k", "4", "--eval-part", "E1", "--threads", "1"])
    records = [json.loads(l) for l in (out / "eval" / "step0.jsonl").read_text().splitlines()]
    first = [p["id"] for p in partition.problems("E1", 7)]
    assert sorted((r["id"], r["sample"]) for r in records) == sorted((i, j) for i in first for j in range(4))
    # avg@4: the mean over problems of each problem's mean over its 4 samples
    per = {}
    for r in records:
        per.setdefault(r["id"], []).append(float(r["correct"]))
    summary = json.loads((out / "summary.json").read_text())
    want = sum(sum(v) / 4 for v in per.values()) / 7
    assert summary["student_before"]["acc/avg@k"] == pytest.approx(want)
    assert json.loads((out / "config.json").read_text())["eval_part"] == "E1"


def test_mechanism3_measures_the_first_problems_of_the_runs_evaluation_set():
    cfg = train_opsd.parse_config(["--preset", "tiny2-answer", "--eval-part", "E3"])
    measured = mechanism3.measure_examples(cfg)
    assert [e.id for e in measured] == [p["id"] for p in partition.problems("E3", 64, hard_frac=0.25)]
    assert sum(e.meta["hard"] for e in measured) > 0  # the set with a quarter hard products


def test_eval_math_reads_a_part_of_the_partition(tmp_path):
    tok = models.tiny_tokenizer()
    models.save(models.build_tiny(seed=1), tok, str(tmp_path / "m"))
    out = tmp_path / "out"
    base = ["--model", str(tmp_path / "m"), "--bench", "synthetic", "--max-new-tokens", "6", "--quiet"]
    eval_cli.main(base + ["--synthetic-part", "S", "--synthetic-n", "5", "--out", str(out)])
    ids = [json.loads(l)["id"] for l in (out / "synthetic.jsonl").read_text().splitlines()]
    assert ids == [p["id"] for p in partition.problems("S", 5)]


@pytest.mark.parametrize(
    "script,flags,words",
    [
        (
            train_opd,
            ["--eval-part", "E0", "--eval-data", "x.jsonl"],
            "--eval-part E0: a part of the synthetic",
        ),
        (train_opd, ["--eval-part", "E0", "--eval-n", "301"], "--eval-part E0: .*fewer than the 301"),
        (train_opd, ["--eval-part", "B"], "invalid choice: 'B'"),
        (eval_cli, ["--synthetic-part", "E0", "--synthetic-seed", "3"], "drop --synthetic-seed 3"),
        (eval_cli, ["--synthetic-part", "S", "--hard-frac", "0.25"], "--synthetic-part S: .*part S"),
        (eval_cli, ["--synthetic-part", "E2", "--synthetic-n", "400"], "E2 holds 300 problems"),
    ],
)
def test_a_set_the_partition_does_not_have_is_refused_before_anything_is_written(
    tmp_path, capsys, script, flags, words
):
    out = tmp_path / "out"
    (tmp_path / "x.jsonl").write_text('{"problem": "1+1?", "answer": "2"}\n')
    argv = ["--out", str(out)] + [str(tmp_path / f) if f.endswith(".jsonl") else f for f in flags]
    argv += ["--model", "tiny2/student", "--bench", "synthetic"] if script is eval_cli else []
    with pytest.raises((UserError, SystemExit)) as e:
        script.main(argv)
    message = str(e.value) if e.type is UserError else capsys.readouterr().err
    assert __import__("re").search(words, message), message
    assert not os.path.exists(out)
