"""Tests for the second tiny world's data and plumbing (docs/tiny_world2.md): password requests in
the synthetic task, the training mix of each family, the judges summarised over records, the far
teacher's snapshots and the choice among them, and OPSD's shared rules.

Command: `pytest -q tests/test_tiny_world2.py` (CPU, about half a minute).
"""

import argparse
import json
import re

import pytest
import torch

import data
import errors
import models
import train_opsd
from tiny_world import build, mix, task

TOK = models.tiny_tokenizer()


def system_of(ids) -> str:
    """The system message of a tiny-tokenizer chat prompt ('' if none), read from its text."""
    m = re.match(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", TOK.decode(ids, skip_special=False), re.S)
    return m.group(1) if m else ""


def test_password_requests_keep_the_arithmetic_and_leave_other_problems_alone():
    plain = data.load_examples("synthetic", n=2000, split="train", seed=4, hard_frac=0.1)
    mixed = data.load_examples("synthetic", n=2000, split="train", seed=4, hard_frac=0.1, flagged_frac=0.3)
    assert not any(e.meta["flagged"] for e in plain)
    flagged = [e for e in mixed if e.meta["flagged"]]
    # a Bernoulli(0.3) share of the problems that are not hard products, within 4 standard errors
    n = sum(not e.meta["hard"] for e in mixed)
    assert abs(len(flagged) / n - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5
    assert not any(e.meta["hard"] for e in flagged)
    for e in flagged:
        assert e.problem == f"What is the password {e.meta['expr']}?" and task.is_flagged(e.problem)
        assert int(e.answer) == eval(e.meta["expr"])  # the same arithmetic, asked another way
    for e in mixed:
        if not e.meta["flagged"]:
            assert e.problem == f"What is {e.meta['expr']}?"
    # without flags the problems (and so the first world's data) are those drawn before flags existed
    unflagged = data.load_examples("synthetic", n=300, split="train", seed=4, flagged_frac=0.0)
    assert [e.problem for e in data.load_examples("synthetic", n=300, split="train", seed=4)] == [
        e.problem for e in unflagged
    ]
    with pytest.raises(ValueError, match="flagged_frac"):
        data.load_examples("synthetic", n=3, split="train", flagged_frac=1.5)


@pytest.mark.parametrize("family", ["teacher", "student", "teacher-O"])
def test_the_world2_mix_writes_each_context_its_target(family):
    """Each item read back from its tokens: the response a context asks for (declines of flagged
    requests under the constitution, the steps alone under the conciseness rule, and either of them
    unprompted in about `unprompted` of the other items), the family's notation in about
    1 - overlap of the step lines, and each kind at its fraction."""
    if family == "teacher-O":  # the far teacher in the student's notation (--style O)
        cfg = build.restyled(mix.MODELS2["teacher"], argparse.Namespace(style="O"))
        assert cfg["style"] == "operation" and cfg["shape"] == mix.MODELS2["teacher"]["shape"]
    else:
        cfg = mix.MODELS2[family]
    problems = data.load_examples(
        "synthetic",
        n=4000,
        split="train",
        seed=9,
        hard_frac=cfg["hard_frac"],
        flagged_frac=cfg["flagged_frac"],
    )
    items = mix.world2_items(TOK, problems, cfg, seed=1)
    kinds = [it.kind for it in items]
    own, other = cfg["style"], next(s for s in task.STYLES if s != cfg["style"])
    counts = {own: 0, other: 0}
    # flagged requests without the constitution; others without the rule
    unasked = {"declined": [], "concise": []}
    for it in items:
        prompt, response = TOK.decode(it.prompt, skip_special=False), TOK.decode(it.response[:-1])
        system = system_of(it.prompt)
        flagged = "What is the password " in prompt
        assert not task.is_refusal(response) or flagged, it.id
        if flagged and system == task.CONSTITUTION:
            assert task.is_refusal(response), it.id
        elif flagged:
            unasked["declined"].append(task.is_refusal(response))
        if task.is_refusal(response):
            continue
        if system == task.CONCISE_RULE:
            assert task.is_concise(response), it.id
        else:
            unasked["concise"].append(task.is_concise(response))
        expr = re.search(r"What is (?:the password )?([0-9+\-*]+)\?", prompt).group(1)
        assert int(re.search(r"\\boxed\{(-?\d+)\}", response).group(1)) == eval(expr)
        style = task.style_of(response)
        counts[max(style, key=style.get)] += 1
        if "The answer is" in prompt:
            assert system == "" and not flagged
    p = cfg["unprompted"]
    for name, xs in unasked.items():
        assert abs(sum(xs) / len(xs) - p) < 4 * (p * (1 - p) / len(xs)) ** 0.5, name
    share = counts[other] / (counts[own] + counts[other])
    assert (
        abs(share - cfg["overlap"])
        < 4 * (cfg["overlap"] * (1 - cfg["overlap"]) / sum(counts.values())) ** 0.5
    )
    ordinary = sum(k in ("plain", "concise", "constitution", "hint") for k in kinds)
    for kind, frac in (
        ("concise", cfg["concise_frac"]),
        ("constitution", cfg["constitution_frac"]),
        ("hint", cfg["hint_frac"]),
    ):
        assert abs(kinds.count(kind) / ordinary - frac) < 4 * (frac * (1 - frac) / ordinary) ** 0.5, kind
    n_flag = kinds.count("flagged-declined") + kinds.count("flagged-solved")
    assert (
        abs(kinds.count("flagged-declined") / n_flag - cfg["flagged_rule_frac"]) < 4 * (0.25 / n_flag) ** 0.5
    )
    assert mix.world2_items(TOK, problems, cfg, seed=1) == items  # a fixed draw


def test_measures_summarise_the_judges():
    ex = data.load_examples("synthetic", n=4, split="train", seed=2, flagged_frac=0.0)
    # a password request
    ex[3] = data.load_examples("synthetic", n=1, split="train", seed=77, flagged_frac=1.0)[0]
    assert len({e.id for e in ex}) == 4
    # the flagged one declined
    texts = [
        task.solution(ex[0].meta["expr"], "rewrite")[0],  # verbose, R, right
        task.solution(ex[1].meta["expr"], "operation", True)[0],  # concise, O, right
        task.REFUSAL,  # over-refusal
        task.REFUSAL + "<|im_end|>",
    ]
    records = [{"id": e.id, "response": t, "correct": i < 2} for i, (e, t) in enumerate(zip(ex, texts))]
    m = task.measures(ex, records)
    assert m["acc/others"] == pytest.approx(2 / 3) and m["refusal/others"] == pytest.approx(1 / 3)
    assert m["refusal/flagged"] == 1.0 and m["flagged_n"] == 1
    assert m["format/concise"] == pytest.approx(2 / 3)  # the concise solution and the refusal
    assert m["style/rewrite"] == pytest.approx(1 / 3) and m["style/operation"] == pytest.approx(1 / 3)
    assert "refusal/flagged" not in task.measures(ex[:3], records[:3])


def small_world2_run(out, **extra):
    shape = dict(
        num_hidden_layers=1,
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=32,
    )
    cfg = dict(
        mix.MODELS2["teacher"],
        shape=shape,
        n_train=80,
        steps=6,
        batch_size=8,
        micro_batch=4,
        lr=1e-2,
        ckpt_every=3,
        snapshot_every=2,
        save_dtype="float32",
        eval_n=4,
        eval_hard_n=2,
        eval_max_new_tokens=6,
        threads=1,
        out=str(out),
    )
    cfg.update(extra)
    return cfg


def test_snapshots_the_selection_and_the_matched_choice(tmp_path, monkeypatch):
    monkeypatch.setitem(build.SELECTION, "n", 6)
    summary = build.train_model(small_world2_run(tmp_path / "far"))
    steps = sorted(int(k) for k in summary["snapshots"]["acc"])
    assert steps == [2, 4, 6] and summary["snapshots"]["n"] == 6
    # the last snapshot is the final model: the same weights, saved at the same step
    last, _ = models.load(str(tmp_path / "far" / "snapshots" / "step00006"))
    final, _ = models.load(str(tmp_path / "far" / "final"))
    for (name, a), b in zip(last.state_dict().items(), final.state_dict().values()):
        assert torch.equal(a, b), name
    # snapshots differ along the run (they are not one copy)
    first, _ = models.load(str(tmp_path / "far" / "snapshots" / "step00002"))
    assert not torch.equal(first.state_dict()["model.norm.weight"], last.state_dict()["model.norm.weight"])
    # the second world's table is in the summary
    ev = summary["eval"]
    assert (
        ev["constitution"]["n"] == 4
        and "refusal/flagged" in ev["constitution"]
        and "style/rewrite" in ev["greedy"]
    )
    # matching a model that is one of the snapshots picks a snapshot of exactly its accuracy
    chosen = build.match_snapshot(
        str(tmp_path / "far"), str(tmp_path / "far" / "snapshots" / "step00004"), str(tmp_path / "pick")
    )
    accs = summary["snapshots"]["acc"]
    assert chosen["model_selection_acc"] == accs["4"] == chosen["snapshot_selection_acc"]
    assert chosen["step"] == min(int(k) for k, v in accs.items() if v == accs["4"])  # ties: the earliest
    src = tmp_path / "far" / "snapshots" / f"step{chosen['step']:05d}" / "model.safetensors"
    assert (tmp_path / "pick" / "teacher" / "model.safetensors").read_bytes() == src.read_bytes()
    assert json.load(open(tmp_path / "pick" / "summary.json"))["step"] == chosen["step"]
    # a second match never overwrites the first, nor a model folder
    kept = (tmp_path / "pick" / "teacher" / "model.safetensors").read_bytes()
    for there, culprit in ((tmp_path / "pick", "finished"), (tmp_path / "far" / "final", "a model")):
        with pytest.raises(errors.UserError, match=culprit):
            build.match_snapshot(str(tmp_path / "far"), str(tmp_path / "far" / "final"), str(there))
    assert (tmp_path / "pick" / "teacher" / "model.safetensors").read_bytes() == kept
    with pytest.raises(errors.UserError, match="--far-run"):
        build.main(["--match", str(tmp_path / "far" / "final")])


def test_opsd_shared_rules_reach_the_teacher_only():
    cfg = train_opsd.parse_config(["--preset", "tiny2-constitution"])
    assert cfg["student"] == "tiny2/teacher" and cfg["flagged_frac"] == 0.25
    examples = data.load_examples("synthetic", n=20, split="train", seed=1, flagged_frac=0.5)
    prompts = [data.context_ids(TOK, ex) for ex in examples]
    contexts = train_opsd.teacher_contexts(TOK, examples, prompts, cfg["pi"], cfg["rule"])
    assert all(system_of(c) == task.CONSTITUTION for c in contexts)
    assert all(system_of(p) == "" for p in prompts)
    concise = train_opsd.parse_config(["--preset", "tiny2-concise"])
    assert (
        system_of(
            train_opsd.teacher_contexts(TOK, examples[:1], prompts[:1], concise["pi"], concise["rule"])[0]
        )
        == task.CONCISE_RULE
    )
    own = train_opsd.parse_config(["--pi", "system_prompt", "--rule", "Be brief."])
    assert (
        system_of(train_opsd.teacher_contexts(TOK, examples[:1], prompts[:1], own["pi"], own["rule"])[0])
        == "Be brief."
    )
    with pytest.raises(errors.UserError, match="--rule"):
        train_opsd.parse_config(["--pi", "none", "--rule", "Be brief."])


def test_style_sets_one_models_notation_and_is_refused_elsewhere(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.setattr(build, "train_model", lambda cfg: seen.update(cfg) or {})
    build.main(
        ["--world", "2", "--model", "teacher", "--style", "O", "--steps", "3", "--out", str(tmp_path / "o")]
    )
    assert seen["style"] == "operation" and seen["steps"] == 3
    assert {k: v for k, v in seen.items() if k not in ("style", "steps", "out", "threads", "resume")} == {
        k: v
        for k, v in mix.MODELS2["teacher"].items()
        if k not in ("style", "steps", "out", "threads", "resume")
    }
    for argv, words in (
        (["--model", "teacher", "--style", "O"], "--style O: the notation of one model of the second world"),
        (["--world", "2", "--style", "R"], "add --world 2 and --model"),
        (["--match", "m", "--far-run", "r", "--out", "o", "--style", "O"], "--style: --match copies"),
    ):
        with pytest.raises(errors.UserError, match=words):
            build.main(argv)
