"""Mechanism 3 measured (docs/paper.md §5): where an OPSD student sits among the teachers that
privileged information conditions, at every position of its own sampled responses.

A student that cannot see the PI cannot match each PI-conditioned teacher q_i; the best it can do
is the normalised geometric mean g of them (losses.geometric_mean_teacher), with an irreducible
gap -log Z. `measure_aggregation` computes, per response token, the student's KL to its own
teacher (the problem's own PI), to g, the gap, and the mean KL over the PI values; train_opsd.py
runs it on the initial weights and again on the trained student (--measure-n).
"""

import dataclasses
import random

import torch

import common
import data
import losses
import models
import rollout


def pi_values(example: data.Example, pool: list, m: int, rng: random.Random) -> list:
    """The example with its own answer hint first, then m - 1 other hints the student cannot tell
    apart from it: the answers of other problems of the same kind (hard or not) from `pool`."""
    kind = example.meta.get("hard")
    others = [e.answer for e in pool if e.meta.get("hard") == kind and e.answer != example.answer]
    others = sorted(set(others))
    rng.shuffle(others)
    return [example] + [dataclasses.replace(example, hint=a) for a in others[: m - 1]]


@torch.no_grad()
def measure_aggregation(
    student,
    teacher,
    tok,
    examples: list,
    pi: str,
    m: int = 8,
    seed: int = 0,
    max_new_tokens: int = 80,
    rule: str = None,
) -> dict:
    """Mechanism 3 in numbers, at every position of the student's own (sampled) responses.

    The teachers are the teacher model after the PI context of each of `m` PI values: the problem's
    own answer (q_1) and m - 1 answers of other problems of its kind, equally likely from where a
    student that cannot compute the answer stands (weights 1/m). A shared rule (or no PI) has one
    value, so every q_i is the same teacher (`rule`: its text, None for data.py's). The `full` mode
    is not measured: another problem's solution is not a plausible PI for this one.
    Returns the token-means of KL(p‖q_1) (the teacher that training pulls towards), KL(p‖g) with g
    the normalised geometric mean (losses.geometric_mean_teacher), the irreducible -log Z, and
    mean_i KL(p‖q_i) = KL(p‖g) - log Z; and under `per_problem` the same means over each problem's
    own tokens (its id and token count beside them), for a before/after comparison paired by
    problem."""
    if pi not in ("answer_only", "system_prompt", "none"):
        raise ValueError(f"measure_aggregation covers answer_only, system_prompt and none, not {pi!r}")
    device = next(student.parameters()).device
    rng = random.Random(seed)
    prompts = [data.context_ids(tok, ex) for ex in examples]
    ro = rollout.generate(
        student,
        prompts,
        max_new_tokens,
        eos_token_ids=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator(device=device).manual_seed(seed),
    )
    sums = {"kl/own_pi": 0.0, "kl/geo_mean": 0.0, "irreducible/-logZ": 0.0, "kl/pi_mean": 0.0}
    n_tok, per_problem = 0, []
    shared = pi in ("none", "system_prompt")
    for ex, prompt, resp in zip(examples, prompts, ro.responses()):
        if not resp:
            continue
        variants = [ex] * m if shared else pi_values(ex, examples, m, rng)
        logits_p, mask = rollout.score(student, [prompt], [resp])  # (1, T, V)
        ctx = [data.context_ids(tok, v, pi, rule) for v in variants]
        logits_q, _ = rollout.score(teacher, ctx, [resp] * len(ctx))  # (m, T, V)
        logp = torch.log_softmax(logits_p[0].float(), -1)
        logq = torch.log_softmax(logits_q.float(), -1)
        log_g, log_z = losses.geometric_mean_teacher(logq)  # uniform weights
        kl = lambda a, b: (a.exp() * (a - b)).sum(-1)  # (T,)
        mine = {
            "kl/own_pi": float(kl(logp, logq[0]).sum()),
            "kl/geo_mean": float(kl(logp, log_g).sum()),
            "irreducible/-logZ": float((-log_z).sum()),
            "kl/pi_mean": float(kl(logp[None], logq).mean(0).sum()),
        }
        for k, v in mine.items():
            sums[k] += v
        n_tok += len(resp)
        per_problem.append({"id": ex.id, "tokens": len(resp)} | {k: v / len(resp) for k, v in mine.items()})
    out = {k: v / max(n_tok, 1) for k, v in sums.items()}
    out.update({"pi_values": 1 if shared else m, "problems": len(examples), "tokens": n_tok})
    out["per_problem"] = per_problem
    return out


def measure(cfg: dict, student_path: str) -> dict:
    """measure_aggregation on `measure_n` held-out problems (hard ones included when --hard-frac)."""
    device = models.default_device()
    student, tok = models.load(student_path, device=device, dtype=torch.float32)
    teacher, _ = models.load(cfg["student"], device=device, dtype=torch.float32)  # the initial weights
    return measure_aggregation(
        student,
        teacher,
        tok,
        measure_examples(cfg),
        cfg["pi"],
        seed=cfg["seed"],
        max_new_tokens=cfg["max_new_tokens"],
        rule=cfg["rule"],
    )


def measure_examples(cfg: dict) -> list:
    """The `measure_n` held-out problems Mechanism 3 is measured on (hard ones included when
    --hard-frac): with --eval-part, the first of the run's evaluation set (docs/protocol.md §2);
    otherwise drawn with their own seed in the synthetic task."""
    if cfg.get("eval_part"):
        return common.load_examples(dict(cfg, eval_n=cfg["measure_n"]), "eval")
    if cfg["eval_data"] == "synthetic":
        return data.load_examples(
            cfg["eval_data"],
            n=cfg["measure_n"],
            split="eval",
            seed=cfg["seed"] + 7,
            hard_frac=cfg["hard_frac"],
            flagged_frac=cfg["flagged_frac"],
        )
    return data.load_examples(cfg["eval_data"])[: cfg["measure_n"]]


def format_mechanism3(mech: dict, cfg: dict) -> str:
    rows = [
        [name, *(f"{e[k]:.4f}" for k in ("kl/own_pi", "kl/geo_mean", "irreducible/-logZ", "kl/pi_mean"))]
        for name, e in mech.items()
        if e
    ]
    return (
        f"Mechanism 3 (pi={cfg['pi']}, {mech['after']['pi_values']} PI values per problem, "
        f"{mech['after']['problems']} held-out problems, per response token)\n"
        + common.md_table(
            [
                "student",
                "KL(p‖q own PI)",
                "KL(p‖geometric mean)",
                "irreducible −log Z",
                "mean over PI of KL(p‖q_i)",
            ],
            rows,
        )
    )


def check_measure_contexts(cfg: dict, tok, context) -> None:
    """Mechanism 3's teacher contexts (measure_aggregation: each problem with its own PI and, for
    answer_only, other problems' answers as hints; then a response of up to --max-new-tokens)
    within the model's context. The hints are drawn at random, so each problem is checked with its
    own and with the longest hint it can be shown."""
    examples = measure_examples(cfg)
    variants, owners = [], []
    for ex in examples:
        kind = ex.meta.get("hard")
        hints = [e.answer for e in examples if e.meta.get("hard") == kind and e.answer != ex.answer]
        variants.append(ex)
        if cfg["pi"] == "answer_only" and hints:
            variants.append(dataclasses.replace(ex, hint=max(hints, key=len)))
        owners += [ex] * (len(variants) - len(owners))
    common.check_prompt_lengths(
        context,
        [data.context_ids(tok, v, cfg["pi"], cfg["rule"]) for v in variants],
        cfg["max_new_tokens"],
        "teacher contexts of --measure-n (with PI)",
        owners,
    )
