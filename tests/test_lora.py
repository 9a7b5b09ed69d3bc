"""Tests of lora.py and the LoRA students of the four trainers (CPU, seconds).

Each compares against something that is not lora.py: PEFT's own LoRA forward, its loading of our
saved adapters and its merge; the base model's logits (bit for bit with the adapters off); the
gradient of a plain model with the merged weights pushed through the chain rule by hand; the
sampler of a plain model that holds the merged weights; transformers loading the merged export;
an uninterrupted run against a killed and resumed one.

    python -m pytest -q tests/test_lora.py
"""

import json
import re
import shutil

import pytest
import safetensors.torch
import torch
import transformers
from test_opd import kill_run_at_step_3, tiny_pair

import common
import config
import data
import decoder
import errors
import eval_cli
import lora
import losses
import models
import rollout
import train_grpo
import train_opd
import train_opsd
import train_sft

RANK, ALPHA = 4, 8


def adapted(seed=2, targets=lora.TARGETS):
    """A tiny model with adapters whose B is not zero (at the start it is, and the adapters would
    change nothing)."""
    model = lora.attach(models.build_tiny(seed=seed), RANK, ALPHA, targets, seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _, p in lora.adapters(model):
            p.B.copy_(torch.randn(p.B.shape, generator=g) * 0.05)
    return model


def peft_twin(model, seed=2):
    """PEFT's LoRA on the same base, holding `model`'s adapters (set through PEFT's own loader)."""
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(
        r=RANK, lora_alpha=ALPHA, target_modules=lora.settings(model)["targets"], lora_dropout=0.0
    )
    twin = peft.get_peft_model(models.build_tiny(seed=seed), cfg)
    result = peft.set_peft_model_state_dict(twin, lora.tensors(model))
    assert not result.unexpected_keys
    return twin.eval()


def contexts_and_responses(n=3, length=7):
    tok = models.tiny_tokenizer()
    examples = data.load_examples("synthetic", n=n, split="eval")
    g = torch.Generator().manual_seed(4)
    responses = [torch.randint(0, 256, (length + i,), generator=g).tolist() for i in range(n)]
    return [data.context_ids(tok, ex) for ex in examples], responses


def ids():
    return torch.tensor([models.tiny_tokenizer().chat_prompt("2+3*4=?")])


# -----------------------------------------------------------------------------
# The adapter's forward, its base, its gradient


def test_adapted_forward_is_pefts_in_every_forward_and_the_sampler():
    ours = adapted()
    twin = peft_twin(ours)
    with torch.no_grad():
        want = twin(ids()).logits
        torch.testing.assert_close(ours(ids()).logits, want, rtol=1e-5, atol=1e-5)
        contexts, responses = contexts_and_responses()
        ref, mask = rollout.score(twin.base_model.model, contexts, responses, impl="transformers")
        for impl in ("ours", "transformers"):  # packed.py's forward and the model's own
            got, _ = rollout.score(ours, contexts, responses, impl=impl)
            torch.testing.assert_close(got[mask], ref[mask], rtol=1e-5, atol=1e-5)
    # the hand-written sampler, greedy, against transformers' generate on PEFT's model
    tok = models.tiny_tokenizer()
    prompt = tok.chat_prompt("7-2+5=?")
    ro = rollout.generate(
        ours, [prompt], 20, temperature=0.0, eos_token_ids=tok.eos_token_ids, pad_token_id=tok.pad_token_id
    )
    out = twin.generate(
        input_ids=torch.tensor([prompt]),
        max_new_tokens=20,
        do_sample=False,
        eos_token_id=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
    )
    assert ro.responses()[0] == out[0, len(prompt) :].tolist()[: len(ro.responses()[0])]
    assert not torch.allclose(ours(ids()).logits, models.build_tiny(seed=2)(ids()).logits)  # B counts


def test_adapters_off_read_the_base_bit_for_bit():
    ours, base = adapted(), models.build_tiny(seed=2)
    contexts, responses = contexts_and_responses()
    with torch.no_grad(), lora.view(ours, "base"):
        assert torch.equal(ours(ids()).logits, base(ids()).logits)
        for impl in ("ours", "transformers"):
            got, _ = rollout.score(ours, contexts, responses, impl=impl)
            want, _ = rollout.score(base, contexts, responses, impl=impl)
            assert torch.equal(got, want), impl
        q = ours.model.layers[0].self_attn.q_proj
        assert q.weight is q.parametrizations.weight.original  # W itself, no copy
    assert lora.adapters(ours)[0][1].view == "adapted"  # the view ends with the block


def test_adapter_gradients_are_the_chain_rule_of_the_merged_weights_gradient():
    """dL/dA = (α/R) Bᵀ G and dL/dB = (α/R) G Aᵀ, with G = dL/dW' the gradient of a plain model
    that holds the merged weights W' (transformers' forward there, packed.py's here)."""
    ours = adapted()
    plain = models.build_tiny(seed=2)
    with torch.no_grad():
        for name, p in lora.adapters(ours):
            plain.get_submodule(name).weight.copy_(ours.get_submodule(name).weight)
    contexts, responses = contexts_and_responses()
    w = torch.randn(len(responses), max(map(len, responses)), generator=torch.Generator().manual_seed(5))

    def loss(model, impl):
        logp, mask = rollout.score(model, contexts, responses, return_logits=False, impl=impl)
        return (logp * w * mask).sum()

    loss(plain, "transformers").backward()
    loss(ours, "ours").backward()
    s = ALPHA / RANK
    for name, p in lora.adapters(ours):
        G = plain.get_submodule(name).weight.grad  # (out, in)
        torch.testing.assert_close(p.A.grad, s * p.B.detach().T @ G, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(p.B.grad, s * G @ p.A.detach().T, rtol=1e-4, atol=1e-6, msg=name)
    frozen = [n for n, q in ours.named_parameters() if not q.requires_grad]
    assert all(ours.get_parameter(n).grad is None for n in frozen) and len(frozen) > 14


def test_the_sampler_draws_from_the_merged_weights_in_every_precision():
    """rollout.generate on the adapted model draws what it draws on a plain model holding W + (α/R) B A
    (PEFT's merge), token for token, in float32 and from the bf16 sampling copy."""
    ours = adapted()
    merged = peft_twin(ours).merge_and_unload()
    tok = models.tiny_tokenizer()
    prompts = [tok.chat_prompt(f"{a}+{a}*3=?") for a in range(5)]
    for dtype in (None, torch.bfloat16):
        kw = dict(eos_token_ids=tok.eos_token_ids, pad_token_id=tok.pad_token_id, dtype=dtype)
        a = rollout.generate(ours, prompts, 24, generator=torch.Generator().manual_seed(3), **kw)
        b = rollout.generate(merged, prompts, 24, generator=torch.Generator().manual_seed(3), **kw)
        assert a.responses() == b.responses()
        torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-5 if dtype is None else 2e-2)


def test_decoder_reads_a_parametrized_projection_and_refuses_pefts():
    decoder.check_supported(adapted())
    with pytest.raises(ValueError, match="q_proj is a Linear.*not a torch.nn.Linear"):
        decoder.check_supported(peft_twin(adapted()).base_model.model)


# -----------------------------------------------------------------------------
# Training: one OPD step, the OPSD teacher


def small_opd(**kw):
    cfg = train_opd.parse_config(["--lora-rank", str(RANK)])
    cfg.update(batch_size=6, micro_batch=3, max_new_tokens=12, lr=3e-3, threads=1, loss="full_rkl", **kw)
    return cfg


def test_one_opd_step_trains_the_adapters_alone_and_samples_on_policy():
    cfg = small_opd()
    tok = models.tiny_tokenizer()
    teacher = models.build_tiny(seed=1).requires_grad_(False)
    student = lora.attach(models.build_tiny(seed=2), RANK, ALPHA, seed=0)
    frozen = {n: p.clone() for n, p in student.named_parameters() if not p.requires_grad}
    prompts = [data.context_ids(tok, ex) for ex in data.load_examples("synthetic", n=6, split="train")]
    opt, sched = common.optimizer(student, cfg, 10)
    responses, _, _ = common.sample_batch(student, tok, prompts, cfg, torch.Generator().manual_seed(0))
    kl = lambda: losses.masked_mean(
        losses.full_rkl(*(rollout.score(m, prompts, responses)[0] for m in (student, teacher))),
        rollout.score(student, prompts, responses)[1],
    ).item()
    with torch.no_grad():
        before = kl()
    m = train_opd.opd_step(
        student, teacher, tok, prompts, prompts, cfg, opt, sched, torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert kl() < before - 1e-4
    assert m["logp/rollout_vs_train_max_abs"] < 1e-4  # the sampler read the weights the loss trains
    assert all(torch.equal(p, frozen[n]) for n, p in student.named_parameters() if n in frozen)
    assert len(opt.state) == 2 * len(lora.adapters(student)) == 28  # Adam moments of A and B only
    assert all(p.B.abs().max() > 0 for _, p in lora.adapters(student))


def opsd_setup(tmp_path, mode):
    path = str(tmp_path / "m")
    models.save(models.build_tiny(seed=2), models.tiny_tokenizer(), path)
    cfg = train_opsd.parse_config(["--student", path, "--lora-rank", str(RANK), "--teacher-mode", mode])
    cfg.update(batch_size=4, micro_batch=4, max_new_tokens=10, lr=3e-2, threads=1, pi="answer_only", k=50)
    student, tok = models.load(path, dtype=torch.float32)
    lora.attach(student, RANK, ALPHA, seed=0)
    teacher = train_opsd.self_teacher(cfg, student, torch.device("cpu"))
    examples = data.load_examples("synthetic", n=4, split="train", hard_frac=0.5)
    prompts = [data.context_ids(tok, ex) for ex in examples]
    contexts = train_opsd.teacher_contexts(tok, examples, prompts, "answer_only")
    opt, sched = common.optimizer(student, cfg, 10)
    step = lambda s: train_opd.opd_step(
        student,
        teacher,
        tok,
        prompts,
        contexts,
        cfg,
        opt,
        sched,
        torch.Generator().manual_seed(s),
        train_opsd.teacher_view(cfg),
    )
    return cfg, path, student, teacher, contexts, prompts, step


def test_opsd_frozen_teacher_is_the_base_with_the_adapters_off_and_no_copy(tmp_path):
    cfg, path, student, teacher, contexts, prompts, step = opsd_setup(tmp_path, "frozen")
    assert teacher is student and train_opsd.teacher_view(cfg) == "base"
    assert "0.00 MiB of weights of its own" in train_opsd.teacher_memory(cfg, student)
    base, _ = models.load(path, dtype=torch.float32)
    responses = [p[-6:] for p in prompts]
    for s in range(2):
        assert step(s)["loss"] > 1e-4  # the hint makes a difference to distil
    with torch.no_grad():
        with lora.view(teacher, "base"):
            got, _ = rollout.score(teacher, contexts, responses)
        want, _ = rollout.score(base, contexts, responses)
        assert torch.equal(got, want)  # the initial weights, bit for bit, after the student moved
        moved, _ = rollout.score(student, contexts, responses)
        assert not torch.allclose(moved, want)


def test_opsd_ema_teacher_averages_the_adapters_by_its_formula(tmp_path):
    cfg, _, student, teacher, _, _, step = opsd_setup(tmp_path, "ema")
    d = cfg["ema_decay"] = 0.5
    first = lora.adapters(student)[0][1]
    expect_A, expect_B = first.A.detach().clone(), first.B.detach().clone()  # Ā, B̄ start as A, B
    for s in range(3):
        step(s)
        train_opsd.ema_update(teacher, student, d)
        expect_A = d * expect_A + (1 - d) * first.A.detach()
        expect_B = d * expect_B + (1 - d) * first.B.detach()
    torch.testing.assert_close(first.A_ema, expect_A, rtol=0, atol=1e-7)
    torch.testing.assert_close(first.B_ema, expect_B, rtol=0, atol=1e-7)
    assert first.B_ema.abs().max() > 0
    with torch.no_grad(), lora.view(student, "ema"):  # the ema view reads W + (α/R) B̄ Ā
        q = student.model.layers[0].self_attn.q_proj
        torch.testing.assert_close(q.weight, q.parametrizations.weight.original + 2 * expect_B @ expect_A)
    assert sum(p.numel() for p in lora.ema_parameters(student)) == lora.trainable(student)


# -----------------------------------------------------------------------------
# Runs: checkpoints in PEFT's layout, exact resume, the merged export, evaluation


def opd_args(tmp_path):
    s, t = tiny_pair(tmp_path)
    return [
        "--student", s, "--teacher", t, "--steps", "4", "--batch-size", "6", "--micro-batch", "3",
        "--max-new-tokens", "10", "--eval-n", "4", "--ckpt-every", "2", "--lr", "3e-3",
        "--threads", "1", "--lora-rank", str(RANK),
    ]  # fmt: skip


def test_killed_lora_run_resumes_exactly_and_refuses_other_adapters(tmp_path, monkeypatch):
    args = opd_args(tmp_path)
    train_opd.main(args + ["--out", str(tmp_path / "a")])
    kill_run_at_step_3(monkeypatch, lambda: train_opd.main(args + ["--out", str(tmp_path / "b")]))
    for flag, value, told in (("--lora-rank", "8", "was 4, now 8"), ("--lora-targets", "q_proj", "was \\[")):
        with pytest.raises(errors.UserError, match=f"another config.*{flag} {told}"):
            train_opd.main(args + ["--out", str(tmp_path / "b"), "--resume", flag, value])
    train_opd.main(args + ["--out", str(tmp_path / "b"), "--resume"])
    a, b = (safetensors.torch.load_file(tmp_path / r / "ckpt" / lora.WEIGHTS_FILE) for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(a[k].abs().max() > 0 for k in a)  # B moved from zero
    rec = lambda r: [json.loads(l) for l in open(tmp_path / r / "metrics.jsonl") if '"loss"' in l]
    assert [(x["loss"], x["len/mean"]) for x in rec("a")] == [(x["loss"], x["len/mean"]) for x in rec("b")]
    # the checkpoint is adapters alone: no config.json, no base weights
    assert sorted(p.name for p in (tmp_path / "a" / "ckpt").iterdir()) == [
        lora.CONFIG_FILE,
        lora.WEIGHTS_FILE,
        "manifest.json",
        "rank0.pt",
        "train_state.pt",
    ]


def test_saved_adapters_load_in_peft_and_merge_into_a_plain_transformers_folder(tmp_path):
    peft = pytest.importorskip("peft")
    args = opd_args(tmp_path)
    train_opd.main(args + ["--out", str(tmp_path / "run")])
    ckpt, merged = str(tmp_path / "run" / "ckpt"), str(tmp_path / "merged")
    base = transformers.AutoModelForCausalLM.from_pretrained(args[1])
    theirs = peft.PeftModel.from_pretrained(base, ckpt).eval()
    ours, _ = models.load(ckpt, dtype=torch.float32)  # lora.read + attach + merge
    with torch.no_grad():
        want = theirs(ids()).logits
        torch.testing.assert_close(ours(ids()).logits, want, rtol=1e-5, atol=1e-5)
        lora.main([ckpt, "--out", merged])
        plain = transformers.AutoModelForCausalLM.from_pretrained(merged)  # transformers alone
        assert not any("lora" in k or "parametriz" in k for k in plain.state_dict())
        torch.testing.assert_close(plain(ids()).logits, theirs.merge_and_unload()(ids()).logits)
    # and the other way: a folder PEFT writes, read by models.load (lora.read, attach, merge)
    twin = peft.get_peft_model(
        transformers.AutoModelForCausalLM.from_pretrained(args[1]),
        peft.LoraConfig(r=2, lora_alpha=3, target_modules=["v_proj", "down_proj"], lora_dropout=0.0),
    )
    with torch.no_grad():
        for name, p in twin.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
        twin.save_pretrained(str(tmp_path / "by_peft"))
        theirs = twin.eval()(ids()).logits
        torch.testing.assert_close(
            models.load(str(tmp_path / "by_peft"), dtype=torch.float32)[0](ids()).logits, theirs
        )
    # eval_math takes the adapter folder as it takes the merged one: the same answers
    out = {}
    for name, model in (("adapters", ckpt), ("merged", merged)):
        ev = tmp_path / f"eval-{name}"  # not the model's own folder: an evaluation writes only into its own
        eval_cli.main(["--model", model, "--limit", "6", "--out", str(ev), "--quiet"])
        out[name] = [json.loads(l)["response"] for l in open(ev / "synthetic.jsonl")]
    assert out["adapters"] == out["merged"] and len(out["merged"]) == 6


def test_sft_and_grpo_train_adapters_and_write_loadable_models(tmp_path):
    s, _ = tiny_pair(tmp_path)
    sft = ["--student", s, "--steps", "3", "--n-train", "12", "--batch-size", "4", "--eval-n", "4",
           "--threads", "1", "--lora-rank", "2", "--out", str(tmp_path / "sft")]  # fmt: skip
    train_sft.main(sft)
    final = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sft" / "final", dtype=torch.float32)
    adapters, _ = models.load(str(tmp_path / "sft" / "ckpt"), dtype=torch.float32)
    base, _ = models.load(s, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(final(ids()).logits, adapters(ids()).logits, rtol=1e-3, atol=1e-3)
        assert not torch.allclose(final(ids()).logits, base(ids()).logits, atol=1e-4)
    grpo = ["--student", s, "--steps", "1", "--batch-size", "2", "--group-size", "2", "--max-new-tokens", "6",
            "--eval-n", "2", "--threads", "1", "--lora-rank", "2", "--out", str(tmp_path / "grpo")]  # fmt: skip
    train_grpo.main(grpo)
    cfg = json.load(open(tmp_path / "grpo" / "ckpt" / lora.CONFIG_FILE))
    assert (cfg["r"], cfg["lora_alpha"], cfg["base_model_name_or_path"]) == (2, 4, s)
    models.load(str(tmp_path / "grpo" / "ckpt"))


# -----------------------------------------------------------------------------
# Bad input


def test_bad_adapter_flags_and_folders_are_refused_by_name(tmp_path, capsys):
    with pytest.raises(errors.UserError, match="--lora-alpha sets the low-rank adapters.*--lora-rank"):
        train_opd.parse_config(["--lora-alpha", "16"])
    with pytest.raises(errors.UserError, match="--lora-targets"):
        train_opsd.parse_config(["--lora-rank", "0", "--lora-targets", "q_proj"])
    with pytest.raises(SystemExit):
        train_grpo.parse_config(["--lora-rank", "4", "--lora-targets", "q_proj,lm_head"])
    assert "argument --lora-targets: 'lm_head' is no projection" in capsys.readouterr().err
    cfg = train_sft.parse_config(["--lora-rank", "8", "--lora-targets", "v_proj,q_proj"])
    assert (cfg["lora_alpha"], cfg["lora_targets"]) == (16, ["q_proj", "v_proj"])  # α = 2R, PEFT's order
    assert config.lora_targets("down_proj") == ["down_proj"]
    # the preset's learning rates times config.LORA_LR_SCALE, unless --lr is typed
    full, low = train_sft.parse_config([]), train_sft.parse_config(["--lora-rank", "4"])
    assert (low["lr"], low["min_lr"]) == pytest.approx((10 * full["lr"], 10 * full["min_lr"]))
    assert train_opd.parse_config(["--lora-rank", "4", "--lr", "1e-3"])["lr"] == 1e-3
    # an adapter folder that uses what lora.py does not implement, or names no base
    model = adapted()
    for key, value, told in (("use_dora", True, "use_dora"), ("base_model_name_or_path", None, "no base")):
        folder = str(tmp_path / key)
        lora.save(folder, lora.tensors(model), dict(lora.peft_config(model, "tiny/student"), **{key: value}))
        with pytest.raises(errors.UserError, match=told):
            models.load(folder)
    folder = str(tmp_path / "rank")  # weights of another rank than the config says
    lora.save(folder, lora.tensors(model), dict(lora.peft_config(model, "tiny/student"), r=2))
    with pytest.raises(errors.UserError, match="shape"):
        models.load(folder)


def test_paper_preset_with_adapters_checkpoints_activations_and_chunks_the_loss(tmp_path):
    """The paper's OPD setting with LoRA (gradient checkpointing through the model's own forward, the
    chunked loss, top-p, warm-up, weight decay) on tiny hub-style checkpoints: the adapters train at
    ten times the preset's lr, the base stays as it was, the sampler stays on-policy."""
    s, t = tiny_pair(tmp_path, max_position_embeddings=16384)  # the paper preset evaluates 8,192 tokens
    rows = [{"problem": f"What is {a}+{b}?", "answer": str(a + b)} for a in range(4) for b in range(3)]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    args = ["--preset", "paper", "--student", s, "--teacher", t, "--data", str(tmp_path / "train.jsonl"),
            "--eval-data", str(tmp_path / "train.jsonl"), "--steps", "2", "--batch-size", "4",
            "--micro-batch", "2", "--max-new-tokens", "8", "--eval-n", "3", "--chunk-size", "4",
            "--threads", "1", "--lora-rank", "8", "--out", str(tmp_path / "run")]  # fmt: skip
    train_opd.main(args)
    cfg = json.load(open(tmp_path / "run" / "config.json"))
    assert cfg["grad_checkpointing"] and cfg["chunk_size"] == 4 and cfg["lr"] == pytest.approx(2e-5)
    recs = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl") if '"loss"' in l]
    assert len(recs) == 2 and all(r["logp/rollout_vs_train_max_abs"] < 1e-4 for r in recs)
    adapters = safetensors.torch.load_file(tmp_path / "run" / "ckpt" / lora.WEIGHTS_FILE)
    assert all(adapters[k].abs().max() > 0 for k in adapters if "lora_B" in k)


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_make_passes_lora_to_the_four_trainers_and_refuses_it_elsewhere(tmp_path):
    from test_make import make, stamp_folder

    here = stamp_folder(tmp_path)
    for target, script in (("opd", "train_opd.py"), ("opsd", "train_opsd.py"), ("grpo", "train_grpo.py"),
                           ("sft-student", "train_sft.py")):  # fmt: skip
        done = make("-n", target, "LORA=16", cwd=here)
        assert done.returncode == 0 and re.search(
            rf"{script} .*--lora-rank 16", done.stdout.replace("\\\n", "")
        )
    refused = make("-n", "collapse", "LORA=16", cwd=here)
    assert refused.returncode != 0 and "LORA=16 is refused, this target does not read LORA" in refused.stderr
