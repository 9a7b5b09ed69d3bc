"""Sequence-level distillation, OPD's baseline at the same teacher cost (train_sft.py --source
samples, --tokens-of): the teacher's responses as sampled, none dropped, the problems taken until
they hold the OPD run's rollout tokens; checked against the sampler run again by hand, and each
misuse refused by name before anything is written. Then the README's quickstart, which shows OPD
beside this baseline on the OPD run's own held-out problems."""

import json
import os

import pytest
from test_opd import tiny_pair

import data
import eval_math
import grader
import models
import sft_items
import train_opd
import train_sft
from errors import UserError
from experiments import quickstart


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
    assert budget > 0 and sft_items.rollout_tokens(opd) == budget
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
    problems = sft_items.load_problems(cfg)
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


def test_the_readme_quickstart_shows_opd_beside_its_baseline_on_the_same_problems(tmp_path, monkeypatch):
    """experiments.quickstart on real runs of both presets: the baseline's row is its final model on
    the OPD run's own held-out problems (its records regraded here), and the line under the table
    compares the two as the numbers do."""
    student, teacher = tiny_pair(tmp_path)
    runs = []
    for preset in ("tiny", "tiny2"):
        out = tmp_path / f"opd-{preset}"
        argv = ["--preset", preset, "--student", student, "--teacher", teacher, "--out", str(out)]
        train_opd.main(
            argv + ["--steps", "2", "--batch-size", "3", "--micro-batch", "3", "--max-new-tokens", "5"]
        )
        kd = tmp_path / f"kd-{preset}"
        argv = ["--preset", "kd", "--student", student, "--teacher", teacher, "--tokens-of", str(out)]
        train_sft.main(
            argv + ["--n-train", "40", "--trace-max-new-tokens", "5", "--eval-n", "2", "--out", str(kd)]
        )
        runs.append((str(out), str(kd)))
    monkeypatch.setattr(quickstart, "RESULTS_DIR", str(tmp_path / "kept"))
    readme = tmp_path / "README.md"
    readme.write_text(f"{quickstart.QUICKSTART[0]}\n{quickstart.QUICKSTART[1]}\n")
    quickstart.main([runs[0][0], runs[1][0], runs[0][1], runs[1][1], "--readme", str(readme)])
    text = readme.read_text()
    for opd, kd in runs:
        step0 = [json.loads(l) for l in open(os.path.join(opd, "eval", "step0.jsonl"))]
        mine = [json.loads(l) for l in open(os.path.join(kd, "eval", "opd-held-out.jsonl"))]
        assert [r["id"] for r in mine] == [r["id"] for r in step0]  # the OPD run's problems
        gold = {e.id: e.answer for e in data.load_examples("synthetic", n=len(step0), split="eval", seed=0)}
        acc = sum(grader.grade(r["response"], gold[r["id"]]) for r in mine) / len(mine)
        opd_acc = json.load(open(os.path.join(opd, "summary.json")))["student_after"]["acc/pass@1"]
        word = "above" if acc > opd_acc else "below" if acc < opd_acc else "level with"
        assert f"| student after SFT on the teacher's samples | {acc:.3f} [" in text
        assert f"it ends {word} OPD ({acc:.3f} against {opd_acc:.3f})" in text
    assert quickstart.body(str(tmp_path / "kept")) in text
    with pytest.raises(UserError, match="not SFT on the teacher's samples at"):
        quickstart.save(runs[0][0], "world1", runs[1][1])  # a baseline made from the other run
