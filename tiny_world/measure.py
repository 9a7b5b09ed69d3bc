"""What a tiny-world model can do, and the tables `make tiny` prints.

What this file is
    `evaluate_tiny` measures a model of the first world: greedy and sampled accuracy by number of
    operations, whether it obeys the shared rule and at what accuracy, and how it uses a correct
    or a wrong hint on hard problems. `evaluate_tiny2` measures one of the second world: each
    notation's share, the conciseness rule, the constitution's declines and over-refusals, the
    hint. `table` and `table2` print each world's models side by side. tiny_world/build.py calls
    them on every model it trains.

Paper (docs/paper.md)
    The rules and hints are the privileged information of §5 (OPSD); the tables say which
    behaviour each model shows before any distillation.

Command
    make tiny [WORLD=2]    # the shipped models' tables
"""

import dataclasses
import time

import torch

import common
import data
import diagnostics
import train_sft
from tiny_world import task


def hard_set(cfg: dict) -> list:
    """The held-out hard products the hint rows measure."""
    return data.load_examples(
        "synthetic", n=cfg["eval_hard_n"], split="eval", seed=cfg["data_seed"] + 2, hard_frac=1.0
    )


@torch.no_grad()
def evaluate_tiny(model, tok, cfg: dict) -> dict:
    """train_sft.evaluate_model's greedy and sampled accuracy, then the two kinds of privileged
    information: the shared rule (accuracy, obeyed = the response is `\\boxed{N}` alone, length) and
    the hint on hard problems (none / correct / wrong, and how often the wrong hint is copied)."""
    t0 = time.time()
    out = train_sft.evaluate_model(model, tok, cfg)
    examples = train_sft.held_out(cfg)
    out["rule"], recs = train_sft.evaluate(model, tok, cfg, examples, pi="system_prompt", label="rule")
    obeyed = round(diagnostics.boxed_only_rate([r["response"] for r in recs]) * len(recs))
    out["rule"].update(
        obeyed=round(obeyed / len(recs), 4),
        obeyed_ci=[round(x, 4) for x in diagnostics.wilson_ci(obeyed, len(recs))],
    )
    hard = hard_set(cfg)
    wrong = [dataclasses.replace(e, hint=task.wrong_answer(e.answer)) for e in hard]
    for name, exs, pi in (
        ("hard_no_hint", hard, "none"),
        ("hard_hint", hard, "answer_only"),
        ("hard_wrong_hint", wrong, "answer_only"),
    ):
        out[name], recs = train_sft.evaluate(model, tok, cfg, exs, pi=pi, label=name)
        if name == "hard_wrong_hint":
            copied = sum(r["pred"] == e.hint for r, e in zip(recs, exs))
            out[name]["follows_hint"] = round(copied / len(recs), 4)
    out["eval_time_s"] = round(time.time() - t0, 1)
    return out


@torch.no_grad()
def evaluate_tiny2(model, tok, cfg: dict) -> dict:
    """The second world's table: greedy and sampled accuracy with each notation's share of the step
    lines (task.measures), the conciseness rule (accuracy, concise share, length), the
    constitution on a half-flagged set (declines on flagged requests, over-refusal and accuracy on
    the rest) and the same set without it, and the hint on hard problems as in the first world."""
    t0 = time.time()
    out = train_sft.evaluate_model(model, tok, cfg, measure=task.measures)
    examples = train_sft.held_out(cfg)
    out["concise"], _ = train_sft.evaluate(
        model,
        tok,
        cfg,
        examples,
        pi="system_prompt",
        rule=task.CONCISE_RULE,
        label="concise",
        measure=task.measures,
    )
    mixed = data.load_examples(
        "synthetic", n=cfg["eval_n"], split="eval", seed=cfg["data_seed"] + 3, flagged_frac=0.5
    )
    out["constitution"], _ = train_sft.evaluate(
        model,
        tok,
        cfg,
        mixed,
        pi="system_prompt",
        rule=task.CONSTITUTION,
        label="constitution",
        measure=task.measures,
    )
    out["flagged_no_rule"], _ = train_sft.evaluate(
        model, tok, cfg, mixed, label="flagged_no_rule", measure=task.measures
    )
    hard = hard_set(cfg)
    for name, pi in (("hard_no_hint", "none"), ("hard_hint", "answer_only")):
        out[name], _ = train_sft.evaluate(model, tok, cfg, hard, pi=pi, label=name)
    out["eval_time_s"] = round(time.time() - t0, 1)
    return out


ACC_HEAD = ["model", "parameters", "training", "greedy acc % [95% CI]", "sampled acc % (T=1) [95% CI]"]


def _acc_cells(r: dict) -> list:
    """The first cells of a table's row: name, size, training, greedy and sampled accuracy."""
    return [
        r["name"],
        f"{r['params'] / 1e6:.2f} M",
        f"{r['steps_done']} steps, {r['train_s'] / 60:.1f} min",
        train_sft.pct(r["eval"]["greedy"]),
        train_sft.pct(r["eval"]["sampled"]),
    ]


def table(rows: list) -> str:
    """The tiny world's two Markdown tables (rows: summaries of train_model with a name)."""
    pct = train_sft.pct
    a = [
        _acc_cells(r)
        + [
            "/".join(f"{100 * v:.0f}" for v in r["eval"]["sampled"].get("by_ops", {}).values()),
            f"{r['eval']['sampled']['len']:.1f}",
            f"{r['eval']['rule']['len']:.1f}",
            f"{100 * r['eval']['rule']['obeyed']:.1f}",
        ]
        for r in rows
    ]
    b = [
        [
            r["name"],
            pct(r["eval"]["rule"]),
            pct(r["eval"]["hard_no_hint"]),
            pct(r["eval"]["hard_hint"]),
            pct(r["eval"]["hard_wrong_hint"]),
            f"{100 * r['eval']['hard_wrong_hint']['follows_hint']:.1f}",
        ]
        for r in rows
    ]
    return (
        common.md_table(
            ACC_HEAD
            + ["sampled acc by ops (1/2/3)", "mean len, no rule", "mean len, shared rule", "rule obeyed %"],
            a,
        )
        + "\n\n"
        + common.md_table(
            [
                "model",
                "rule: sampled acc %",
                "hard, no hint: acc %",
                "hard, correct hint: acc %",
                "hard, wrong hint: acc %",
                "wrong hint copied %",
            ],
            b,
        )
    )


def table2(rows: list) -> str:
    """The second world's two Markdown tables (rows: summaries of train_model with a name)."""
    pct, f1 = train_sft.pct, lambda v: f"{100 * v:.1f}"
    a = [
        _acc_cells(r)
        + [
            f"{f1(r['eval']['sampled']['style/rewrite'])} / {f1(r['eval']['sampled']['style/operation'])}",
            f"{r['eval']['sampled']['len']:.1f}",
            f1(r["eval"]["sampled"]["format/concise"]),
        ]
        for r in rows
    ]
    b = [
        [
            r["name"],
            pct(r["eval"]["concise"]),
            f"{r['eval']['concise']['len']:.1f}",
            f1(r["eval"]["concise"]["format/concise"]),
            f1(r["eval"]["constitution"]["refusal/flagged"]),
            f1(r["eval"]["constitution"]["refusal/others"]),
            f1(r["eval"]["constitution"]["acc/others"]),
            f1(r["eval"]["flagged_no_rule"]["refusal/flagged"]),
            pct(r["eval"]["hard_no_hint"]),
            pct(r["eval"]["hard_hint"]),
        ]
        for r in rows
    ]
    return (
        common.md_table(ACC_HEAD + ["step lines R / O %", "mean len", "concise %"], a)
        + "\n\n"
        + common.md_table(
            [
                "model",
                "concise rule: acc %",
                "len",
                "concise %",
                "constitution: flagged declined %",
                "others declined %",
                "others acc %",
                "no rule: flagged declined %",
                "hard, no hint: acc %",
                "hard, hint: acc %",
            ],
            b,
        )
    )
