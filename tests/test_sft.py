"""Tests for train_sft.py, the tiny world's training mix (tiny_world/mix.py, build.py) and the tiny
tokenizer they train with.

Command: `pytest -q tests/test_sft.py` (CPU, offline, a few seconds on 2 cores).

What is checked, each against something built independently of the code under test:
  * a few SFT steps lower the NLL of the batch they train on;
  * the loss covers the response (and its end-of-turn token) only: an item's ids equal a
    hand-written ChatML string, and the batched, padded loss equals the sum of per-example
    losses computed from unpadded transformers forwards;
  * the trace filter (Fix 3) keeps correct traces and drops wrong, unboxed, truncated and
    repetitive ones;
  * the tiny tokenizer round-trips arbitrary UTF-8, and its chat prompt is what a Qwen3-style
    jinja chat template renders through transformers (non-thinking mode);
  * an interrupted run resumed from its checkpoint ends with the same weights, bit for bit, as
    the uninterrupted run;
  * malformed and empty jsonl datasets fail with the file, line and field; every flag has help;
  * the tiny world's mix puts each kind of context where its fractions say.
"""

import json
import math
import pathlib
import random

import pytest
import tokenizers
import torch
import transformers

import common
import data
import data_files
import errors
import grader
import models
import sft_items
import train_sft
from tiny_world import build, mix

IM_START, IM_END, THINK, END_THINK = 257, 258, 259, 260


def tiny_model(seed=0):
    return models.build_tiny(
        seed,
        num_hidden_layers=1,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
    )


MIX = dict(hint_frac=0.3, rule_frac=0.3, hard_hint_frac=0.75, repeat_1op=0)


def mixed_items(tok, n=6):
    """A few items of every context kind (plain, hint, rule, hard)."""
    problems = data.load_examples("synthetic", n=n, split="train", seed=5, hard_frac=0.3)
    return mix.world1_items(tok, problems, MIX)


# ----------------------------------------------------------------------------------------------
# The loss: NLL on the response only
# ----------------------------------------------------------------------------------------------


def test_a_few_sft_steps_lower_the_nll_of_the_batch():
    torch.manual_seed(0)
    tok, model = models.tiny_tokenizer(), tiny_model().train()
    items = mixed_items(tok, 8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, n = train_sft.nll_sum(model, items)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item() / n)
    assert losses[-1] < 0.8 * losses[0], losses


def test_an_item_is_the_chatml_prompt_then_the_response_and_end_of_turn():
    tok = models.tiny_tokenizer()
    ex = data.load_examples("synthetic", n=1, split="train", seed=2)[0]
    item = sft_items.make_item(tok, "x", data.context_ids(tok, ex, "none"), ex.solution, "plain")
    # independent construction: the ChatML text of Qwen3's non-thinking template, by hand
    prompt_text = f"<|im_start|>user\n{ex.problem}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    want = tok.enc.encode(prompt_text + ex.solution + "<|im_end|>", allowed_special="all")
    P = len(tok.enc.encode(prompt_text, allowed_special="all"))
    assert item.prompt + item.response == want and len(item.prompt) == P
    assert tok.decode(item.response, skip_special=False) == ex.solution + "<|im_end|>"


def test_padded_batch_loss_equals_per_example_losses_without_padding():
    """Prompt positions and padding contribute nothing: the batched loss is the sum, over the
    examples, of -log p(response token) from each example's own unpadded forward."""
    tok, model = models.tiny_tokenizer(), tiny_model(seed=3)
    items = mixed_items(tok, 6)
    assert len({len(it.prompt) for it in items}) > 1 and len({len(it.response) for it in items}) > 1  # ragged
    loss, n = train_sft.nll_sum(model, items)
    want, count = 0.0, 0
    with torch.no_grad():
        for it in items:
            seq = torch.tensor([it.prompt + it.response])
            logp = model(input_ids=seq).logits[0].float().log_softmax(-1)  # (L, V)
            P = len(it.prompt)
            for t, y in enumerate(it.response):
                want -= logp[P + t - 1, y].item()
            count += len(it.response)
    assert n == count
    assert loss.item() == pytest.approx(want, rel=1e-4)


def test_gradient_ignores_the_prompt_targets():
    """The loss must not contain -log p(prompt token): its gradient equals that of the
    response-only sum computed by hand from transformers' forward."""
    tok, model = models.tiny_tokenizer(), tiny_model(seed=4)
    it = mixed_items(tok, 1)[0]
    loss, n = train_sft.nll_sum(model, [it])
    assert n == len(it.response)
    g_ours = torch.autograd.grad(loss, model.model.embed_tokens.weight)[0]
    seq = torch.tensor([it.prompt + it.response])
    logp = model(input_ids=seq).logits[0, :-1].float().log_softmax(-1)  # (L-1, V): position t predicts t+1
    P = len(it.prompt)
    by_hand = -logp[P - 1 :].gather(-1, seq[0, P:, None]).sum()
    every_token = -logp.gather(-1, seq[0, 1:, None]).sum()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5) and loss.item() < every_token.item() - 1.0
    g_hand = torch.autograd.grad(by_hand, model.model.embed_tokens.weight)[0]
    torch.testing.assert_close(g_ours, g_hand, rtol=1e-4, atol=1e-6)


def test_tiny_world_mix_draws_each_context_at_its_fraction():
    """world1_items, the tiny world's mix: every kind appears, hard problems only with the
    hint or plain, 1-operation problems repeated, and the fractions near the mix's over many."""
    tok = models.tiny_tokenizer()
    problems = data.load_examples("synthetic", n=3000, split="train", seed=6, hard_frac=0.2)
    shares = dict(hint_frac=0.15, rule_frac=0.25, hard_hint_frac=0.75, repeat_1op=2)
    items = mix.world1_items(tok, problems, shares)
    kinds = [it.kind for it in items]
    easy_1op = sum(ex.meta.get("ops") == 1 and not ex.meta.get("hard") for ex in problems)
    assert len(items) == len(problems) + 2 * easy_1op
    n_hard = sum(k.startswith("hard") for k in kinds)
    assert abs(kinds.count("hard-hint") / n_hard - 0.75) < 0.05
    ordinary = len(items) - n_hard
    assert (
        abs(kinds.count("rule") / ordinary - 0.25) < 0.03
        and abs(kinds.count("hint") / ordinary - 0.15) < 0.03
    )
    rule = next(it for it in items if it.kind == "rule")
    assert tok.decode(rule.prompt, skip_special=False).startswith(
        "<|im_start|>system\n" + data.SYSTEM_RULE_SYNTHETIC
    )
    assert mix.world1_items(tok, problems, shares) == items  # a fixed draw
    plain = sft_items.reference_items(tok, problems[:50])
    assert {it.kind for it in plain} == {"plain"}  # the reference source: the student's context only


# ----------------------------------------------------------------------------------------------
# Fix 3's trace filter
# ----------------------------------------------------------------------------------------------


def test_trace_filter_keeps_good_traces_and_rejects_bad_ones():
    tok = models.tiny_tokenizer()

    def check(text, gold, finished=True):
        return sft_items.keep_trace(tok.encode(text), text, gold, finished, max_rep=0.4)

    assert check("=3+8-5\n=11-5\n=6\n\\boxed{6}", "6") == (True, "kept")
    assert check("=3+8-5\n=11-5\n=7\n\\boxed{7}", "6") == (False, "wrong")
    assert check("=3+8-5\n=11-5\n=6", "6") == (False, "no_box")
    assert check("=3+8-5\n=11-5\n=6\n\\boxed{6}", "6", finished=False) == (False, "truncated")
    looping = "=3+8-5\n" * 8 + "=6\n\\boxed{6}"
    assert grader.grade(looping, "6")  # right answer, but it loops
    assert check(looping, "6") == (False, "repetitive")


def test_trace_filter_threshold_keeps_every_reference_solution():
    tok = models.tiny_tokenizer()
    for ex in data.load_examples("synthetic", n=2000, split="train", seed=9, hard_frac=0.1):
        assert sft_items.keep_trace(tok.encode(ex.solution), ex.solution, ex.answer, True, 0.4)[0], (
            ex.solution
        )


# ----------------------------------------------------------------------------------------------
# The tiny tokenizer and its chat format
# ----------------------------------------------------------------------------------------------


def random_text(rng, n):
    ranges = [
        (0x20, 0x7E),
        (0x0, 0x1F),
        (0xA0, 0x24F),
        (0x370, 0x3FF),
        (0x4E00, 0x4FFF),
        (0x1F300, 0x1F64F),
        (0x10000, 0x10FFF),
        (0xE000, 0xF8FF),
    ]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def test_tiny_tokenizer_round_trips_arbitrary_utf8():
    tok, rng = models.tiny_tokenizer(), random.Random(0)
    texts = [random_text(rng, rng.randint(0, 60)) for _ in range(300)]
    texts += ["<|im_end|> is text here", "\\boxed{-12}\n", "e\u0301 \U0001f600 \u00e9 \ufeff", ""]
    for text in texts:
        ids = tok.encode(text)
        assert ids == list(text.encode("utf-8"))  # one id per byte, no special ids from text
        assert tok.decode(ids) == text


QWEN3_STYLE_TEMPLATE = (
    # The message and generation-prompt parts of Qwen3's chat template (tools and the assistant
    # history's reasoning handling left out): ChatML turns, and in non-thinking mode an empty
    # think block after the assistant header.
    "{%- if messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}"
    "{%- endif %}"
    "{%- endif %}"
)


@pytest.mark.parametrize("system", [None, data.SYSTEM_RULE_SYNTHETIC])
def test_tiny_chat_prompt_matches_a_qwen3_style_template_rendered_by_transformers(system):
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel({"<unk>": 0}, unk_token="<unk>"))
    hf = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=QWEN3_STYLE_TEMPLATE)
    tok = models.tiny_tokenizer()
    user = data.student_prompt("What is 3+4*2-5?")
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    rendered = hf.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    ids = tok.chat_prompt(user, system=system)
    assert tok.decode(ids, skip_special=False) == rendered
    # and the markers are single special ids, exactly where the template puts them
    assert ids == tok.enc.encode(rendered, allowed_special="all")
    assert ids[-6:] == [THINK] + tok.encode("\n\n") + [END_THINK] + tok.encode("\n\n")
    assert ids.count(IM_START) == (3 if system else 2) and ids.count(IM_END) == (2 if system else 1)


# ----------------------------------------------------------------------------------------------
# Checkpoint and resume
# ----------------------------------------------------------------------------------------------


def small_run(out, **extra):
    """A few SFT steps of a small scratch model on the tiny world's mix (tiny_world.build.train_model)."""
    shape = dict(
        num_hidden_layers=1,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=32,
    )
    cfg = dict(
        mix.MODELS["student"],
        shape=shape,
        n_train=60,
        hint_frac=0.3,
        rule_frac=0.2,
        steps=7,
        batch_size=8,
        micro_batch=3,
        lr=1e-2,
        ckpt_every=2,
        save_dtype="float32",
        eval_n=4,
        eval_hard_n=2,
        eval_max_new_tokens=6,
        threads=1,
        out=str(out),
    )
    cfg.update(extra)
    return cfg


def test_resume_continues_the_same_run_bit_for_bit(tmp_path):
    build.train_model(small_run(tmp_path / "straight"))
    build.train_model(small_run(tmp_path / "cut", stop_at=3))  # "interrupted" after step 3
    assert torch.load(tmp_path / "cut" / "ckpt" / "train_state.pt", weights_only=False)["step"] == 3
    build.train_model(small_run(tmp_path / "cut", resume=True))
    a = torch.load(tmp_path / "straight" / "ckpt" / "train_state.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "ckpt" / "train_state.pt", weights_only=False)
    assert a["stream"] == b["stream"] and a["step"] == b["step"] == 7
    wa, _ = models.load(str(tmp_path / "straight" / "ckpt"))
    wb, _ = models.load(str(tmp_path / "cut" / "ckpt"))
    for (name, w), v in zip(wa.state_dict().items(), wb.state_dict().values()):
        assert torch.equal(w, v), name
    # the weights moved (equality is not trivial), and the metrics are one line per step
    init = models.build_tiny(0, **small_run(tmp_path)["shape"])
    assert not torch.equal(
        init.state_dict()["model.embed_tokens.weight"], wa.state_dict()["model.embed_tokens.weight"]
    )
    lines = [json.loads(x) for x in open(tmp_path / "cut" / "metrics.jsonl")]
    straight = [json.loads(x) for x in open(tmp_path / "straight" / "metrics.jsonl")]
    assert [r["step"] for r in lines] == list(range(1, 8))
    assert [r["loss"] for r in lines] == [r["loss"] for r in straight]
    # the saved final model loads through models.load, and the summary holds the tiny world's table
    model, tok = models.load(str(tmp_path / "cut" / "final"), device="cpu")
    assert torch.equal(model.state_dict()["model.norm.weight"], wa.state_dict()["model.norm.weight"])
    summary = json.load(open(tmp_path / "cut" / "summary.json"))
    assert summary["eval"]["hard_wrong_hint"]["n"] == 2 and summary["steps_done"] == 7


def test_resume_refuses_other_settings(tmp_path):
    build.train_model(small_run(tmp_path / "r", stop_at=2))
    with pytest.raises(ValueError, match="lr"):
        build.train_model(small_run(tmp_path / "r", resume=True, lr=5e-3))
    with pytest.raises(errors.UserError, match="--resume"):
        build.train_model(small_run(tmp_path / "r"))  # would overwrite the run


def test_sft_student_on_teacher_traces_end_to_end(tmp_path):
    """train_sft.main with --source traces (the sft-student preset): the shipped teacher writes,
    the filter keeps, the student trains on exactly the cached traces, and the before/after
    evaluation is in the summary."""
    tiny = pathlib.Path(__file__).resolve().parents[1] / "tiny"
    args = [
        "--preset",
        "sft-student",
        "--student",
        str(tiny / "student"),
        "--teacher",
        str(tiny / "teacher"),
        "--n-train",
        "12",
        "--eval-n",
        "4",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    summary = train_sft.main(args)
    traces = [json.loads(x) for x in open(tmp_path / "run" / "traces.jsonl")]
    assert summary["data"]["items"] == len(traces) > 0
    kept = summary["data"]["trace_filter"]
    assert kept["kept"] == len(traces) and sum(kept.values()) == 12
    assert all(grader.grade(t["response"], t["answer"]) for t in traces)
    assert summary["steps"] == -(-2 * len(traces) // 32)  # --epochs 2 of the preset
    assert set(summary["eval_before"]) == set(summary["eval"]) == {"greedy", "sampled"}


# ----------------------------------------------------------------------------------------------
# Schedule, datasets, flags
# ----------------------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = common.cosine_schedule(opt, 100, 0.1, min_ratio=1e-5 / 1e-3)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-6)
    # the closed form of the cosine half-way through the decay: min + (max - min) / 2
    assert lrs[55] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 45 / 90)))


def test_jsonl_source_reads_pairs_and_names_bad_lines(tmp_path):
    tok = models.tiny_tokenizer()
    good = tmp_path / "good.jsonl"
    good.write_text(
        json.dumps({"prompt": "1+1?", "response": "\\boxed{2}"})
        + "\n\n"
        + json.dumps({"prompt": "2+2?", "response": "4", "system": "be brief"})
        + "\n"
    )
    items = sft_items.jsonl_items(str(good), tok)
    assert [it.response[-1] for it in items] == [IM_END, IM_END]
    assert items[1].prompt == tok.chat_prompt("2+2?", system="be brief")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "1+1?", "response": "2"})
        + "\n"
        + json.dumps({"prompt": "2+2?", "answer": "4"})
        + "\n"
    )
    with pytest.raises(data_files.DataError, match=r"bad.jsonl:2: field 'response'"):
        sft_items.jsonl_items(str(bad), tok)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "1+1?", "response": \n')
    with pytest.raises(data_files.DataError, match=r"broken.jsonl:1: not valid JSON"):
        sft_items.jsonl_items(str(broken), tok)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(data_files.DataError, match="empty"):
        sft_items.jsonl_items(str(empty), tok)


def test_every_flag_has_help_and_contradictions_are_refused(capsys):
    for script in (train_sft, build):
        with pytest.raises(SystemExit):
            script.main(["--help"])
    text = capsys.readouterr().out
    assert "--max-rep" in text and "--force" in text
    with pytest.raises(
        errors.UserError, match="--teacher only writes responses for --source traces or samples"
    ):
        train_sft.parse_config(["--preset", "sft-student", "--source", "jsonl", "--data-path", "x.jsonl"])
    with pytest.raises(errors.UserError, match="needs --teacher"):
        train_sft.parse_config(["--source", "traces"])
    with pytest.raises(errors.UserError, match="--model"):
        build.main(["--steps", "10"])
    cfg = train_sft.parse_config(["--preset", "paper-sft", "--lr", "1e-5"])
    assert cfg["lr"] == 1e-5 and cfg["min_lr"] == 5e-7  # explicit flag beats preset, preset beats the base
