"""Tests of train_opd.py on tiny random models (CPU, seconds).

One OPD step must lower the reverse KL on its batch, leave the teacher untouched, see the
rollout's own log-probs again in the training forward, do nothing when teacher == student, and a
killed run resumed from its checkpoint must land exactly where the uninterrupted run lands.
"""

import copy
import json
import math

import pytest
import torch

import common
import config
import data
import data_files
import errors
import losses
import models
import rollout
import train_opd


def tiny_pair(tmp_path, **overrides):
    tok = models.tiny_tokenizer()
    teacher = models.build_tiny(seed=1, **overrides)
    student = models.build_tiny(seed=2, **overrides)
    models.save(teacher, tok, str(tmp_path / "teacher"))
    models.save(student, tok, str(tmp_path / "student"))
    return str(tmp_path / "student"), str(tmp_path / "teacher")


def small_cfg(**kw):
    cfg = train_opd.parse_config([])
    cfg.update(
        steps=4,
        batch_size=6,
        micro_batch=4,
        max_new_tokens=12,
        eval_n=6,
        eval_max_new_tokens=12,
        eval_every=0,
        ckpt_every=2,
        lr=3e-3,
        threads=1,
    )
    cfg.update(kw)
    return cfg


def setup_step(cfg, same_weights=False):
    tok = models.tiny_tokenizer()
    teacher = models.build_tiny(seed=1).requires_grad_(False)
    student = copy.deepcopy(teacher).requires_grad_(True) if same_weights else models.build_tiny(seed=2)
    examples = data.load_examples("synthetic", n=cfg["batch_size"], split="train")
    prompts = [data.context_ids(tok, ex) for ex in examples]
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    sched = common.cosine_schedule(opt, 10, 0.0)
    return tok, teacher, student, prompts, opt, sched


def full_rkl_on(student, teacher, prompts, responses):
    with torch.no_grad():
        ls, mask = rollout.score(student, prompts, responses)
        lt, _ = rollout.score(teacher, prompts, responses)
    return losses.masked_mean(losses.full_rkl(ls, lt), mask).item()


@pytest.mark.parametrize("loss,k", [("full_rkl", 20), ("topk_sg", 261), ("topk_tail", 20)])
def test_one_step_lowers_reverse_kl_and_never_touches_the_teacher(loss, k):
    # (topk_sg needs K = V here: a random model is nearly uniform, so its top-20 hold ~8 % of the mass)
    cfg = small_cfg(loss=loss, k=k, lr=1e-3)
    tok, teacher, student, prompts, opt, sched = setup_step(cfg)
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    # the batch the step will train on: same generator seed, same sampler
    ro = rollout.generate(
        student,
        prompts,
        cfg["max_new_tokens"],
        eos_token_ids=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    before = full_rkl_on(student, teacher, prompts, ro.responses())
    m = train_opd.opd_step(student, teacher, tok, prompts, prompts, cfg, opt, sched, gen)
    after = full_rkl_on(student, teacher, prompts, ro.responses())
    assert after < before - 1e-4, (before, after)
    assert m["kl/full"] == pytest.approx(before, rel=1e-4)  # the monitor measured the same batch
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k]), k
    # the rollout's log-probs (hand-written decoder, KV cache) are the training forward's (transformers)
    assert m["logp/rollout_vs_train_max_abs"] < 1e-4


@pytest.mark.parametrize("loss", ["topk_sg", "topk_tail", "full_rkl"])
def test_teacher_equal_to_student_gives_zero_loss_and_no_update(loss):
    cfg = small_cfg(loss=loss)
    tok, teacher, student, prompts, opt, sched = setup_step(cfg, same_weights=True)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    m = train_opd.opd_step(
        student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(0)
    )
    assert abs(m["loss"]) < 1e-6 and m["kl/full"] < 1e-6 and m["topk/overlap"] == 1.0
    assert m["grad_norm"] < 1e-6  # rounding noise at most (the tail bucket's 1 - M_K is not exact)
    if loss == "topk_sg":  # exactly zero: Adam, which rescales any nonzero gradient to lr, moves nothing
        drift = max((v - before[k]).abs().max().item() for k, v in student.state_dict().items())
        assert drift < 1e-6


def test_micro_batches_give_the_full_batch_gradient():
    grads = []
    # also sampling 4 rows at a time (greedy, so the tokens cannot depend on how rows are grouped)
    for mb, rb in ((6, 0), (2, 4)):
        # lr 0: the step keeps the weights
        cfg = small_cfg(micro_batch=mb, rollout_batch=rb, temperature=0.0, grad_clip=0.0, lr=0.0)
        tok, teacher, student, prompts, opt, sched = setup_step(cfg)
        train_opd.opd_step(
            student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(3)
        )
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-7)
    assert grads[0].abs().max() > 0


def test_minibatches_take_one_optimizer_step_per_part_of_the_rollout():
    # --minibatches 2: one rollout of 6 rows, then an optimizer step on rows 0-2 and one on rows 3-5.
    # The reference takes the same two steps by hand: the rows' masked-mean loss, backward, step.
    # (SGD at a constant rate: Adam would turn float-rounding differences of near-zero gradients into whole steps.)
    cfg = small_cfg(minibatches=2, micro_batch=2, loss="full_rkl", grad_clip=0.0)
    tok, teacher, student, prompts, _, _ = setup_step(cfg)
    reference = copy.deepcopy(student)
    opt, ref_opt = (torch.optim.SGD(m.parameters(), lr=0.5) for m in (student, reference))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    responses, _, _ = common.sample_batch(student, tok, prompts, cfg, torch.Generator().manual_seed(5))
    train_opd.opd_step(
        student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(5)
    )
    for rows in (range(0, 3), range(3, 6)):
        p, r = [prompts[i] for i in rows], [responses[i] for i in rows]
        ls, mask = rollout.score(reference, p, r)
        with torch.no_grad():
            lt, _ = rollout.score(teacher, p, r)
        ref_opt.zero_grad()
        losses.masked_mean(losses.full_rkl(ls, lt), mask).backward()
        ref_opt.step()
    assert sched.last_epoch == 2
    for a, b in zip(student.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss", ["topk_sg", "full_rkl"])
def test_chunked_loss_path_gives_the_same_gradient(loss):
    grads = []
    for chunk in (0, 5):
        cfg = small_cfg(loss=loss, chunk_size=chunk, micro_batch=3, grad_clip=0.0, lr=0.0)
        tok, teacher, student, prompts, opt, sched = setup_step(cfg)
        m = train_opd.opd_step(
            student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(4)
        )
        grads.append(
            (m["loss"], torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]))
        )
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("chunk", [0, 5])
def test_bf16_autocast_forward_is_close_to_float32(chunk):
    grads = []
    for amp in (False, True):
        cfg = small_cfg(
            amp=amp, chunk_size=chunk, micro_batch=3, grad_clip=0.0, lr=0.0, rollout_dtype="float32"
        )
        tok, teacher, student, prompts, opt, sched = setup_step(cfg)
        train_opd.opd_step(
            student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(5)
        )
        grads.append(torch.cat([p.grad.flatten() for p in student.parameters() if p.grad is not None]))
        assert all(p.dtype == torch.float32 for p in student.parameters())
    cos = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0)
    assert cos > 0.99 and not torch.equal(grads[0], grads[1])  # bf16 compute happened, and agrees


def test_bf16_sampling_copy_trains_float32_weights_and_shows_its_price():
    """--rollout-dtype bfloat16: the student samples from a bf16 copy of its weights (the default
    under bf16 autocast), the float32 weights train, and the rollout-vs-train monitor reports the
    log-prob gap that float32 sampling does not have."""
    assert common.sampling_dtype(dict(amp=True, rollout_dtype=None), models.build_tiny()) == torch.bfloat16
    assert common.sampling_dtype(dict(amp=False, rollout_dtype=None), models.build_tiny()) == torch.float32
    assert (
        common.sampling_dtype(dict(amp=True, rollout_dtype="float32"), models.build_tiny()) == torch.float32
    )
    gaps = {}
    for dtype in ("float32", "bfloat16"):
        cfg = small_cfg(rollout_dtype=dtype)
        tok, teacher, student, prompts, opt, sched = setup_step(cfg)
        before = [p.clone() for p in student.parameters()]
        m = train_opd.opd_step(
            student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(0)
        )
        assert all(p.dtype == torch.float32 for p in student.parameters())
        # the float32 weights trained
        assert any(not torch.equal(p, q) for p, q in zip(student.parameters(), before))
        gaps[dtype] = m["logp/rollout_vs_train_max_abs"]
    assert gaps["float32"] < 1e-4 and 1e-3 < gaps["bfloat16"] < 0.5, gaps
    with pytest.raises(SystemExit):
        train_opd.parse_config(["--rollout-dtype", "float16"])


def test_memory_knobs_follow_the_batch_the_user_asked_for(monkeypatch):
    """A preset's --micro-batch shrinks to a smaller --batch-size; one typed above it is refused by
    name. Under torchrun a preset's --rollout-batch shrinks until it divides each process's rows;
    one typed that does not is refused."""
    assert train_opd.parse_config(["--batch-size", "4"])["micro_batch"] == 4  # the tiny preset's 64, lowered
    assert train_opd.parse_config(["--batch-size", "4", "--micro-batch", "2"])["micro_batch"] == 2
    assert train_opd.parse_config(["--preset", "paper", "--batch-size", "8"])["micro_batch"] == 4  # within
    with pytest.raises(errors.UserError, match=r"^--micro-batch 64: must be at most the 4 rows"):
        train_opd.parse_config(["--batch-size", "4", "--micro-batch", "64"])
    paper = ["--preset", "paper", "--chunk-size", "0"]
    assert train_opd.parse_config(paper)["rollout_batch"] == 16  # one process: 16 rows at a time, as set
    monkeypatch.setenv("WORLD_SIZE", "8")  # torchrun's 8 processes: 8 rows each
    assert train_opd.parse_config(paper)["rollout_batch"] == 8
    assert train_opd.parse_config(paper + ["--batch-size", "96"])["rollout_batch"] == 12
    assert train_opd.parse_config(paper + ["--rollout-batch", "4"])["rollout_batch"] == 4
    with pytest.raises(errors.UserError, match=r"^--rollout-batch 16: must divide the 8 rows of each"):
        train_opd.parse_config(paper + ["--rollout-batch", "16"])


PRESET_ONLY = {"amp", "grad_checkpointing", "data_seed", "eval_before"}  # keys only a preset sets, no range


def test_every_preset_value_passes_its_flags_check():
    """The presets are written out in full: every key a flag also sets holds a value that flag
    accepts, and every key only a preset sets is within PRESET_RULES."""
    import train_grpo
    import train_opsd
    import train_sft

    for module in (train_opd, train_opsd, train_grpo, train_sft):
        parser = config.build_parser(module.PRESETS, module.add_flags)
        for name, preset in module.PRESETS.items():
            for action in parser._actions:
                value = preset.get(action.dest)
                if callable(action.type) and value is not None:
                    assert action.type(str(value)) == value, (module.__name__, name, action.dest)
            config.check_ranges(preset, {}, module.PRESET_RULES)
            flags = {a.dest for a in parser._actions}
            assert not set(preset) - flags - set(module.PRESET_RULES) - PRESET_ONLY, (module.__name__, name)


def kill_run_at_step_3(monkeypatch, start_run, module=train_opd, step_name="opd_step"):
    """Start a run whose third training step (module.step_name) raises KeyboardInterrupt (a kill
    mid-run), then restore the step."""
    real_step, calls = getattr(module, step_name), {"n": 0}

    def dies_at_step_3(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_step(*a, **kw)

    monkeypatch.setattr(module, step_name, dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        start_run()
    monkeypatch.setattr(module, step_name, real_step)


def same_final_weights(run_a, run_b):
    """Assert two run folders end with bit-identical weights; return their per-step metric records."""
    wa, _ = models.load(str(run_a / "ckpt"))
    wb, _ = models.load(str(run_b / "ckpt"))
    for (k, va), vb in zip(wa.state_dict().items(), wb.state_dict().values()):
        assert torch.equal(va, vb), k
    rec = lambda p: [json.loads(l) for l in open(p) if '"loss"' in l]
    return rec(run_a / "metrics.jsonl"), rec(run_b / "metrics.jsonl")


def test_killed_run_resumes_exactly(tmp_path, monkeypatch):
    s, t = tiny_pair(tmp_path)
    args = [
        "--student",
        s,
        "--teacher",
        t,
        "--steps",
        "4",
        "--batch-size",
        "6",
        "--micro-batch",
        "3",
        "--max-new-tokens",
        "10",
        "--eval-n",
        "4",
        "--ckpt-every",
        "2",
        "--lr",
        "3e-3",
        "--threads",
        "1",
    ]
    train_opd.main(args + ["--out", str(tmp_path / "a")])
    kill_run_at_step_3(monkeypatch, lambda: train_opd.main(args + ["--out", str(tmp_path / "b")]))
    with pytest.raises(errors.UserError, match="--resume"):  # a second fresh start would mix two runs
        train_opd.main(args + ["--out", str(tmp_path / "b")])
    with pytest.raises(errors.UserError, match="another config.*--lr was 0.003, now 0.001"):
        train_opd.main(args + ["--out", str(tmp_path / "b"), "--resume", "--lr", "1e-3"])
    train_opd.main(args + ["--out", str(tmp_path / "b"), "--resume"])
    ra, rb = same_final_weights(tmp_path / "a", tmp_path / "b")
    assert [r["step"] for r in rb] == [1, 2, 3, 4]
    for x, y in zip(ra, rb):
        assert x["loss"] == y["loss"] and x["len/mean"] == y["len/mean"]
    with pytest.raises(errors.UserError, match="finished"):
        train_opd.main(args + ["--out", str(tmp_path / "b"), "--resume"])


def test_clear_errors(tmp_path):
    s, t = tiny_pair(tmp_path)
    base = ["--student", s, "--teacher", t, "--steps", "1", "--threads", "1", "--eval-n", "2"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(data_files.DataError):
        train_opd.main(base + ["--data", str(empty), "--out", str(tmp_path / "e")])
    s2, t2 = tiny_pair(tmp_path / "short", max_position_embeddings=64)
    with pytest.raises(ValueError, match="context"):
        train_opd.main(["--student", s2, "--teacher", t2, "--out", str(tmp_path / "c"), "--threads", "1"])
    with pytest.raises(errors.UserError, match="no run folder"):
        train_opd.main(base + ["--out", str(tmp_path / "none"), "--resume"])


def test_paper_preset_runs_on_tiny_hub_style_checkpoints(tmp_path):
    """The paper's setting end to end (top-p 0.95, warm-up, weight decay, gradient checkpointing,
    chunked loss, local jsonl data) with tiny checkpoints standing in for the hub's."""
    # the paper preset evaluates with 8,192 new tokens
    s, t = tiny_pair(tmp_path, max_position_embeddings=16384)
    rows = [{"problem": f"What is {a}+{b}?", "answer": str(a + b)} for a in range(4) for b in range(3)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]))
    summary = train_opd.main(
        [
            "--preset",
            "paper",
            "--student",
            s,
            "--teacher",
            t,
            "--data",
            str(tmp_path / "train.jsonl"),
            "--eval-data",
            str(tmp_path / "eval.jsonl"),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--micro-batch",
            "2",
            "--max-new-tokens",
            "8",
            "--eval-n",
            "3",
            "--chunk-size",
            "4",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    cfg = json.load(open(tmp_path / "run" / "config.json"))
    assert (
        cfg["top_p"] == 0.95
        and cfg["grad_checkpointing"]
        and cfg["weight_decay"] == 0.1
        and cfg["chunk_size"] == 4
    )
    recs = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in l]
    assert len(recs) == 2 and all(math.isfinite(r["loss"]) and r["lr"] > 0 for r in recs[:1])
    assert recs[0]["logp/rollout_vs_train_max_abs"] < 1e-4
    assert summary["student_after"]["n"] == 3
    w0, _ = models.load(s)
    w1, _ = models.load(str(tmp_path / "run" / "ckpt"))
    assert any(not torch.equal(a, b) for a, b in zip(w0.state_dict().values(), w1.state_dict().values()))


@pytest.mark.parametrize("flag, dtype", [(None, torch.float32), ("bfloat16", torch.bfloat16)])
def test_teacher_dtype_is_the_precision_the_teacher_scores_in(tmp_path, monkeypatch, flag, dtype):
    s, t = tiny_pair(tmp_path)
    seen, step = [], train_opd.opd_step

    def recording_step(student, teacher, *args):
        seen.append((next(student.parameters()).dtype, next(teacher.parameters()).dtype))
        return step(student, teacher, *args)

    monkeypatch.setattr(train_opd, "opd_step", recording_step)
    train_opd.main(
        [
            "--student",
            s,
            "--teacher",
            t,
            "--steps",
            "1",
            "--batch-size",
            "4",
            "--micro-batch",
            "4",
            "--max-new-tokens",
            "6",
            "--eval-n",
            "2",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "run"),
        ]
        + (["--teacher-dtype", flag] if flag else [])
    )
    assert seen == [(torch.float32, dtype)]  # the student's training weights stay float32 either way


def test_mismatched_tokenizers_are_refused_before_training(tmp_path):
    """A teacher whose tokenizer maps two byte ids the other way round (same size, same specials):
    every log-prob it gave would be for another token; the run must stop at load time."""
    from test_models import hf_byte_tokenizer

    good, bad = tmp_path / "student", tmp_path / "swapped"
    for path, seed, swap in ((good, 2, None), (bad, 1, (65, 66))):
        models.build_tiny(seed=seed).save_pretrained(path)
        hf_byte_tokenizer(swap=swap).save_pretrained(path)
    with pytest.raises(ValueError, match="tokenizers differ") as err:
        train_opd.main(
            [
                "--student",
                str(good),
                "--teacher",
                str(bad),
                "--steps",
                "1",
                "--threads",
                "1",
                "--eval-n",
                "2",
                "--out",
                str(tmp_path / "run"),
            ]
        )
    assert "'A'" in str(err.value) or "65" in str(err.value)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # nothing was trained or logged


def test_chunked_monitors_of_a_short_first_row_equal_that_row_scored_alone():
    """At paper scale (--chunk-size) the monitors read the micro-batch's first row only. When that
    row is shorter than the longest of its micro-batch, they must be its own: equal to the plain
    path's monitors of the row scored alone (transformers' forward, full logits)."""
    cfg = small_cfg(chunk_size=4)
    tok, teacher, student, prompts, _, _ = setup_step(cfg)
    responses = [[17, 18, 19], [20, 21, 22, 23, 24, 25, 26]]  # the first row is the shorter
    contexts = prompts[:2]
    with torch.no_grad():
        alone_logp, _ = rollout.score(student, contexts[:1], responses[:1], return_logits=False)
        rollout_logp = [alone_logp[0, :3].tolist(), [0.0] * 7]
        tokens = rollout.pad_right(responses, tok.pad_token_id)
        hid_s, mask = rollout.score(student, contexts, responses, return_hidden=True)
        hid_t, _ = rollout.score(teacher, contexts, responses, return_hidden=True)
        chunked = train_opd.new_monitor_sums()
        train_opd.micro_batch_monitors(
            chunked, student, teacher, hid_s, hid_t, tokens, mask, rollout_logp, cfg
        )
        log_s, mask0 = rollout.score(student, contexts[:1], responses[:1], impl="transformers")
        log_t, _ = rollout.score(teacher, contexts[:1], responses[:1], impl="transformers")
        plain = train_opd.new_monitor_sums()
        train_opd.add_monitors(plain, log_s, log_t, tokens[:1, :3], mask0, rollout_logp[:1], cfg["k"])
    assert chunked["_tokens"] == plain["_tokens"] == 3
    for key in plain:
        assert chunked[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-5), key


def test_runs_that_show_a_pitfall_say_so_and_the_table_marks_a_collapse():
    """make opd WORLD=2 (the far teacher) and the biased losses name the pitfall they show; a run
    of the same world with another teacher, or an unbiased loss, says nothing; the final table
    reads the collapse signature it is given."""
    far = train_opd.parse_config(["--preset", "tiny2"])
    assert any("teacher choice" in n for n in train_opd.notes(far))
    assert (
        train_opd.notes(train_opd.parse_config(["--preset", "tiny2", "--teacher", "runs/grpo2/ckpt"])) == []
    )
    assert train_opd.notes(train_opd.parse_config([])) == []
    (plain,) = train_opd.notes(train_opd.parse_config(["--loss", "topk_plain"]))
    assert "Mechanism 2" in plain
    cfg = train_opd.parse_config(["--loss", "topk_plain", "--k", "5"])
    ev = {"acc/pass@1": 0.5, "acc/pass@1_ci": [0.4, 0.6], "len/mean": 20.0, "len/truncated_frac": 0.0}
    ev["rep/ratio"] = 0.1
    summary = {"teacher": ev, "student_before": ev, "student_after": ev, "wall_s": 1.0}
    text = train_opd.final_table(cfg, summary, {"mass": 0.41, "truncated": 0.3, "collapsed": True})
    assert "student Top-5 mass 0.410" in text and text.splitlines()[-2].endswith("COLLAPSED")
    assert text.splitlines()[-1] == "this run shows " + plain
    healthy = train_opd.final_table(
        train_opd.parse_config([]), summary, {"mass": 0.98, "truncated": 0.0, "collapsed": False}
    )
    assert healthy.splitlines()[-1].endswith("absent")


def test_min_lr_equal_to_lr_is_a_constant_schedule():
    """--min-lr sets the cosine's floor: equal to --lr, every step runs at --lr (the collapse
    protocol's schedule); the default decays to 0 at the last step."""
    model = torch.nn.Linear(2, 2)
    for argv, last in ((["--lr", "3e-4", "--min-lr", "3e-4"], 3e-4), (["--lr", "3e-4"], 0.0)):
        cfg = train_opd.parse_config(argv + ["--steps", "10"])
        opt, sched = common.optimizer(model, cfg, cfg["steps"])
        lrs = []
        for _ in range(cfg["steps"] + 1):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        assert lrs[0] == pytest.approx(3e-4) and lrs[-1] == pytest.approx(last, abs=1e-12)
        assert (max(lrs) - min(lrs) < 1e-12) == (last == 3e-4)


def test_collapse_alarm_warns_or_stops_before_the_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    """With a rule that rings as soon as it can (5 steps), --on-collapse warn marks step 5's record
    once and trains on; stop ends at step 5 with ckpt/ from step 4 and no summary, and the run
    continued with --resume --on-collapse warn ends with the uninterrupted run's weights."""
    import diagnostics

    monkeypatch.setattr(diagnostics, "ALARM_RULE", {"deficit": -1.0})
    s, t = tiny_pair(tmp_path)
    args = ["--student", s, "--teacher", t, "--steps", "7", "--batch-size", "4", "--max-new-tokens", "8"]
    args += ["--eval-n", "2", "--ckpt-every", "2", "--lr", "3e-3", "--threads", "1"]
    train_opd.main(args + ["--out", str(tmp_path / "warn")])
    marked = [
        r["step"]
        for r in same_final_weights(tmp_path / "warn", tmp_path / "warn")[0]
        if "alarm/collapse" in r
    ]
    assert marked == [5]
    out = train_opd.main(args + ["--out", str(tmp_path / "stop"), "--on-collapse", "stop"])
    assert out == {"stopped_at": 5, "collapse_alarm": 5}
    assert not (tmp_path / "stop" / "summary.json").exists()
    state = torch.load(tmp_path / "stop" / "ckpt" / "train_state.pt", weights_only=False)
    assert state["step"] == 4
    train_opd.main(args + ["--out", str(tmp_path / "stop"), "--resume", "--on-collapse", "warn"])
    rw, rs = same_final_weights(tmp_path / "warn", tmp_path / "stop")
    assert [r["step"] for r in rs] == list(range(1, 8))
    assert [r["loss"] for r in rw] == [r["loss"] for r in rs]
    assert [r["step"] for r in rs if "alarm/collapse" in r] == [5]
