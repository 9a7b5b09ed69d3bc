"""Sequence-level distillation, OPD's baseline at the same teacher cost (train_sft.py --source
samples, --tokens-of): the teacher's responses as sampled, none dropped, the problems taken until
they hold the OPD run's rollout tokens; checked against the sampler run again by hand, and each
misuse refused by name before anything is written."""

import json
import os

import pytest
from test_opd import tiny_pair

import data
import eval_math
import models
import train_opd
import train_sft
from errors import UserError


def finished_opd_run(tmp_path, student, teacher) -> str:
    out = tmp_path / "opd"
    argv = ["--student", student, "--teacher", teacher, "--out", str(out), "--steps", "2"]
    train_opd.main(
        argv + ["--batch-size", "3", "--micro-batch", "3", "--max-new-tokens", "5", "--eval-n", "2"]
    )
    return str(out)


def test_samples_take_problems_until_the_opd_runs_tokens(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    opd = finished_opd_run(tmp_path, student, teacher)
    budget = sum(json.loads(l).get("tokens", 0) for l in open(os.path.join(opd, "metrics.jsonl")))
    assert budget > 0 and train_sft.rollout_tokens(opd) == budget
    out = tmp_path / "kd"
    argv = ["--preset", "kd", "--student", student, "--teacher", teacher, "--tokens-of", opd]
    argv += [
        "--n-train",
        "40",
        "--trace-max-new-tokens",
        "5",
        "--eval-n",
        "2",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    summary = train_sft.main(argv)
    records = [json.loads(l) for l in open(out / "traces.jsonl")]
    # the sampler again, by hand: the same problems, settings and seed
    cfg = train_sft.parse_config(argv)
    problems = train_sft.load_problems(cfg)
    tok = models.tiny_tokenizer()
    again = eval_math.sample_responses(
        models.load(teacher)[0],
        tok,
        [data.context_ids(tok, ex, "none") for ex in problems],
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=5,
        batch_size=cfg["eval_batch_size"],
        seed=cfg["seed"],
    )[0]
    lengths, m = [s["length"] for s in again], 0
    while sum(lengths[:m]) < budget:
        m += 1
    assert [r["id"] for r in records] == [f"{ex.id}:0" for ex in problems[:m]]  # none dropped, in order
    assert [r["response"] for r in records] == [tok.decode(s["ids"], skip_special=True) for s in again[:m]]
    used = summary["data"]["trace_filter"]
    assert used["budget"] == budget and used["teacher_tokens"] == sum(lengths[:m]) and used["kept"] == m
    assert summary["steps"] == -(-m // 64)  # one pass in batches of 64


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--preset", "sft-student", "--tokens-of", "RUN"], "--tokens-of .*only --source samples reads it"),
        (["--preset", "kd", "--tokens-of", "nowhere"], "--tokens-of nowhere: not a finished OPD run"),
        (["--preset", "kd", "--max-rep", "0.3"], "--max-rep 0.3: only --source traces reads it"),
        (["--preset", "kd", "--teacher", ""], "--source samples needs --teacher"),
    ],
)
def test_misused_samples_are_refused_before_anything_is_written(tmp_path, flags, words):
    (tmp_path / "RUN").mkdir()
    argv = [str(tmp_path / f) if f == "RUN" else f for f in flags] + ["--out", str(tmp_path / "out")]
    with pytest.raises(UserError, match=words):
        train_sft.main(argv)
    assert not (tmp_path / "out").exists()


def test_a_budget_the_problems_cannot_meet_is_refused(tmp_path):
    student, teacher = tiny_pair(tmp_path)
    opd = finished_opd_run(tmp_path, student, teacher)
    argv = [
        "--preset",
        "kd",
        "--student",
        student,
        "--teacher",
        teacher,
        "--tokens-of",
        opd,
        "--n-train",
        "2",
    ]
    argv += ["--trace-max-new-tokens", "5", "--threads", "1", "--out", str(tmp_path / "kd")]
    with pytest.raises(UserError, match="fewer than the run's .*raise --n-train"):
        train_sft.main(argv)
