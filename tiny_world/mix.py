"""The tiny worlds' two models as recipes: their shapes, SFT schedules and training mixes.

What this file is
    `MODELS` (the first world) and `MODELS2` (the second) hold each model's shape and training
    recipe in train_sft's config keys: both are trained from scratch by train_sft.train, the
    teacher deeper and longer, the student smaller and far shorter. `mixed_items` turns a recipe
    into its training items: the reference solutions of n_train problems, each in one context
    drawn from the recipe's mix. The first world's mix (`world1_items`): the shared rule as system
    prompt (target: the bare `\\boxed{N}`), the answer hint, hard 2-digit products that only the hint
    answers, and plain prompts. The second world's (`world2_items`): each family's notation with a
    little of the other's, the conciseness rule, the constitution and its flagged requests, the
    hint, and each rule's behaviour also shown unprompted. In both, the 1-operation problems are
    repeated (`with_repeats`). docs/tiny_world.md and docs/tiny_world2.md give the shares.

Paper (docs/paper.md)
    The mixes teach both models the two kinds of privileged information of §5 (an instance's
    answer, a shared rule), so that OPSD has something to distil; the second world's notations
    stand for two model families (§4, Mechanism 1 and Fix 2).

Command
    pytest -q tests/test_sft.py tests/test_tiny_world2.py    # each share against its binomial error

What it simplifies
    * One context per problem, drawn once from a seeded stream: the mix is the same on every
      rebuild, and a problem never appears in two contexts unless it is repeated.
"""

import dataclasses
import random

import data
import sft_items
import train_sft
from tiny_world import task

# -----------------------------------------------------------------------------
# The recipes: shape, data mix and SFT schedule (train_sft's config keys)

_MIX = dict(n_train=30000, hint_frac=0.15, rule_frac=0.15, hard_frac=0.12, hard_hint_frac=0.75, repeat_1op=6)
_SFT = dict(
    train_sft.PRESETS["reference"],
    source="reference",
    data="synthetic",
    student=None,
    epochs=None,
    batch_size=32,
    warmup_frac=0.05,
    ckpt_every=250,
    eval_before=False,
    seed=0,
    data_seed=0,
    eval_hard_n=200,
    resume=False,
    restart=False,
    stop_at=0,
    threads=0,
)
MODELS = {
    # The teacher: deeper, trained longer.
    "teacher": dict(
        _SFT,
        **_MIX,
        shape=dict(
            num_hidden_layers=4,
            hidden_size=192,
            intermediate_size=576,
            num_attention_heads=6,
            num_key_value_heads=3,
            head_dim=32,
        ),
        steps=3000,
        micro_batch=16,
        lr=3e-3,
        min_lr=1e-4,
        warmup_frac=0.03,
    ),
    # The student: the smaller shape, far fewer updates: clearly weaker.
    "student": dict(
        _SFT,
        **_MIX,
        shape=dict(
            num_hidden_layers=2,
            hidden_size=128,
            intermediate_size=384,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=32,
        ),
        steps=1000,
        micro_batch=32,
        lr=3e-3,
        min_lr=3e-4,
        warmup_frac=0.05,
    ),
}

# The second world (docs/tiny_world2.md): the same shapes and schedules, two notations (the
# teacher's family writes rewrite lines, the student's operation lines, each with `overlap` of the
# other), a verbose default with the conciseness rule, and password requests the constitution
# declines, each rule's behaviour also shown unprompted in a tenth of the items. The far teacher
# keeps a snapshot every 100 steps for Fix 2 at matched accuracy (build.py).
_MIX2 = dict(
    n_train=30000,
    overlap=0.1,
    concise_frac=0.15,
    constitution_frac=0.15,
    hint_frac=0.15,
    hard_frac=0.12,
    hard_hint_frac=0.75,
    flagged_frac=0.1,
    flagged_rule_frac=0.5,
    unprompted=0.1,
    repeat_1op=6,
)
MODELS2 = {
    "teacher": dict(MODELS["teacher"], **_MIX2, world=2, style="rewrite", snapshot_every=100),
    "student": dict(MODELS["student"], **_MIX2, world=2, style="operation"),
}
for _m in MODELS2.values():
    for _k in ("rule_frac",):  # world 1's bare-answer rule has no place in the second world
        _m.pop(_k)
WORLDS = {1: ("tiny", MODELS), 2: ("tiny2", MODELS2)}  # world -> (shipped folder, recipes)


# -----------------------------------------------------------------------------
# The training mixes


def mixed_items(cfg: dict, tok) -> list:
    """The training mix of cfg (MODELS or MODELS2): reference solutions of n_train synthetic
    problems, each in the context the mix draws (world1_items, or world2_items)."""
    if cfg.get("world", 1) == 2:
        problems = sft_items.load_problems(cfg, hard_frac=cfg["hard_frac"], flagged_frac=cfg["flagged_frac"])
        return world2_items(tok, problems, cfg, seed=cfg["data_seed"])
    problems = sft_items.load_problems(cfg, hard_frac=cfg["hard_frac"])
    mix = {k: cfg[k] for k in ("hint_frac", "rule_frac", "hard_hint_frac", "repeat_1op")}
    return world1_items(tok, problems, mix, seed=cfg["data_seed"])


def with_repeats(examples: list, repeats: int) -> list:
    """The examples, then `repeats` copies of the 1-operation ones (each copy with its own id, so
    that it draws its own context from a mix): the tiny world's under-represented easy problems."""
    easy = [ex for ex in examples if ex.meta.get("ops") == 1 and not ex.meta.get("hard")]
    for r in range(repeats):
        examples = examples + [dataclasses.replace(ex, id=f"{ex.id}~{r + 1}") for ex in easy]
    return examples


def world1_items(tok, examples: list, mix: dict, seed: int = 0) -> list:
    """The first world's mix: reference solutions, each problem in one context drawn from `mix`
    (fixed by `seed`): hard problems get the hint (hard_hint_frac) or the plain prompt; ordinary
    ones the shared rule (rule_frac, target: the bare boxed answer), the hint (hint_frac) or the
    plain prompt. 1-operation problems appear 1 + repeat_1op times."""
    rng = random.Random(f"mix:{seed}")
    items = []
    for ex in with_repeats(examples, mix["repeat_1op"]):
        u = rng.random()
        if ex.meta.get("hard"):
            pi, kind = ("answer_only", "hard-hint") if u < mix["hard_hint_frac"] else ("none", "hard-plain")
        elif u < mix["rule_frac"]:
            pi, kind = "system_prompt", "rule"
        elif u < mix["rule_frac"] + mix["hint_frac"]:
            pi, kind = "answer_only", "hint"
        else:
            pi, kind = "none", "plain"
        items.append(
            sft_items.make_item(
                tok, f"{ex.id}:{kind}", data.context_ids(tok, ex, pi), data.target_response(ex, pi), kind
            )
        )
    return items


def _world2_context(ex, u: float, mix: dict) -> tuple:
    """(pi, system rule or "", kind) of one problem of the second world, from a uniform draw `u`."""
    if ex.meta.get("flagged"):
        if u < mix["flagged_rule_frac"]:
            return "system_prompt", task.CONSTITUTION, "flagged-declined"
        return "none", "", "flagged-solved"
    if ex.meta.get("hard"):
        return ("answer_only", "", "hard-hint") if u < mix["hard_hint_frac"] else ("none", "", "hard-plain")
    cuts = [
        (mix["concise_frac"], "system_prompt", task.CONCISE_RULE, "concise"),
        (mix["constitution_frac"], "system_prompt", task.CONSTITUTION, "constitution"),
        (mix["hint_frac"], "answer_only", "", "hint"),
    ]
    for frac, *choice in cuts:
        if u < frac:
            return tuple(choice)
        u -= frac
    return "none", "", "plain"


def world2_items(tok, examples: list, mix: dict, seed: int = 0) -> list:
    """The second world's mix for a model of family mix["style"]: each problem in its family's
    notation (the other family's with probability `overlap`) and in one context: a flagged request
    under the constitution (declined, flagged_rule_frac) or plain (solved); a hard product with the
    hint (hard_hint_frac) or plain; any other problem under the conciseness rule (the steps alone),
    the constitution (solved), the hint, or plain. Verbose solutions (task.solution) except under
    the conciseness rule; with probability `unprompted` an item shows the rules' behaviour without
    them (the steps alone, or a flagged request declined), so that a model without a rule puts
    some probability on what the rule asks, as real models do (docs/tiny_world2.md says why).
    1-operation problems appear 1 + repeat_1op times."""
    rng = random.Random(f"mix2:{seed}:{mix['style']}")
    other = next(s for s in task.STYLES if s != mix["style"])
    items = []
    for ex in with_repeats(examples, mix["repeat_1op"]):
        style = other if rng.random() < mix["overlap"] else mix["style"]
        pi, rule, kind = _world2_context(ex, rng.random(), mix)
        unprompted = rng.random() < mix["unprompted"]
        response = task.target(ex.problem, ex.meta["expr"], style, rule, unprompted)
        items.append(
            sft_items.make_item(
                tok, f"{ex.id}:{kind}:{style}", data.context_ids(tok, ex, pi, rule or None), response, kind
            )
        )
    return items
