"""GRPO with a verifiable reward: the RLVR-adapted teacher of the paper's Fix 2.

What this file is
    Reinforcement learning from the grader alone, used to turn a copy of the student into a teacher
    that is better at the task yet still close to the student's distribution (docs/paper.md §4, Fix 2:
    "choose teachers by distribution closeness, not benchmark score"). One step:
      1. G samples per prompt from the current policy (rollout.generate, the same sampler as OPD);
      2. reward R_i = 1 if the strict grader accepts response i, else 0 (grader.grade);
      3. group-normalised advantages A_i = (R_i − mean_group R) / (std_group R + eps), one per
         response, the same at each of its tokens (group_advantages);
      4. the PPO clipped surrogate with clip-higher, −min(ρA, clip(ρ, 1 − 0.2, 1 + 0.28) A),
         ρ = π_θ(y_t) / π_old(y_t) (losses.clipped_surrogate), no KL term;
      5. token-level normalisation: the sum over every response token of the batch divided by
         their number (DAPO), so long and short responses weigh by their tokens;
      6. `--minibatches M` optimizer steps per rollout batch (M = 1: strictly on-policy, ρ = 1, as
         the paper's 16 prompts / global batch 16; M > 1 reuses the rollout and the clip acts).
    `grpo_step` is that step; `main` the loop around it (held-out evaluation, checkpoints that
    `--resume` continues exactly), with the plumbing of config.py, common.py and
    run_folder.py.

Paper (docs/paper.md)
    §4 Fix 2 and §2.4 ("GRPO teacher" column): 8 samples per prompt, 16 prompts, lr 1e-6, clip
    0.2 / 0.28, KL 0, 8,192 tokens, T = 1.0, top-p 1.0, DAPO-Math-17k, up to 1000 rollouts
    (`--preset paper`). The tiny world (`--preset tiny`, the default) lifts tiny/student on the
    synthetic task; `make recipe` and the report use it as an OPD teacher.

Commands
    python train_grpo.py --out runs/grpo                       # the tiny world, CPU, minutes
    python train_grpo.py --student runs/sft-student/final --out runs/grpo-sft
    python train_grpo.py --preset paper --student Qwen/Qwen3-1.7B --out runs/grpo-paper   # GPU
    python train_grpo.py --out runs/grpo --resume              # a killed run continues, its flags saved
    python train_grpo.py --lora-rank 16 --out runs/grpo-lora   # LoRA adapters (lora.py)

Optimisations
    * `pi_old`: the first update's rows take π_old from their own forward with gradients
      (detached; the policy has not moved yet, so ρ = 1 exactly and no extra pass runs: with
      --minibatches 1 the step runs one forward per row, not two); the later updates' rows are
      scored without gradients before the first update. Scoring every row before the first update
      gives the same π_old up to float rounding.

What it simplifies
    * π_old is the training forward's, not the sampler's: the sampler's own log-probs are only
      compared with it (`logp/rollout_vs_train_max_abs`).
    * No dynamic sampling (DAPO drops groups whose rewards are all equal; here they stay in the
      batch with advantage 0 and count in the token normalisation); no entropy bonus, no KL.
    * The reward is the grader's 0/1 only; no format or length shaping.
"""

import time

import torch

import common
import config
import data
import diagnostics
import distributed
import errors
import eval_math
import grader
import losses
import models
import rollout
import run_folder
from errors import UserError

# -----------------------------------------------------------------------------
# Config: presets, the GRPO flags, the shared rollout / optimisation / run flags

# The tiny world: lift tiny/student on the synthetic task with its own samples (§4, Fix 2). 32 prompts x 8
# samples, two updates per rollout batch at lr 2e-4 for 400 steps (docs/tiny_world.md says how it was chosen).
_TINY = dict(
    student="tiny/student",
    data="synthetic",
    data_path=None,
    eval_data="synthetic",
    hard_frac=0.0,
    flagged_frac=0.0,
    group_size=8,
    minibatches=2,
    clip_low=0.2,
    clip_high=0.28,
    adv_eps=1e-6,
    steps=400,
    batch_size=32,
    micro_batch=128,
    max_new_tokens=80,
    temperature=1.0,
    top_p=1.0,
    rollout_batch=0,
    lr=2e-4,
    min_lr=0.0,
    warmup_frac=0.0,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.98,
    grad_clip=1.0,
    grad_checkpointing=False,
    amp=None,
    forward="auto",
    eval_every=100,
    eval_n=300,
    eval_k=1,
    eval_temperature=1.0,
    eval_top_p=1.0,
    eval_max_new_tokens=80,
    ckpt_every=50,
)
PRESETS = {
    "tiny": _TINY,
    # The second tiny world (docs/tiny_world2.md): the same settings, lifting tiny2/student.
    "tiny2": dict(_TINY, student="tiny2/student"),
    # §2.4 "GRPO teacher (RLVR adaptation)": 8 samples x 16 prompts, lr 1e-6, clip 0.2/0.28, no KL, 8,192
    # tokens, T = 1.0, top-p 1.0; the rest of the optimiser as the paper's OPD runs (cosine, 10 % warm-up,
    # wd 0.1, betas 0.9/0.98), an assumption: the launch script sets only the learning rate. Evaluation
    # and memory plan as train_opd.py's paper preset, with one row per forward.
    "paper": dict(
        student="Qwen/Qwen3-1.7B",
        data="dapo",
        data_path=None,
        eval_data="math500",
        hard_frac=0.0,
        flagged_frac=0.0,
        group_size=8,
        minibatches=1,
        clip_low=0.2,
        clip_high=0.28,
        adv_eps=1e-6,
        steps=1000,
        batch_size=16,
        micro_batch=1,
        max_new_tokens=8192,
        temperature=1.0,
        top_p=1.0,
        rollout_batch=16,
        lr=1e-6,
        min_lr=0.0,
        warmup_frac=0.1,
        weight_decay=0.1,
        beta1=0.9,
        beta2=0.98,
        grad_clip=1.0,
        grad_checkpointing=True,
        amp=None,
        forward="auto",
        eval_every=10,
        eval_n=500,
        eval_k=1,
        eval_temperature=0.6,
        eval_top_p=0.95,
        eval_max_new_tokens=8192,
        ckpt_every=50,
    ),
}
# Keys that only a preset sets, with their ranges: adv_eps (the advantages' std floor); amp (None:
# bf16 autocast of the training forward on CUDA, float32 on CPU); the Adam betas, warm-up, weight
# decay; the evaluation's sampling and length cap; hard_frac and
# flagged_frac (synthetic data: the fractions of 2-digit products and of password requests).
PRESET_RULES = {
    "adv_eps": config.ABOVE_0,
    "warmup_frac": config.PROB,
    "weight_decay": config.AT_LEAST_0,
    "beta1": config.BELOW_1,
    "beta2": config.BELOW_1,
    "eval_k": config.AT_LEAST_1,
    "eval_temperature": config.TEMPERATURE_OR_GREEDY,
    "eval_top_p": config.TOP_P,
    "eval_max_new_tokens": config.AT_LEAST_1,
    "hard_frac": config.PROB,
    "flagged_frac": config.PROB,
}
# the progress bar's monitors
PROGRESS = (("loss", "loss"), ("reward/mean", "reward"), ("len/mean", "len"), ("len/truncated_frac", "trunc"))

# The ranges of GRPO's own flags, as argparse types (config.ranged).
group_size_arg = config.ranged(int, (lambda v: v >= 2, "at least 2 (advantages are relative to the group)"))
clip_low_arg = config.ranged(float, (lambda v: 0 < v < 1, "in (0, 1) (ρ is clipped below at 1 − clip_low)"))
clip_high_arg = config.ranged(float, (lambda v: v > 0, "> 0 (ρ is clipped above at 1 + clip_high)"))


def add_flags(ap) -> None:
    g = ap.add_argument_group("model and data")
    g.add_argument("--student", help="the policy to lift: hub id or local folder (tiny: tiny/student)")
    config.add_data_flags(g)
    g = ap.add_argument_group("GRPO (docs/paper.md §4 Fix 2, §2.4)")
    g.add_argument(
        "--group-size",
        type=group_size_arg,
        help="G: samples per prompt (paper: 8); --batch-size counts prompts",
    )
    g.add_argument(
        "--minibatches",
        type=config.positive_int,
        help="optimizer steps per rollout batch, each on 1/M of the groups (paper: 1, strictly on-policy)",
    )
    g.add_argument("--clip-low", type=clip_low_arg, help="ρ is clipped below at 1 − clip_low (paper: 0.2)")
    g.add_argument(
        "--clip-high",
        type=clip_high_arg,
        help="ρ is clipped above at 1 + clip_high (paper: 0.28, clip-higher)",
    )
    config.add_rollout_flags(ap)
    config.add_optim_flags(ap)
    config.add_lora_flags(ap)
    config.add_eval_flags(ap)
    config.add_run_flags(ap, out="runs/grpo")


def parse_config(argv=None) -> dict:
    """The run's config: a preset with the flags given on top (on --resume: the run's config.json),
    checked before any model loads."""
    cfg, typed = config.parse_config(PRESETS, add_flags, argv, __doc__)
    config.check_ranges(cfg, {}, PRESET_RULES)
    config.check_data_path(cfg)
    config.check_lora(cfg, typed)
    if cfg["amp"] is None:  # bf16 autocast where it pays (CUDA); the weights stay float32
        cfg["amp"] = torch.cuda.is_available()
    n = cfg["batch_size"]
    if n % cfg["minibatches"]:
        raise UserError(f"--minibatches {cfg['minibatches']}: must divide --batch-size ({n} prompts)")
    config.fit_micro_batch(
        cfg, typed, n * cfg["group_size"], f"--batch-size {n} x --group-size {cfg['group_size']}"
    )
    if distributed.planned_world() > 1:
        raise UserError(
            "train_grpo.py runs in one process: its token-level normalisation and "
            "minibatches are not split over torchrun's processes (train_opd.py and "
            "train_opsd.py are); run it with python"
        )
    return cfg


# -----------------------------------------------------------------------------
# The algorithm: group-relative advantages and one GRPO step


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """(B·G,) rewards, G consecutive responses per prompt → (B·G,) advantages
    A_i = (R_i − mean_g R) / (std_g R + eps) with the unbiased std of the group (as TRL and verl).
    Zero-mean in every group; zero for a group whose rewards are all equal (nothing to learn)."""
    r = rewards.float().view(-1, group_size)  # (B, G)
    centred = r - r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)  # (B, 1)
    return torch.where(std > 0, centred / (std + eps), torch.zeros_like(centred)).view(-1)  # (B·G,)


def policy_logprobs(model, prompts: list, responses: list, pad_id: int, amp: bool, forward: str = "auto"):
    """log π(y_t) of every response token after its prompt (B, T), the mask (B, T) and the logits;
    `forward` is rollout.score's impl."""
    device = next(model.parameters()).device
    tokens = rollout.pad_right(responses, pad_id, device)  # (B, T)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits, mask = rollout.score(model, prompts, responses, impl=forward)  # (B, T, V)
    return losses.student_logprobs_at(logits, tokens[..., None])[..., 0], mask, logits


def grpo_step(
    student, tok, examples: list, prompts: list, cfg: dict, optimizer, scheduler, generator
) -> dict:
    """Rollout of G samples per prompt → rewards → advantages → M clipped-surrogate updates."""
    G, times = cfg["group_size"], {}
    # 1. G responses per prompt from the current policy (the KV-cache sampler, no gradients).
    with common.timed(times, "rollout"):
        student.eval()
        rows = [p for p in prompts for _ in range(G)]  # (B·G) contexts, groups consecutive
        responses, sampler_logp, truncated = common.sample_batch(student, tok, rows, cfg, generator)

    # 2-3. The verifiable reward and the group-relative advantage of every response.
    with common.timed(times, "reward"):
        texts = [tok.decode(r) for r in responses]
        golds = [ex.answer for ex in examples for _ in range(G)]
        # a repeated answer once
        graded = {pair: float(grader.grade(*pair)) for pair in set(zip(texts, golds))}
        rewards = torch.tensor([graded[pair] for pair in zip(texts, golds)])
        adv = group_advantages(rewards, G, cfg["adv_eps"])  # (B·G,)

    # π_old: the policy that sampled, as the training forward computes it. The rows of updates 2..M
    # are scored now, before any update; the first update's rows below, by their own forward (pi_old).
    per_update, mb = len(rows) // cfg["minibatches"], cfg["micro_batch"]
    with common.timed(times, "old_logp"):
        old_logp, mismatch = later_old_logprobs(student, rows, responses, sampler_logp, per_update, tok, cfg)

    # 4-6. M optimizer steps, each on whole groups; token-level normalisation within each.
    with common.timed(times, "student"):
        student.train()
        sums = {"loss": 0.0, "ppo/clip_frac": 0.0, "ppo/ratio_max": 0.0, "entropy": 0.0, "_tokens": 0}
        grad_norms = []
        for u in range(cfg["minibatches"]):
            idx = list(range(u * per_update, (u + 1) * per_update))
            n_tok = max(sum(len(responses[i]) for i in idx), 1)
            optimizer.zero_grad(set_to_none=True)
            for s in range(0, len(idx), mb):
                part = [i for i in idx[s : s + mb] if responses[i]]
                if not part:
                    continue
                lp, mask, logits = policy_logprobs(  # (b, T) with gradient
                    student,
                    [rows[i] for i in part],
                    [responses[i] for i in part],
                    tok.pad_token_id,
                    cfg["amp"],
                    cfg["forward"],
                )
                old, mismatch = pi_old(u, part, lp, old_logp, sampler_logp, mismatch)  # (b, T)
                A = adv[part].to(lp.device)[:, None].expand_as(lp)  # (b, T): one advantage per response
                per_token = losses.clipped_surrogate(lp, old, A, cfg["clip_low"], cfg["clip_high"])  # (b, T)
                loss = per_token[mask].sum() / n_tok  # token-level normalisation over the update's tokens
                common.check_finite_loss(loss)
                loss.backward()
                add_ppo_monitors(sums, loss, lp, old, A, mask, logits, cfg)
            grad_norms.append(common.clip_grad_norm(student, cfg["grad_clip"]))
            optimizer.step()
            scheduler.step()
            sums["_tokens"] += n_tok
    return step_monitors(
        sums, max(grad_norms), mismatch, rewards, responses, texts, truncated, times, scheduler, cfg
    )


def later_old_logprobs(student, rows: list, responses: list, sampler_logp: list, per_update: int, tok, cfg):
    """The half of pi_old's optimisation that runs before the first update: log π_old(y_t) of the
    rows of updates 2..M (old_logprobs), None for the first update's rows (pi_old takes theirs from
    their own forward), and the largest gap to the sampler's log-probs over the rows scored."""
    later = slice(per_update, None)
    old_logp, mismatch = old_logprobs(
        student, rows[later], responses[later], sampler_logp[later], tok.pad_token_id, cfg
    )
    return [None] * per_update + old_logp, mismatch


def pi_old(u: int, part: list, lp, old_logp: list, sampler_logp: list, mismatch: float) -> tuple:
    """log π_old(y_t) (b, T) of the rows `part` of update u, whose training forward gave lp (b, T),
    and the rollout-vs-train mismatch monitor with these rows in it.

    An optimisation of the plain computation, which scores every row of the batch without gradients
    before the first update (old_logprobs over all rows) and pads the rows' log-probs here: the
    first update's rows take π_old from their own forward instead, detached. The policy has not
    moved yet, so it is the same π_old up to float rounding (and ρ = 1 exactly), and no extra
    forward runs: with --minibatches 1 the step runs one forward per row, not two. The later
    updates' rows are scored before the first update (later_old_logprobs), as in the plain
    computation."""
    if u == 0:
        return lp.detach(), max(mismatch, logp_gap(lp, [sampler_logp[i] for i in part]))
    return rollout.pad_right([old_logp[i] for i in part], 0.0, lp.device, torch.float32), mismatch


def step_monitors(
    sums: dict,
    grad_norm: float,
    mismatch: float,
    rewards,
    responses: list,
    texts: list,
    truncated: list,
    times: dict,
    scheduler,
    cfg: dict,
) -> dict:
    """The step's record: the loss, the rewards and the groups, the PPO monitors per token (`sums`:
    over the micro-batches, with their tokens), the responses' stats, the phases' seconds."""
    groups, n_tok = rewards.view(-1, cfg["group_size"]), sums["_tokens"]
    out = {
        "loss": sums["loss"] / cfg["minibatches"],
        "reward/mean": float(rewards.mean()),
        "reward/solved_groups_frac": float((groups.max(1).values > 0).float().mean()),
        "grpo/zero_adv_frac": float((groups.std(1) == 0).float().mean()),  # groups that teach nothing
        "ppo/clip_frac": sums["ppo/clip_frac"] / max(n_tok, 1),
        "ppo/ratio_max": sums["ppo/ratio_max"],
        "entropy": sums["entropy"] / max(n_tok, 1),
    }
    out.update(diagnostics.response_stats(responses, texts, truncated))
    out.update(times)
    n_resp = sum(len(r) for r in responses)
    out.update(
        {
            "logp/rollout_vs_train_max_abs": mismatch,
            "grad_norm": grad_norm,
            "lr": scheduler.get_last_lr()[0],
            "tokens": n_resp,
            "tokens_per_s": n_resp / max(sum(times.values()), 1e-9),
        }
    )
    return out


@torch.no_grad()
def old_logprobs(student, rows: list, responses: list, sampler_logp: list, pad_id: int, cfg: dict) -> tuple:
    """log π_old(y_t) of every response (a list of (T_i,) tensors) from the training forward, and the
    largest gap to the sampler's own log-probs (the rollout-vs-train mismatch monitor)."""
    mb, old_logp, mismatch = cfg["micro_batch"], [], 0.0
    for s in range(0, len(rows), mb):
        lp, _, _ = policy_logprobs(
            student, rows[s : s + mb], responses[s : s + mb], pad_id, cfg["amp"], cfg["forward"]
        )
        old_logp += [lp[j, : len(ids)] for j, ids in enumerate(responses[s : s + mb])]
        mismatch = max(mismatch, logp_gap(lp, sampler_logp[s : s + mb]))
    return old_logp, mismatch


@torch.no_grad()
def logp_gap(lp, sampler_logp: list) -> float:
    """The largest |sampler log p − training log p| over the tokens of these rows: lp (b, T) from
    the training forward, sampler_logp the rows' (T_i,) log-probs from the sampler."""
    gaps = [
        float((s.to(lp.device) - lp[j, : len(s)]).abs().max()) for j, s in enumerate(sampler_logp) if len(s)
    ]
    return max(gaps, default=0.0)


@torch.no_grad()
def add_ppo_monitors(sums: dict, loss, lp, old, A, mask, logits, cfg: dict) -> None:
    """The loss, where the clip cuts the gradient, the largest ratio and the policy's entropy (summed
    over tokens) of one micro-batch."""
    ratio = torch.exp(lp - old)[mask]
    lo, hi = 1 - cfg["clip_low"], 1 + cfg["clip_high"]
    clipped = ((ratio < lo) & (A[mask] < 0)) | ((ratio > hi) & (A[mask] > 0))  # where the gradient is cut
    sums["loss"] += loss.item()
    sums["ppo/clip_frac"] += float(clipped.sum())
    sums["ppo/ratio_max"] = max(sums["ppo/ratio_max"], float(ratio.max()))
    for j in range(len(lp)):  # one row at a time: (T, V) float32 at most
        logp_all = torch.log_softmax(logits[j][mask[j]].float(), -1)  # (T_j, V)
        sums["entropy"] += float(-(logp_all.exp() * logp_all).sum())


# -----------------------------------------------------------------------------
# The run: the policy, the prompts, evaluation at step 0, the GRPO steps, the final evaluation


def main(argv=None) -> dict:
    cfg = parse_config(argv)
    train, held_out = common.load_examples(cfg, "train"), common.load_examples(cfg, "eval")
    # every prompt checked before the weights load
    tok, context = models.load_tokenizer(run_folder.student_source(cfg))
    common.check_prompt_lengths(
        context, [data.context_ids(tok, ex) for ex in train], cfg["max_new_tokens"], "training prompts", train
    )
    common.check_held_out(context, tok, held_out, cfg)
    device = run_folder.start_run(
        cfg,
        "train_grpo.py",
        {"the student (--student)": cfg["student"]},
        {"the training data": train, "the held-out set": held_out},
    )
    student, tok = run_folder.load_student(cfg, device, cfg["grad_checkpointing"])
    stream = common.PromptStream(train, cfg["batch_size"], seed=cfg["seed"])
    # the schedule counts optimizer steps: --minibatches of them per rollout batch
    optimizer, scheduler = common.optimizer(student, cfg, cfg["steps"] * cfg["minibatches"])
    start = run_folder.resume(cfg, optimizer, scheduler, stream)
    evaluate = lambda name: eval_math.evaluate_run(student, tok, held_out, cfg, name)[0]
    if start == 0:
        ev = evaluate("step0")
        run_folder.log(cfg, {"step": 0, "eval": {"student": ev}})
        common.say(f"step 0: student acc {ev['acc/pass@1']:.3f}")

    ckpt = dict(model=student, tok=tok, optimizer=optimizer, scheduler=scheduler, stream=stream)
    t_run, bar = time.time(), common.progress(total=cfg["steps"], initial=start, desc="GRPO")
    for step in range(start, cfg["steps"]):
        batch = next(stream)
        m = grpo_step(
            student,
            tok,
            batch,
            [data.context_ids(tok, ex) for ex in batch],
            cfg,
            optimizer,
            scheduler,
            common.step_generator(cfg, step, device),
        )
        if run_folder.eval_due(cfg, step + 1):
            m["eval"] = {"student": evaluate(f"step{step + 1}")}
        if run_folder.end_step(cfg, step + 1, m, bar, ckpt, PROGRESS):
            return {"stopped_at": step + 1}
    bar.close()
    summary = run_folder.end_run(cfg, evaluate(f"step{cfg['steps']}"), time.time() - t_run, ckpt, "grpo")
    print(
        common.summary_table(
            "GRPO",
            summary,
            cfg,
            [("student before", summary["student_before"]), ("student after GRPO", summary["student_after"])],
        )
    )
    return summary


if __name__ == "__main__":
    errors.run(main)
