"""Tests of train_grpo.py (GRPO, docs/paper.md §4 Fix 2) on tiny random models (CPU, seconds).

Advantages are zero-mean per group and zero when a group's rewards are equal, the clipped
objective with clip-higher matches its formula and its gradient on a hand-made batch, one step
raises the log-prob of rewarded samples and lowers the others', one minibatch is strictly
on-policy (ρ = 1 exactly), and a killed run resumes exactly.
"""

import json
import statistics

import pytest
import torch
from test_opd import kill_run_at_step_3, same_final_weights, tiny_pair

import common
import data
import errors
import grader
import losses
import models
import rollout
import train_grpo


def test_group_advantages_are_zero_mean_and_zero_for_equal_rewards():
    rewards = torch.tensor([1, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0.0])  # 4 groups of 4
    adv = train_grpo.group_advantages(rewards, 4, eps=0.0).view(4, 4)
    assert torch.allclose(adv.sum(1), torch.zeros(4), atol=1e-6)  # zero-mean in every group
    # all equal: nothing to learn
    assert torch.equal(adv[1], torch.zeros(4)) and torch.equal(adv[3], torch.zeros(4))
    for g in (0, 2):  # against the formula with Python's statistics (sample std)
        r = rewards.view(4, 4)[g].tolist()
        want = [(x - statistics.mean(r)) / statistics.stdev(r) for x in r]
        assert adv[g].tolist() == pytest.approx(want, rel=1e-6)
    with_eps = train_grpo.group_advantages(rewards, 4)  # the default eps keeps equal groups finite
    assert torch.isfinite(with_eps).all() and torch.equal(with_eps.view(4, 4)[1], torch.zeros(4))


def test_clipped_surrogate_matches_its_formula_with_clip_higher():
    # hand-made tokens: ρ below, inside and above the clip range, positive and negative advantages
    old = torch.zeros(8, dtype=torch.float64)
    rho = torch.tensor([0.5, 0.7, 1.0, 1.25, 1.25, 1.4, 0.5, 1.4], dtype=torch.float64)
    A = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0, -1.0], dtype=torch.float64) * 0.7
    logp = rho.log().clone().requires_grad_(True)
    out = losses.clipped_surrogate(logp, old, A, clip_low=0.2, clip_high=0.28)
    out.sum().backward()
    for i in range(8):
        r, a = rho[i].item(), A[i].item()
        clipped = min(max(r, 0.8), 1.28)
        assert out[i].item() == pytest.approx(-min(r * a, clipped * a), rel=1e-12)
        # d/dlogp of −ρA is −ρA where the unclipped term is the min, 0 where the clipped one is
        active = r * a <= clipped * a
        assert logp.grad[i].item() == pytest.approx(-r * a if active else 0.0, abs=1e-12)
    # clip-higher: ρ = 1.25 with A > 0 still learns at 0.28, is cut at the symmetric 0.2
    sym = losses.clipped_surrogate(logp, old, A, clip_low=0.2)
    assert out[3].item() == pytest.approx(-1.25 * 0.7) and sym[3].item() == pytest.approx(-1.2 * 0.7)


def small_cfg(path, **kw):
    cfg = train_grpo.parse_config(["--student", path])
    cfg.update(
        steps=3,
        batch_size=4,
        group_size=4,
        micro_batch=8,
        max_new_tokens=10,
        eval_n=4,
        eval_max_new_tokens=10,
        eval_every=0,
        ckpt_every=2,
        lr=1e-3,
        minibatches=1,
        threads=1,
    )
    cfg.update(kw)
    return cfg


def by_byte_parity(text, gold):
    """A stand-in reward that random models earn about half the time: the parity of the bytes."""
    return sum(text.encode()) % 2 == 0


def sequence_logp(model, prompts, responses):
    with torch.no_grad():
        logits, mask = rollout.score(model, prompts, responses)
    tokens = rollout.pad_right(responses, 0, logits.device)
    lp = losses.student_logprobs_at(logits, tokens[..., None])[..., 0]
    return (lp * mask).sum(1)  # (B,) log π(response | prompt)


def test_one_step_raises_the_logprob_of_rewarded_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(grader, "grade", by_byte_parity)
    s, _ = tiny_pair(tmp_path)
    cfg = small_cfg(s, batch_size=6, group_size=6, micro_batch=12)
    tok = models.tiny_tokenizer()
    student, _ = models.load(s, dtype=torch.float32)
    examples = data.load_examples("synthetic", n=cfg["batch_size"], split="train")
    prompts = [data.context_ids(tok, ex) for ex in examples]
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    sched = common.cosine_schedule(opt, 10, 0.0)
    rows = [p for p in prompts for _ in range(cfg["group_size"])]
    # the responses the step will sample: same generator seed, same sampler
    ro = rollout.generate(
        student,
        rows,
        cfg["max_new_tokens"],
        eos_token_ids=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(7),
    )
    responses = ro.responses()
    reward = torch.tensor([float(by_byte_parity(tok.decode(r), "")) for r in responses])
    assert 0 < reward.mean() < 1
    before = sequence_logp(student, rows, responses)
    m = train_grpo.grpo_step(
        student, tok, examples, prompts, cfg, opt, sched, torch.Generator().manual_seed(7)
    )
    assert m["reward/mean"] == pytest.approx(float(reward.mean()))  # the step saw the same samples
    delta = sequence_logp(student, rows, responses) - before
    adv = train_grpo.group_advantages(reward, cfg["group_size"])
    up, down = delta[adv > 0], delta[adv < 0]
    assert up.mean() > 0 > down.mean(), (up.mean(), down.mean())
    assert (adv * delta).sum() > 0  # the GRPO objective Σ A_i log π(y_i) rose
    assert m["ppo/ratio_max"] == 1.0 and m["ppo/clip_frac"] == 0.0  # one minibatch: strictly on-policy
    assert m["logp/rollout_vs_train_max_abs"] < 1e-4


def test_second_minibatch_is_off_policy_and_the_clip_acts(tmp_path, monkeypatch):
    monkeypatch.setattr(grader, "grade", by_byte_parity)
    s, _ = tiny_pair(tmp_path)
    cfg = small_cfg(s, batch_size=6, group_size=6, micro_batch=36, minibatches=2, lr=3e-2)
    tok = models.tiny_tokenizer()
    student, _ = models.load(s, dtype=torch.float32)
    examples = data.load_examples("synthetic", n=cfg["batch_size"], split="train")
    prompts = [data.context_ids(tok, ex) for ex in examples]
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"])
    sched = common.cosine_schedule(opt, 10, 0.0)
    m = train_grpo.grpo_step(
        student, tok, examples, prompts, cfg, opt, sched, torch.Generator().manual_seed(7)
    )
    assert m["ppo/ratio_max"] > 1.28 and m["ppo/clip_frac"] > 0  # the second update sees a moved policy
    assert sched.last_epoch == 2  # two optimizer steps for one rollout batch


def test_first_update_is_the_on_policy_gradient_and_later_updates_see_the_policy_that_sampled(
    tmp_path, monkeypatch
):
    # π_old of the first update's rows comes from their own forward (no separate pass): its gradient
    # must be the closed form at ρ = 1, −Σ_i A_i Σ_t ∇log π(y_i,t) / n_tok; with lr 0 the policy
    # never moves, so the later update's ρ, against π_old scored before any update, must be 1.
    monkeypatch.setattr(grader, "grade", by_byte_parity)
    s, _ = tiny_pair(tmp_path)
    # the raw gradient
    cfg = small_cfg(s, batch_size=6, group_size=6, micro_batch=36, minibatches=2, grad_clip=0.0)
    tok = models.tiny_tokenizer()
    student, _ = models.load(s, dtype=torch.float32)
    params = [p for p in student.parameters() if p.requires_grad]
    examples = data.load_examples("synthetic", n=cfg["batch_size"], split="train")
    prompts = [data.context_ids(tok, ex) for ex in examples]
    rows = [p for p in prompts for _ in range(cfg["group_size"])]
    responses, _, _ = common.sample_batch(student, tok, rows, cfg, torch.Generator().manual_seed(7))
    reward = torch.tensor([float(by_byte_parity(tok.decode(r), "")) for r in responses])
    adv = train_grpo.group_advantages(reward, cfg["group_size"])
    half = len(rows) // 2
    assert adv[:half].abs().sum() > 0  # the first update has something to learn
    logits, mask = rollout.score(student, rows[:half], responses[:half])
    tokens = rollout.pad_right(responses[:half], 0, logits.device)
    lp = losses.student_logprobs_at(logits, tokens[..., None])[..., 0]
    n_tok = sum(len(r) for r in responses[:half])
    want = torch.autograd.grad(-(adv[:half, None] * lp * mask).sum() / n_tok, params)

    grads = []
    opt = torch.optim.SGD(params, lr=0.0)
    opt.register_step_pre_hook(lambda o, a, k: grads.append([p.grad.clone() for p in params]))
    sched = common.cosine_schedule(opt, 10, 0.0)
    m = train_grpo.grpo_step(
        student, tok, examples, prompts, cfg, opt, sched, torch.Generator().manual_seed(7)
    )
    assert len(grads) == 2
    for g, w in zip(grads[0], want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    assert m["ppo/ratio_max"] == pytest.approx(1.0, abs=1e-5) and m["ppo/clip_frac"] == 0.0
    assert 0 < m["logp/rollout_vs_train_max_abs"] < 1e-4  # the monitor covers both updates' rows


def test_killed_run_resumes_exactly_and_summary_has_no_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(grader, "grade", by_byte_parity)
    s, _ = tiny_pair(tmp_path)
    args = [
        "--student",
        s,
        "--steps",
        "4",
        "--batch-size",
        "4",
        "--group-size",
        "3",
        "--micro-batch",
        "6",
        "--minibatches",
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
    full = train_grpo.main(args + ["--out", str(tmp_path / "a")])
    assert "teacher" not in full and full["loss"] == "grpo"
    kill_run_at_step_3(
        monkeypatch,
        lambda: train_grpo.main(args + ["--out", str(tmp_path / "b")]),
        module=train_grpo,
        step_name="grpo_step",
    )
    train_grpo.main(args + ["--out", str(tmp_path / "b"), "--resume"])
    ra, rb = same_final_weights(tmp_path / "a", tmp_path / "b")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    assert [r["reward/mean"] for r in ra] == [r["reward/mean"] for r in rb]
    assert [r["lr"] for r in ra] == [r["lr"] for r in rb] and ra[-1]["lr"] == 0.0  # 8 updates, cosine to 0


def test_paper_preset_and_config_errors(tmp_path, capsys):
    # the paper preset evaluates with 8,192 new tokens
    s, _ = tiny_pair(tmp_path, max_position_embeddings=16384)
    rows = [{"problem": f"What is {a}+{b}?", "answer": str(a + b)} for a in range(4) for b in range(3)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    summary = train_grpo.main(
        [
            "--preset",
            "paper",
            "--student",
            s,
            "--data",
            str(tmp_path / "train.jsonl"),
            "--eval-data",
            str(tmp_path / "train.jsonl"),
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--max-new-tokens",
            "6",
            "--eval-n",
            "2",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    cfg = json.load(open(tmp_path / "run" / "config.json"))
    assert (
        cfg["group_size"],
        cfg["lr"],
        cfg["clip_low"],
        cfg["clip_high"],
        cfg["top_p"],
        cfg["minibatches"],
    ) == (8, 1e-6, 0.2, 0.28, 1.0, 1)
    assert "loss" not in cfg and "teacher" not in cfg and summary["student_after"]["n"] == 2
    with pytest.raises(SystemExit):  # distillation flags do not exist here
        train_grpo.parse_config(["--loss", "topk_sg"])
    with pytest.raises(SystemExit):
        train_grpo.parse_config(["--group-size", "1"])
    assert "argument --group-size: must be at least 2" in capsys.readouterr().err
    with pytest.raises(ValueError, match="minibatches"):
        train_grpo.parse_config(["--batch-size", "16", "--minibatches", "3"])


def test_micro_batch_follows_the_rows_of_the_batch():
    """A preset's micro-batch shrinks to a smaller batch's rows (prompts x samples); a --micro-batch
    typed above them is refused by name."""
    assert train_grpo.parse_config(["--batch-size", "2"])["micro_batch"] == 16  # 2 prompts x 8 samples
    assert train_grpo.parse_config(["--batch-size", "2", "--group-size", "4"])["micro_batch"] == 8
    assert train_grpo.parse_config([])["micro_batch"] == 128  # the tiny preset's, within 32 x 8 rows
    with pytest.raises(errors.UserError, match=r"--micro-batch 200: .*16 rows .*--group-size 8"):
        train_grpo.parse_config(["--batch-size", "2", "--micro-batch", "200"])
