"""GRPO with a verifiable reward: the RLVR-adapted teacher of the paper's Fix 2.

What this file is
    Reinforcement learning from the grader alone, used to turn a copy of the student into a teacher
    that is better at the task yet still close to the student's distribution (PAPER.md §4, Fix 2:
    "choose teachers by distribution closeness, not benchmark score"). One step:
      1. G samples per prompt from the current policy (rollout.generate, the same sampler as OPD);
      2. reward R_i = 1 if the strict grader accepts response i, else 0 (eval_math.grade);
      3. group-normalised advantages A_i = (R_i − mean_group R) / (std_group R + eps), one per
         response, the same at each of its tokens (group_advantages);
      4. the PPO clipped surrogate with clip-higher, −min(ρA, clip(ρ, 1 − 0.2, 1 + 0.28) A),
         ρ = π_θ(y_t) / π_old(y_t) (losses.clipped_surrogate), no KL term;
      5. token-level normalisation: the sum over every response token of the batch divided by
         their number (DAPO), so long and short responses weigh by their tokens;
      6. `--minibatches M` optimizer steps per rollout batch (M = 1: strictly on-policy, ρ = 1, as
         the paper's 16 prompts / global batch 16; M > 1 reuses the rollout and the clip acts).
    The loop around the step (data stream, evaluation, checkpoints, exact `--resume`, monitors) is
    train_opd.run, shared with OPD and OPSD; what differs is the `Verifier` below.

Paper
    §4 Fix 2 and §2.4 ("GRPO teacher" column): 8 samples per prompt, 16 prompts, lr 1e-6, clip
    0.2 / 0.28, KL 0, 8,192 tokens, T = 1.0, top-p 1.0, DAPO-Math-17k, up to 1000 rollouts
    (`--preset paper`). The tiny world (`--preset tiny`, the default) lifts tiny/student on the
    synthetic task; `make fix2` and `make recipe` use it as an OPD teacher.

Commands
    python train_grpo.py --out runs/grpo                       # the tiny world, CPU, minutes
    python train_grpo.py --student runs/sft-student/final --out runs/grpo-sft
    python train_grpo.py --preset paper --student Qwen/Qwen3-1.7B --out runs/grpo-paper   # GPU
    python train_grpo.py --out runs/grpo --resume              # a killed run continues exactly

What it simplifies
    * π_old is recomputed by the training forward (no gradient) before the first update of each
      rollout batch, so ρ = 1 exactly at the first step; the sampler's own log-probs are only
      compared with it (`logp/rollout_vs_train_max_abs`).
    * No dynamic sampling (DAPO drops groups whose rewards are all equal; here they stay in the
      batch with advantage 0 and count in the token normalisation); no entropy bonus, no KL.
    * The reward is the grader's 0/1 only; no format or length shaping.
"""
import os
import time

import torch
import torch.nn.functional as F

import eval_math
import losses
import rollout
import train_opd

# -----------------------------------------------------------------------------
# Config: train_opd.py's flags (no teacher, no distillation loss), these presets, the GRPO flags

PRESETS = {
    # The tiny world: lift tiny/student on the synthetic task with its own samples (PAPER.md §4, Fix 2).
    # 32 prompts x 8 samples, two updates per rollout batch at lr 2e-4 for 400 steps: tiny/student's sampled
    # accuracy 0.41 -> about 0.5 (README). 16 prompts were too noisy to learn from; lr >= 3e-4 unlearned.
    "tiny": dict(train_opd.PRESETS["tiny"], student="tiny/student", group_size=8, batch_size=32, micro_batch=128,
                 steps=400, lr=2e-4, minibatches=2, clip_low=0.2, clip_high=0.28, adv_eps=1e-6,
                 eval_every=100, ckpt_every=50),
    # §2.4 "GRPO teacher (RLVR adaptation)": 8 samples x 16 prompts, lr 1e-6, clip 0.2/0.28, no KL, 8,192
    # tokens, T = 1.0, top-p 1.0; the rest of the optimiser as the paper's OPD runs (cosine, 10 % warm-up,
    # wd 0.1, betas 0.9/0.98), an assumption: the launch script sets only the learning rate.
    "paper": dict(train_opd.PRESETS["paper"], group_size=8, batch_size=16, micro_batch=1, max_new_tokens=8192,
                  top_p=1.0, lr=1e-6, minibatches=1, clip_low=0.2, clip_high=0.28, adv_eps=1e-6, rollout_batch=16),
}
for _p in PRESETS.values():  # the distillation-only keys of train_opd's presets do not apply here
    for _key in ("teacher", "loss", "k", "chunk_size"):
        _p.pop(_key, None)


def build_parser():
    ap = train_opd.build_parser(PRESETS, __doc__, teacher_flag=False, loss_flags=False)
    g = ap.add_argument_group("GRPO (PAPER.md §4 Fix 2, §2.4)")
    g.add_argument("--group-size", type=int, help="G: samples per prompt (paper: 8); --batch-size counts prompts")
    g.add_argument("--minibatches", type=int,
                   help="optimizer steps per rollout batch, each on 1/M of the groups (paper: 1, strictly on-policy)")
    g.add_argument("--clip-low", type=float, help="ρ is clipped below at 1 − clip_low (paper: 0.2)")
    g.add_argument("--clip-high", type=float, help="ρ is clipped above at 1 + clip_high (paper: 0.28, clip-higher)")
    g.add_argument("--adv-eps", type=float, help="eps in A = (R − mean) / (std + eps)")
    return ap


def resolve_config(argv=None) -> dict:
    cfg = train_opd.resolve_config(argv, parser=build_parser(), presets=PRESETS)
    n = cfg["batch_size"]
    if cfg["group_size"] < 2:
        raise ValueError(f"--group-size must be at least 2 (advantages are relative to the group), got {cfg['group_size']}")
    if not 1 <= cfg["minibatches"] <= n or n % cfg["minibatches"]:
        raise ValueError(f"--minibatches must divide --batch-size ({n} prompts), got {cfg['minibatches']}")
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


def policy_logprobs(model, prompts: list, responses: list, pad_id: int, amp: bool):
    """log π(y_t) of every response token after its prompt (B, T), the mask (B, T) and the logits."""
    device = next(model.parameters()).device
    tokens = train_opd.pad_right(responses, pad_id, device)  # (B, T)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        logits, mask = rollout.score(model, prompts, responses)  # (B, T, V)
    return losses.student_logprobs_at(logits, tokens[..., None])[..., 0], mask, logits


def grpo_step(student, tok, examples: list, prompts: list, cfg: dict, optimizer, scheduler, generator) -> dict:
    """Rollout of G samples per prompt → rewards → advantages → M clipped-surrogate updates."""
    G, timer = cfg["group_size"], {}
    # 1. G responses per prompt from the current policy (the KV-cache sampler, no gradients).
    t0 = time.perf_counter()
    student.eval()
    rows = [p for p in prompts for _ in range(G)]  # (B·G) contexts, groups consecutive
    responses, sampler_logp, truncated = train_opd.sample_rows(student, tok, rows, cfg, generator)
    timer["time/rollout_s"] = time.perf_counter() - t0

    # 2-3. The verifiable reward and the group-relative advantage of every response.
    t0 = time.perf_counter()
    texts = [tok.decode(r) for r in responses]
    rewards = torch.tensor([float(eval_math.grade(t, ex.answer)) for t, ex in zip(texts, (e for e in examples for _ in range(G)))])
    adv = group_advantages(rewards, G, cfg["adv_eps"])  # (B·G,)
    timer["time/reward_s"] = time.perf_counter() - t0

    # π_old: the policy that sampled, as the training forward computes it (before any update).
    t0 = time.perf_counter()
    mb, old_logp, mismatch = cfg["micro_batch"], [], 0.0
    with torch.no_grad():
        for s in range(0, len(rows), mb):
            lp, mask, _ = policy_logprobs(student, rows[s:s + mb], responses[s:s + mb], tok.pad_token_id, cfg["amp"])
            for j, ids in enumerate(responses[s:s + mb]):
                old_logp.append(lp[j, :len(ids)])
                if ids:
                    mismatch = max(mismatch, float((sampler_logp[s + j].to(lp.device) - lp[j, :len(ids)]).abs().max()))
    timer["time/old_logp_s"] = time.perf_counter() - t0

    # 4-6. M optimizer steps, each on whole groups; token-level normalisation within each.
    t0 = time.perf_counter()
    student.train()
    per_update = len(rows) // cfg["minibatches"]
    sums = {"loss": 0.0, "ppo/clip_frac": 0.0, "ppo/ratio_max": 0.0, "entropy": 0.0}
    grad_norms, n_tok_all = [], 0
    for u in range(cfg["minibatches"]):
        idx = list(range(u * per_update, (u + 1) * per_update))
        n_tok = max(sum(len(responses[i]) for i in idx), 1)
        optimizer.zero_grad(set_to_none=True)
        for s in range(0, len(idx), mb):
            part = [i for i in idx[s:s + mb] if responses[i]]
            if not part:
                continue
            lp, mask, logits = policy_logprobs(student, [rows[i] for i in part], [responses[i] for i in part],
                                               tok.pad_token_id, cfg["amp"])  # (b, T) with gradient
            old = torch.stack([F.pad(old_logp[i], (0, lp.shape[1] - len(old_logp[i]))) for i in part])  # (b, T)
            A = adv[part].to(lp.device)[:, None].expand_as(lp)  # (b, T): one advantage per response
            per_token = losses.clipped_surrogate(lp, old, A, cfg["clip_low"], cfg["clip_high"])  # (b, T)
            loss = per_token[mask].sum() / n_tok  # token-level normalisation over the update's tokens
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite GRPO loss {loss.item()} at rows {part[:4]}...")
            loss.backward()
            with torch.no_grad():
                ratio = torch.exp(lp - old)[mask]
                lo, hi = 1 - cfg["clip_low"], 1 + cfg["clip_high"]
                clipped = ((ratio < lo) & (A[mask] < 0)) | ((ratio > hi) & (A[mask] > 0))  # where the gradient is cut
                sums["loss"] += loss.item()
                sums["ppo/clip_frac"] += float(clipped.sum())
                sums["ppo/ratio_max"] = max(sums["ppo/ratio_max"], float(ratio.max()))
                for j in range(len(part)):  # one row at a time: (T, V) float32 at most
                    logp_all = torch.log_softmax(logits[j][mask[j]].float(), -1)  # (T_j, V)
                    sums["entropy"] += float(-(logp_all.exp() * logp_all).sum())
        grad_norms.append(train_opd.clip_grad_norm(student, cfg["grad_clip"]))
        optimizer.step()
        scheduler.step()
        n_tok_all += n_tok
    timer["time/student_s"] = time.perf_counter() - t0

    groups = rewards.view(-1, G)
    out = {"loss": sums["loss"] / cfg["minibatches"], "reward/mean": float(rewards.mean()),
           "reward/solved_groups_frac": float((groups.max(1).values > 0).float().mean()),
           "grpo/zero_adv_frac": float((groups.std(1) == 0).float().mean()),  # groups that teach nothing
           "ppo/clip_frac": sums["ppo/clip_frac"] / max(n_tok_all, 1), "ppo/ratio_max": sums["ppo/ratio_max"],
           "entropy": sums["entropy"] / max(n_tok_all, 1)}
    out.update(eval_math.response_stats(responses, texts, truncated))
    out.update(timer)
    n_resp = sum(len(r) for r in responses)
    out.update({"logp/rollout_vs_train_max_abs": mismatch, "grad_norm": max(grad_norms), "lr": scheduler.get_last_lr()[0],
                "tokens": n_resp, "tokens_per_s": n_resp / max(sum(timer.values()), 1e-9)})
    return out


class Verifier(train_opd.Teacher):
    """GRPO's signal: no model grades the tokens (model None, so train_opd.run evaluates no
    teacher); the strict grader rewards whole responses."""

    def __init__(self, cfg: dict, student, tok, device):
        self.model = None

    def step(self, student, tok, examples: list, prompts: list, cfg: dict, optimizer, scheduler, generator) -> dict:
        return grpo_step(student, tok, examples, prompts, cfg, optimizer, scheduler, generator)


# -----------------------------------------------------------------------------
# Plumbing: the run is train_opd.run's (data, evaluation, checkpoints, exact resume)

def main(argv=None) -> dict:
    cfg = resolve_config(argv)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SystemExit("train_grpo.py runs in one process: its token-level normalisation and minibatches are not "
                         "split over torchrun's processes (train_opd.py and train_opsd.py are); run it with python")
    return train_opd.run(cfg, Verifier, name="GRPO")


if __name__ == "__main__":
    main()
