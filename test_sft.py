"""Tests for train_sft.py and the tiny tokenizer it trains with.

Command: `pytest -q test_sft.py` (CPU, offline, a few seconds on 2 cores).

What is checked, each against something built independently of the code under test:
  * a few SFT steps lower the NLL of the batch they train on;
  * the loss covers the response (and its end-of-turn token) only: the label mask equals one
    built from a hand-written ChatML string, and the batched, padded loss equals the sum of
    per-example losses computed from unpadded forwards;
  * the trace filter (Fix 3) keeps correct traces and drops wrong, unboxed, truncated and
    repetitive ones;
  * the tiny tokenizer round-trips arbitrary UTF-8, and its chat prompt is what a Qwen3-style
    jinja chat template renders through transformers (non-thinking mode);
  * an interrupted run resumed from its checkpoint ends with the same weights, bit for bit, as
    the uninterrupted run;
  * malformed and empty jsonl datasets fail with the file, line and field; every flag has help.
"""

import json
import random

import pytest
import tokenizers
import torch
import transformers

import data
import eval_math
import models
import train_sft

IM_START, IM_END, THINK, END_THINK = 257, 258, 259, 260


def tiny_model(seed=0):
    return models.build_tiny(seed, num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                             num_attention_heads=2, num_key_value_heads=1, head_dim=16)


def mixed_items(tok, n=6):
    """A few items of every context kind (plain, hint, rule, hard)."""
    cfg = train_sft.parse_config(["--hint-frac", "0.3", "--rule-frac", "0.3", "--hard-frac", "0.3"])
    return train_sft.reference_items(cfg, tok, data.synthetic_examples(n, seed=5, hard_frac=0.3))


# ----------------------------------------------------------------------------------------------
# The loss: NLL on the response only
# ----------------------------------------------------------------------------------------------


def test_a_few_sft_steps_lower_the_nll_of_the_batch():
    torch.manual_seed(0)
    tok, model = models.tiny_tokenizer(), tiny_model().train()
    ids, attn, labels = train_sft.collate(mixed_items(tok, 8), tok.pad_token_id)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss, n = train_sft.nll_sum(model, ids, attn, labels)
        (loss / n).backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item() / n)
    assert losses[-1] < 0.8 * losses[0], losses


def test_label_mask_covers_exactly_the_response_and_end_of_turn():
    tok = models.tiny_tokenizer()
    ex = data.synthetic_examples(1, seed=2)[0]
    item = train_sft.make_item(tok, "x", data.context_ids(tok, ex, "none"), ex.solution, "plain")
    # independent construction: the ChatML text of Qwen3's non-thinking template, by hand
    prompt_text = (f"<|im_start|>user\n{ex.problem}<|im_end|>\n"
                   "<|im_start|>assistant\n<think>\n\n</think>\n\n")
    full_text = prompt_text + ex.solution + "<|im_end|>"
    want = tok.enc.encode(full_text, allowed_special="all")
    P = len(tok.enc.encode(prompt_text, allowed_special="all"))
    ids, attn, labels = train_sft.collate([item], tok.pad_token_id)
    assert ids[0].tolist() == want
    assert (labels[0, :P] == -100).all()
    assert labels[0, P:].tolist() == want[P:]
    assert tok.decode(labels[0, P:].tolist(), skip_special=False) == ex.solution + "<|im_end|>"


def test_padded_batch_loss_equals_per_example_losses_without_padding():
    """Prompt positions and padding contribute nothing: the batched loss is the sum, over the
    examples, of -log p(response token) from each example's own unpadded forward."""
    tok, model = models.tiny_tokenizer(), tiny_model(seed=3)
    items = mixed_items(tok, 6)
    assert len({len(it.prompt) for it in items}) > 1  # ragged, so padding is exercised
    loss, n = train_sft.nll_sum(model, *train_sft.collate(items, tok.pad_token_id))
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
    """Changing what the prompt says after position 0 changes the context, but the loss must
    not contain -log p(prompt token): compare with the response-only sum by hand."""
    tok, model = models.tiny_tokenizer(), tiny_model(seed=4)
    it = mixed_items(tok, 1)[0]
    ids, attn, labels = train_sft.collate([it], tok.pad_token_id)
    logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)  # (L-1, V)
    every_token = -logp.gather(-1, ids[0, 1:, None]).sum().item()
    loss, n = train_sft.nll_sum(model, ids, attn, labels)
    assert n == len(it.response)
    assert loss.item() < every_token - 1.0  # the prompt's ~150 tokens are not in it


# ----------------------------------------------------------------------------------------------
# Fix 3's trace filter
# ----------------------------------------------------------------------------------------------


def test_trace_filter_keeps_good_traces_and_rejects_bad_ones():
    tok = models.tiny_tokenizer()

    def check(text, gold, finished=True):
        return train_sft.keep_trace(tok.encode(text), text, gold, finished, max_rep=0.4)

    assert check("=3+8-5\n=11-5\n=6\n\\boxed{6}", "6") == (True, "kept")
    assert check("=3+8-5\n=11-5\n=7\n\\boxed{7}", "6") == (False, "wrong")
    assert check("=3+8-5\n=11-5\n=6", "6") == (False, "no_box")
    assert check("=3+8-5\n=11-5\n=6\n\\boxed{6}", "6", finished=False) == (False, "truncated")
    looping = "=3+8-5\n" * 8 + "=6\n\\boxed{6}"
    assert eval_math.grade(looping, "6")  # right answer, but it loops
    assert check(looping, "6") == (False, "repetitive")


def test_trace_filter_threshold_keeps_every_reference_solution():
    tok = models.tiny_tokenizer()
    for ex in data.synthetic_examples(2000, seed=9, hard_frac=0.1):
        assert train_sft.keep_trace(tok.encode(ex.solution), ex.solution, ex.answer, True, 0.4)[0], ex.solution


# ----------------------------------------------------------------------------------------------
# The tiny tokenizer and its chat format
# ----------------------------------------------------------------------------------------------


def random_text(rng, n):
    ranges = [(0x20, 0x7E), (0x0, 0x1F), (0xA0, 0x24F), (0x370, 0x3FF), (0x4E00, 0x4FFF),
              (0x1F300, 0x1F64F), (0x10000, 0x10FFF), (0xE000, 0xF8FF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def test_tiny_tokenizer_round_trips_arbitrary_utf8():
    tok, rng = models.tiny_tokenizer(), random.Random(0)
    texts = [random_text(rng, rng.randint(0, 60)) for _ in range(300)]
    texts += ["<|im_end|> is text here", "\\boxed{-12}\n", "e\u0301 \U0001F600 \u00e9 \ufeff", ""]
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
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    rendered = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tok.chat_prompt(user, system=system)
    assert tok.decode(ids, skip_special=False) == rendered
    # and the markers are single special ids, exactly where the template puts them
    assert ids == tok.enc.encode(rendered, allowed_special="all")
    assert ids[-6:] == [THINK] + tok.encode("\n\n") + [END_THINK] + tok.encode("\n\n")
    assert ids.count(IM_START) == (3 if system else 2) and ids.count(IM_END) == (2 if system else 1)


# ----------------------------------------------------------------------------------------------
# Checkpoint and resume
# ----------------------------------------------------------------------------------------------


def small_run(out, *extra):
    return train_sft.parse_config([
        "--init", "scratch", "--layers", "1", "--width", "32", "--ffn", "64", "--heads", "1",
        "--kv-heads", "1", "--n-train", "60", "--hint-frac", "0.3", "--rule-frac", "0.2",
        "--steps", "7", "--batch-size", "8", "--micro-batch-size", "3", "--lr", "1e-2",
        "--ckpt-every", "2", "--eval", "none", "--save-dtype", "float32", "--log-every", "100",
        "--out", str(out), *extra])


def test_resume_continues_the_same_run_bit_for_bit(tmp_path):
    train_sft.train(small_run(tmp_path / "straight"))
    train_sft.train(small_run(tmp_path / "cut", "--stop-at", "3"))  # "interrupted" after step 3
    partial = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)
    assert partial["state"]["step"] == 3
    train_sft.train(small_run(tmp_path / "cut", "--resume"))
    a = torch.load(tmp_path / "straight" / "ckpt.pt", weights_only=False)
    b = torch.load(tmp_path / "cut" / "ckpt.pt", weights_only=False)
    assert a["state"]["stream"] == b["state"]["stream"] and a["state"]["step"] == b["state"]["step"] == 7
    for name, w in a["model"].items():
        assert torch.equal(w, b["model"][name]), name
    # the weights moved (equality is not trivial), and the metrics are one line per step
    init = models.build_tiny(0, num_hidden_layers=1, hidden_size=32, intermediate_size=64,
                             num_attention_heads=1, num_key_value_heads=1, head_dim=32)
    assert not torch.equal(init.state_dict()["model.embed_tokens.weight"], a["model"]["model.embed_tokens.weight"])
    lines = [json.loads(x) for x in open(tmp_path / "cut" / "metrics.jsonl")]
    straight = [json.loads(x) for x in open(tmp_path / "straight" / "metrics.jsonl")]
    assert [r["step"] for r in lines] == list(range(1, 8))
    assert [r["loss/nll"] for r in lines] == [r["loss/nll"] for r in straight]
    # the saved final model loads through models.load
    model, tok = models.load(str(tmp_path / "cut" / "final"), device="cpu")
    assert torch.equal(model.state_dict()["model.norm.weight"], a["model"]["model.norm.weight"])


def test_resume_refuses_other_settings(tmp_path):
    train_sft.train(small_run(tmp_path / "r", "--stop-at", "2"))
    with pytest.raises(SystemExit, match="lr"):
        train_sft.train(small_run(tmp_path / "r", "--resume", "--lr", "5e-3"))
    with pytest.raises(SystemExit, match="--resume"):
        train_sft.train(small_run(tmp_path / "r"))  # would overwrite the run


# ----------------------------------------------------------------------------------------------
# Schedule, datasets, flags
# ----------------------------------------------------------------------------------------------


def test_lr_schedule_warms_up_then_decays_to_min_lr():
    cfg = train_sft.parse_config(["--steps", "100", "--lr", "1e-3", "--min-lr", "1e-5", "--warmup-frac", "0.1"])
    lrs = [train_sft.lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-6)


def test_jsonl_source_reads_pairs_and_names_bad_lines(tmp_path):
    tok = models.tiny_tokenizer()
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"prompt": "1+1?", "response": "\\boxed{2}"}) + "\n\n"
                    + json.dumps({"prompt": "2+2?", "response": "4", "system": "be brief"}) + "\n")
    items = train_sft.jsonl_items(str(good), tok)
    assert [it.response[-1] for it in items] == [IM_END, IM_END]
    assert items[1].prompt == tok.chat_prompt("2+2?", system="be brief")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "1+1?", "response": "2"}) + "\n"
                   + json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    with pytest.raises(data.DataError, match=r"bad.jsonl:2: field 'response'"):
        train_sft.jsonl_items(str(bad), tok)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "1+1?", "response": \n')
    with pytest.raises(data.DataError, match=r"broken.jsonl:1: not valid JSON"):
        train_sft.jsonl_items(str(broken), tok)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(data.DataError, match="empty"):
        train_sft.jsonl_items(str(empty), tok)


def test_every_flag_has_help_and_ignored_flags_are_refused():
    for action in train_sft.build_parser()._actions:
        assert action.help, action.option_strings
    with pytest.raises(SystemExit):
        train_sft.parse_config(["--build-tiny", "--steps", "10"])
    with pytest.raises(SystemExit):
        train_sft.parse_config(["--init", "tiny/student", "--layers", "3"])
    cfg = train_sft.parse_config(["--preset", "tiny-teacher", "--steps", "5"])
    assert cfg.steps == 5 and cfg.layers == 4  # explicit flag beats preset, preset beats default
