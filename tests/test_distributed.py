"""Tests of the torchrun + FSDP2 path (distributed.py) on CPU: two gloo processes against one.

Two processes each sample, score and back-propagate half of every batch; FSDP averages their
gradients. With the sampling noise seeded per rollout chunk, that is the single-process run with
`--rollout-batch B/2`: the same responses, the same losses and the same updated weights (up to the
order of float sums). A two-process run stopped and resumed lands where the uninterrupted one
does; a checkpoint holds the full weights in transformers format and one optimizer shard per
process. A LoRA student with an EMA teacher (the average of its adapters) trains like one
process too. Each test launches `python -m torch.distributed.run` (seconds per launch).
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_opd import same_final_weights, tiny_pair

import models

# the scripts run from the project's folder
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(script, args, procs=2):
    """Run a training script under torchrun with `procs` CPU processes; the result of the run."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(procs),
        script,
    ]
    return subprocess.run(
        cmd + args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def single(script, args):
    return subprocess.run(
        [sys.executable, script] + args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )


def records(run):
    return [json.loads(l) for l in open(run / "metrics.jsonl") if '"loss"' in l]


def assert_same_training(one, two, keys):
    a, b = records(one), records(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] and a
    for x, y in zip(a, b):
        for k in keys:
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-7), (x["step"], k, x[k], y[k])
    wa, _ = models.load(str(one / "ckpt"))
    wb, _ = models.load(str(two / "ckpt"))
    for (k, va), vb in zip(wa.state_dict().items(), wb.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=1e-5, atol=1e-6, msg=k)


def small_args(s, t=None):
    args = [
        "--student",
        s,
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--micro-batch",
        "2",
        "--max-new-tokens",
        "8",
        "--eval-n",
        "4",
        "--ckpt-every",
        "2",
        "--lr",
        "3e-3",
        "--threads",
        "1",
    ]
    return args + (["--teacher", t] if t else [])


def one_and_two(script, args, tmp_path) -> None:
    """`script` with `args` in two processes (tmp_path/two) and in one (tmp_path/one), both finished.
    FSDP scores with the model's own forward (decoder.writes_out): the one process does the same, and
    samples the same two rows at a time as each of the two processes."""
    two = launch(script, args + ["--out", str(tmp_path / "two")])
    assert two.returncode == 0, two.stderr[-3000:]
    one = single(
        script, args + ["--rollout-batch", "2", "--forward", "transformers", "--out", str(tmp_path / "one")]
    )
    assert one.returncode == 0, one.stderr[-3000:]


def test_two_processes_train_like_one_process_with_half_batches(tmp_path):
    s, t = tiny_pair(tmp_path)
    args = small_args(s, t) + ["--loss", "topk_tail", "--k", "20"]
    one_and_two("train_opd.py", args, tmp_path)
    assert_same_training(
        tmp_path / "one",
        tmp_path / "two",
        ("loss", "kl/full", "len/mean", "tokens", "topk/overlap", "grad_norm", "kept_frac"),
    )
    files = sorted(os.listdir(tmp_path / "two" / "ckpt"))
    assert "rank0.pt" in files and "rank1.pt" in files and "model.safetensors" in files
    summary = json.load(open(tmp_path / "two" / "summary.json"))
    assert summary["student_after"]["n"] == 4  # both processes' evaluation records, pooled


def test_two_process_opsd_with_an_ema_teacher_trains_like_one_process(tmp_path):
    s, _ = tiny_pair(tmp_path)
    args = small_args(s) + [
        "--preset",
        "tiny-answer",
        "--teacher-mode",
        "ema",
        "--ema-decay",
        "0.5",
        "--measure-n",
        "0",
    ]
    one_and_two("train_opsd.py", args, tmp_path)
    assert_same_training(tmp_path / "one", tmp_path / "two", ("loss", "kl/full", "len/mean", "grad_norm"))
    # the EMA teacher, sharded: each process saved its half, together the single process's teacher
    ema_one = torch.load(tmp_path / "one" / "ckpt" / "rank0.pt", weights_only=False)["ema_teacher"]
    halves = [
        torch.load(tmp_path / "two" / "ckpt" / f"rank{r}.pt", weights_only=False)["ema_teacher"]
        for r in (0, 1)
    ]
    for k, v in ema_one.items():
        parts = [h[k].to_local() for h in halves]
        torch.testing.assert_close(torch.cat(parts)[: v.shape[0]], v, rtol=1e-5, atol=1e-6, msg=k)


def test_two_process_run_stopped_and_resumed_lands_where_the_uninterrupted_run_does(tmp_path):
    s, t = tiny_pair(tmp_path)
    args = small_args(s, t) + ["--steps", "4"]
    full = launch("train_opd.py", args + ["--out", str(tmp_path / "a")])
    assert full.returncode == 0, full.stderr[-3000:]
    part = launch("train_opd.py", args + ["--out", str(tmp_path / "b"), "--stop-at", "2"])
    assert part.returncode == 0 and "stopped after step 2" in part.stderr, part.stderr[-3000:]
    assert not (tmp_path / "b" / "summary.json").exists()
    # one process, two shards
    alone = single("train_opd.py", args + ["--out", str(tmp_path / "b"), "--resume"])
    assert alone.returncode != 0 and "written by 2 processes" in alone.stderr
    rest = launch("train_opd.py", args + ["--out", str(tmp_path / "b"), "--resume"])
    assert rest.returncode == 0, rest.stderr[-3000:]
    ra, rb = same_final_weights(tmp_path / "a", tmp_path / "b")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    assert [(r["loss"], r["len/mean"]) for r in ra] == [(r["loss"], r["len/mean"]) for r in rb]


def test_chunked_loss_and_grpo_are_refused_under_torchrun_with_a_reason(tmp_path):
    s, t = tiny_pair(tmp_path)
    chunked = launch("train_opd.py", small_args(s, t) + ["--chunk-size", "4", "--out", str(tmp_path / "c")])
    assert chunked.returncode != 0 and "--chunk-size 0" in chunked.stderr
    grpo = launch("train_grpo.py", ["--student", s, "--steps", "1", "--out", str(tmp_path / "g")])
    assert grpo.returncode != 0 and "runs in one process" in grpo.stderr


def test_two_process_lora_opsd_with_an_ema_teacher_trains_like_one_process(tmp_path):
    """LoRA under FSDP2: the adapters and their average sharded with the frozen base, the teacher
    the student read through lora.view, the adapters gathered into PEFT's file at each checkpoint."""
    s, _ = tiny_pair(tmp_path)
    args = small_args(s) + ["--preset", "tiny-answer", "--teacher-mode", "ema", "--ema-decay", "0.5"]
    args += ["--measure-n", "0", "--lora-rank", "4"]
    one_and_two("train_opsd.py", args, tmp_path)
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3]
    for x, y in zip(a, b):
        for k in ("loss", "kl/full", "len/mean", "grad_norm"):
            assert x[k] == pytest.approx(y[k], rel=1e-5, abs=1e-7), (x["step"], k)
    wa, wb = (load_file(tmp_path / r / "ckpt" / "adapter_model.safetensors") for r in ("one", "two"))
    assert wa.keys() == wb.keys() and len(wa) == 28
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)
