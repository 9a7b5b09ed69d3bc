"""Per-token distillation losses of "The Many Faces of On-Policy Distillation" (arXiv 2605.11182).

Every loss here turns one student distribution p and one teacher distribution q per position
into one number per position. Sections (§) refer to docs/paper.md of the `opd` repository this
file comes from; the docstrings below are written to stand alone when the file is copied into
another trainer:

    sampled_rkl               §3.1   sampled-token reverse KL, policy-gradient form (+ PPO clip)
    clipped_surrogate         §3.1   PPO's clipped surrogate (also GRPO's, §4 Fix 2, clip-higher)
    sampled_rkl_pathwise      §3.1b  the same value differentiated directly: zero expected signal
    full_rkl                  §3.2   exact reverse KL over the vocabulary
    full_fkl                  §3.7   exact forward KL over the vocabulary
    jsd                       §3.7   generalised Jensen-Shannon (GKD/TRL beta convention)
    topk_plain                §3.3   student Top-K reverse KL, no stop-gradient: BIASED (Mechanism 2)
    topk_sg                   §3.4   the same with sg[log p] inside the bracket (Fix 1)
    topk_renorm_intersect_sg  §3.5   renormalised on student-top-K ∩ teacher-top-K (Fix 1, alternative)
    topk_tail                 §3.6   Top-K plus one tail cell: a proper KL on K+1 cells
    topk_fkl                  §3.7   forward KL on the teacher's Top-K, not renormalised

The calling convention is the same for all of them:

    per_token = fn(student_logits, teacher_logits, tokens, **options)

`student_logits` and `teacher_logits` are (..., V) at the positions that predict `tokens` (...),
the ids the student sampled. The result has the shape of `tokens` and is float32 (float64 if the
student logits are float64, which the gradient checks use). Gradient flows into the student logits
only: the teacher is detached inside every function. Reduce with `masked_mean`.

`geometric_mean_teacher` is Mechanism 3's closed form (§4): the best student that cannot see
the privileged information of OPSD, and the loss it can never remove.

Run `python losses.py` for a demonstration of Mechanism 2 (§3.9): the gradient of every loss when
the student already equals the teacher, and where gradient descent settles with K held fixed.

This file imports only torch, math and typing, so it can be copied alone into another trainer.
License: MIT (the repository's LICENSE); keep this notice in a copy.
Copyright (c) 2026 The opd contributors. SPDX-License-Identifier: MIT

Deliberate simplifications and deviations from the paper's code:
  * The Top-K losses read the teacher's exact log-probs at the student's Top-K ids. The paper's
    code asks the teacher for its own Top-K and fills ids missing from it with the student's own
    log-prob (r = 0 there); we do not need that approximation because we have the full logits.
  * `-inf` teacher logits (padded vocabulary rows, padded positions) are replaced by a large
    finite log-prob (TEACHER_LOGQ_FLOOR) so that no NaN reaches a gradient; on the student's side
    a zero-probability term is 0 with a zero gradient (`_xlogy_terms`).
"""

import math
from typing import Callable, Dict, Optional

import torch

TEACHER_LOGQ_FLOOR = -1.0e4  # stands in for log q = -inf: exp() of it is exactly 0 in float32
TAIL_EPS = 1e-8  # §3.6: tail masses clamped here, as the paper's code does


# -----------------------------------------------------------------------------
# Shared pieces: log-probabilities in float32, gathering, Top-K sets


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float32 for half/bf16/float32 inputs; float64 stays float64 (gradient checks)."""
    return x.double() if x.dtype == torch.float64 else x.float()


def student_logprobs(student_logits: torch.Tensor) -> torch.Tensor:
    """log p over the vocabulary, float32 (or float64), differentiable."""
    return torch.log_softmax(_upcast(student_logits), dim=-1)  # (..., V)


def teacher_logprobs(teacher_logits: torch.Tensor) -> torch.Tensor:
    """log q over the vocabulary, detached, with -inf and NaN replaced by TEACHER_LOGQ_FLOOR.

    A row of padded vocabulary entries (-inf logits) gives log q = -inf there; a row that is
    entirely -inf (a padded position of a ragged batch) gives NaN everywhere. Both would poison
    the gradient even where the position is masked out later (0 * NaN = NaN).
    """
    logq = torch.log_softmax(_upcast(teacher_logits.detach()), dim=-1)  # (..., V)
    return torch.nan_to_num(logq, nan=TEACHER_LOGQ_FLOOR, neginf=TEACHER_LOGQ_FLOOR)


def _gather(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return x.gather(-1, ids)


def student_logprobs_at(student_logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p at `ids` (..., K) as z[ids] − logsumexp(z): equal to gathering log_softmax, but no
    (..., V) log-prob tensor is created or kept for backward (only the logits themselves)."""
    z = _upcast(student_logits)
    return z.gather(-1, ids) - torch.logsumexp(z, dim=-1, keepdim=True)


def teacher_logprobs_at(teacher_logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log q at `ids`, detached, -inf/NaN replaced by TEACHER_LOGQ_FLOOR (see teacher_logprobs)."""
    t = _upcast(teacher_logits.detach())
    logq = t.gather(-1, ids) - torch.logsumexp(t, dim=-1, keepdim=True)
    return torch.nan_to_num(logq, nan=TEACHER_LOGQ_FLOOR, neginf=TEACHER_LOGQ_FLOOR)


def _xlogy_terms(w: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """w * r with 0 * anything = 0 and a zero, finite gradient there. r is masked BEFORE the product:
    at an entry padded with -inf on both sides r = NaN, and a masked product's backward is 0 * NaN."""
    return w * torch.where(w > 0, r, torch.zeros_like(r))


def _student_topk(student_logits: torch.Tensor, k: int, topk_ids: Optional[torch.Tensor]) -> torch.Tensor:
    """The Top-K set K_t of §3.3: the student's K most likely ids (or the ids given)."""
    if topk_ids is not None:
        return topk_ids
    V = student_logits.shape[-1]
    if not 1 <= k <= V:
        raise ValueError(f"k must be in [1, V={V}], got k={k}")
    return student_logits.detach().topk(k, dim=-1).indices  # (..., K)


def _check(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tokens: Optional[torch.Tensor]):
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
            "differ in shape; slice both to the positions that predict the response tokens and to one "
            "vocabulary (pad the smaller vocabulary with -inf)"
        )
    if tokens is not None and tokens.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"tokens {tuple(tokens.shape)} must have the logits' shape without the vocabulary "
            f"dimension, {tuple(student_logits.shape[:-1])}"
        )


# -----------------------------------------------------------------------------
# §3.1 and §3.1b: the sampled-token losses


def sampled_rkl(
    student_logits, teacher_logits, tokens, old_logp: Optional[torch.Tensor] = None, clip_eps: float = 0.2
):
    """Sampled-token reverse KL in policy-gradient form (§3.1; Thinking Machines, Tinker, slime).

    Without `old_logp` (strictly on-policy):
        value     ℓ_t = −sg[log q(y_t) − log p(y_t)] · log p(y_t)
        gradient  ∇ℓ_t = r_t(y_t) ∇log p(y_t),   r = log p − log q
    Over y_t ~ p this is an unbiased estimate of ∇KL(p_t‖q_t) (§3.9 item 1): E_p[r ∇log p] is the
    full-vocabulary gradient. Fixed point: p = q. The VALUE is a surrogate, not a KL: log the KL
    estimate log p(y) − log q(y) separately (it is `sampled_rkl_pathwise`'s value).

    With `old_logp` (the rollout's log p(y_t), to reuse a rollout for several steps), the
    PPO-clipped surrogate with ρ = exp(log p(y) − old_logp) and A = sg[log q(y) − old_logp]:
        ℓ_t = −min(ρ A, clip(ρ, 1 − clip_eps, 1 + clip_eps) A)
    At ρ = 1 its gradient is the one above; where the clip is active it is zero.
    """
    _check(student_logits, teacher_logits, tokens)
    ids = tokens.unsqueeze(-1)
    logp_y = student_logprobs_at(student_logits, ids).squeeze(-1)  # (...)
    logq_y = teacher_logprobs_at(teacher_logits, ids).squeeze(-1)  # (...)
    if old_logp is None:
        advantage = (logq_y - logp_y).detach()  # −r: the per-token reward of §3.1
        return -advantage * logp_y
    old_logp = _upcast(old_logp.detach())
    return clipped_surrogate(logp_y, old_logp, logq_y - old_logp, clip_eps)


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantage: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: Optional[float] = None,
) -> torch.Tensor:
    """PPO's clipped surrogate per token, shared by `sampled_rkl` (§3.1) and GRPO (§4 Fix 2):
        ℓ_t = −min(ρ_t A_t, clip(ρ_t, 1 − clip_low, 1 + clip_high) A_t),  ρ_t = exp(logp_t − old_logp_t)
    `logp` (...) carries the gradient; `old_logp` and `advantage` (same shape) are constants.
    `clip_high` > `clip_low` is DAPO's clip-higher (the paper's GRPO teacher: 0.2 / 0.28); None
    means symmetric. At ρ = 1 the gradient is −A ∇logp; where the clip is active it is zero."""
    old_logp, advantage = old_logp.detach(), advantage.detach()
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1.0 - clip_low, 1.0 + (clip_low if clip_high is None else clip_high))
    return -torch.minimum(ratio * advantage, clipped * advantage)


def sampled_rkl_pathwise(student_logits, teacher_logits, tokens):
    """The sampled-token log-ratio differentiated directly (§3.1b): a NEGATIVE CONTROL.

        value     ℓ_t = log p(y_t) − log q(y_t)    (the standard one-sample estimate of KL(p‖q))
        gradient  ∇ℓ_t = ∇log p(y_t)
    E_{y~p}[∇log p(y)] = Σ_v ∇p(v) = 0: no teacher signal in expectation, only noise plus a push
    down on whatever was sampled (Tang & Munos 2506.09477). Any point is a fixed point in
    expectation. Kept because the paper's code runs it; use `sampled_rkl` to train.
    """
    _check(student_logits, teacher_logits, tokens)
    ids = tokens.unsqueeze(-1)
    logp_y = student_logprobs_at(student_logits, ids).squeeze(-1)
    logq_y = teacher_logprobs_at(teacher_logits, ids).squeeze(-1)
    return logp_y - logq_y


# -----------------------------------------------------------------------------
# §3.2 and §3.7: full-vocabulary divergences (GKD-style, differentiated directly)


def full_rkl(student_logits, teacher_logits, tokens=None):
    """Exact reverse KL per position (§3.2).

        value     ℓ_t = KL(p‖q) = Σ_v p(v) r(v)
        gradient  ∇ℓ_t = Σ_v p(v) r(v) ∇log p(v)   (the "+1" vanishes: Σ_v ∇p(v) = 0)
                  in logits z: ∂ℓ/∂z_j = p_j (r_j − KL)
    Unbiased (it is the exact per-state objective). Fixed point: p = q. `tokens` is unused
    (accepted for the common signature).
    """
    _check(student_logits, teacher_logits, tokens)
    logp = student_logprobs(student_logits)  # (..., V)
    logq = teacher_logprobs(teacher_logits)  # (..., V)
    return _xlogy_terms(logp.exp(), logp - logq).sum(-1)


def full_fkl(student_logits, teacher_logits, tokens=None):
    """Exact forward KL per position (§3.7).

        value     ℓ_t = KL(q‖p) = Σ_v q(v) (log q(v) − log p(v))
        gradient  ∂ℓ/∂z_j = p_j − q_j
    Unbiased; mode-covering. Fixed point: p = q. `tokens` is unused.
    """
    _check(student_logits, teacher_logits, tokens)
    logp = student_logprobs(student_logits)
    logq = teacher_logprobs(teacher_logits)
    return _xlogy_terms(logq.exp(), logq - logp).sum(-1)


def jsd(student_logits, teacher_logits, tokens=None, beta: float = 0.5):
    """Generalised Jensen-Shannon divergence (§3.7, §6 GKD), in the GKD/TRL convention.

    With m = β q + (1 − β) p (q teacher, p student):
        value     ℓ_t = β KL(q‖m) + (1 − β) KL(p‖m)
        gradient  ∂ℓ/∂z_j = p_j (a_j − Σ_v p_v a_v),   a_v = (1 − β) log(p_v / m_v)
    The endpoints are defined exactly, not by the formula (which is 0 there):
        beta = 0 → full_fkl (forward KL(q‖p)),   beta = 1 → full_rkl (reverse KL(p‖q)).
    Near the endpoints the value shrinks like β (or 1 − β): JSD_β/β → KL(q‖p) as β → 0 and
    JSD_β/(1 − β) → KL(p‖q) as β → 1 (§8 viii), so a β close to 0 or 1 silently scales the
    learning rate down (ms-swift #10078). Unbiased; fixed point p = q.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"jsd needs 0 <= beta <= 1, got {beta}")
    if beta == 0.0:
        return full_fkl(student_logits, teacher_logits, tokens)
    if beta == 1.0:
        return full_rkl(student_logits, teacher_logits, tokens)
    _check(student_logits, teacher_logits, tokens)
    logp = student_logprobs(student_logits)
    logq = teacher_logprobs(teacher_logits)
    # log m = log(β q + (1−β) p), in log space; gradient flows through p here too (GKD).
    logm = torch.logsumexp(torch.stack([logq + math.log(beta), logp + math.log1p(-beta)]), dim=0)
    kl_q_m = _xlogy_terms(logq.exp(), logq - logm).sum(-1)
    kl_p_m = _xlogy_terms(logp.exp(), logp - logm).sum(-1)
    return beta * kl_q_m + (1.0 - beta) * kl_p_m


# -----------------------------------------------------------------------------
# §3.3 – §3.6: Top-K reverse KL on the student's Top-K set (Mechanism 2 and Fix 1)


def topk_plain(
    student_logits, teacher_logits, tokens=None, k: int = 20, topk_ids: Optional[torch.Tensor] = None
):
    """Plain (unnormalised) Top-K reverse KL (§3.3): the BIASED loss of Mechanism 2.

        value     ℓ_t = Σ_{v∈K} p(v) (log p(v) − log q(v)),   K = the student's Top-K
        gradient  ∇ℓ_t = Σ_{v∈K} p (r + 1) ∇log p = [sg Top-K gradient] + ∇M_K,   M_K = Σ_K p
                  the extra ∂M_K/∂z_j = p_j (1[j∈K] − M_K) moves mass from K into the tail,
                  whatever the teacher says (§3.9 item 2)
    Biased: at p = q the gradient is ∇M_K ≠ 0. With K held fixed the minimiser is p = q/e on K
    (student/teacher mass ratio 1/e ≈ 0.368), the tail taking the rest (§3.9 item 3b).
    `topk_ids` (..., K) overrides the set (e.g. the rollout engine's Top-K ids).
    """
    _check(student_logits, teacher_logits, tokens)
    ids = _student_topk(student_logits, k, topk_ids)  # (..., K)
    logp_K = student_logprobs_at(student_logits, ids)  # (..., K)
    logq_K = teacher_logprobs_at(teacher_logits, ids)  # (..., K)
    return _xlogy_terms(logp_K.exp(), logp_K - logq_K).sum(-1)  # gradient through the weight AND log p


def topk_sg(
    student_logits, teacher_logits, tokens=None, k: int = 20, topk_ids: Optional[torch.Tensor] = None
):
    """Stop-gradient Top-K reverse KL (§3.4): Fix 1, the paper's recommended loss.

        value     ℓ_t = Σ_{v∈K} p(v) (sg[log p(v)] − log q(v))   (the same value as topk_plain)
        gradient  ∇ℓ_t = Σ_{v∈K} p(v) r(v) ∇log p(v)   (the full-vocabulary gradient restricted to K)
                  in logits: ∂ℓ/∂z_j = p_j r_j 1[j∈K] − p_j Σ_{v∈K} p_v r_v
    No mass term, so no bias in the §3.9 sense: the gradient vanishes at p = q, and with K held
    fixed the stationary point is p = q on K (ratio 1) with the tail mass left free. What remains
    is truncation error (the tail terms of the full gradient). A pseudo-loss: its gradient is not
    the gradient of its value. The stop-gradient sits on log p INSIDE the bracket; detaching the
    weight p instead would leave only ∇M_K, the bias term (§3.4 trap).
    """
    _check(student_logits, teacher_logits, tokens)
    ids = _student_topk(student_logits, k, topk_ids)
    logp_K = student_logprobs_at(student_logits, ids)  # (..., K)
    logq_K = teacher_logprobs_at(teacher_logits, ids)  # (..., K)
    return _xlogy_terms(logp_K.exp(), logp_K.detach() - logq_K).sum(-1)  # §3.4: sg on log p in the bracket


def topk_renorm_intersect_sg(
    student_logits, teacher_logits, tokens=None, k: int = 20, topk_ids: Optional[torch.Tensor] = None
):
    """Top-K reverse KL renormalised on I = TopK_student ∩ TopK_teacher, with stop-gradient (§3.5).

        p̃ = p / Σ_I p,   q̃ = q / Σ_I q   on I
        value     ℓ_t = Σ_{v∈I} p̃(v) (sg[log p̃(v)] − log q̃(v))   (= KL(p̃‖q̃) in value)
        gradient  ∂ℓ/∂z_j = 1[j∈I] p̃_j (R_j − Σ_I p̃ R),   R = log p̃ − log q̃
                  (equal to the gradient of KL(p̃‖q̃) itself: on a closed support the +1 cancels)
    Unbiased in the §3.9 sense: zero gradient when p̃ = q̃. Matches only the shape of p on I; the
    mass on I is free. An empty intersection gives 0 with a zero gradient.
    """
    _check(student_logits, teacher_logits, tokens)
    ids_s = _student_topk(student_logits, k, topk_ids)  # (..., K)
    ids_t = teacher_logits.detach().topk(ids_s.shape[-1], dim=-1).indices  # (..., K)
    in_I = (ids_s.unsqueeze(-1) == ids_t.unsqueeze(-2)).any(-1)  # (..., K) True where v ∈ I
    any_I = in_I.any(-1, keepdim=True)  # (..., 1)
    logp_K = student_logprobs_at(student_logits, ids_s)  # (..., K)
    logq_K = teacher_logprobs_at(teacher_logits, ids_s)  # (..., K)
    # Masked entries get the most negative finite value (not -inf): exp() of them is 0 and an
    # empty I never puts inf/NaN into the backward pass.
    very_neg = torch.finfo(logp_K.dtype).min
    lse_p = torch.logsumexp(logp_K.masked_fill(~in_I, very_neg), -1, keepdim=True)
    lse_q = torch.logsumexp(logq_K.masked_fill(~in_I, very_neg), -1, keepdim=True)
    logp_I = torch.where(in_I & any_I, logp_K - lse_p, torch.zeros_like(logp_K))  # log p̃ (0 off I)
    logq_I = torch.where(in_I & any_I, logq_K - lse_q, torch.zeros_like(logq_K))  # log q̃ (0 off I)
    terms = _xlogy_terms(logp_I.exp(), logp_I.detach() - logq_I)  # §3.5: sg on log p̃ inside the bracket
    return torch.where(in_I, terms, torch.zeros_like(terms)).sum(-1)


def topk_tail(
    student_logits, teacher_logits, tokens=None, k: int = 20, topk_ids: Optional[torch.Tensor] = None
):
    """Top-K reverse KL with a tail bucket (§3.6): an exact KL on K + 1 cells.

        value     ℓ_t = Σ_{v∈K} p r + (1 − M_K) log[(1 − M_K) / (1 − Q_K)],   Q_K = Σ_K q
        gradient  ∂ℓ/∂z_j = p_j (1[j∈K] r_j + 1[j∉K] R_tail − ℓ_t),   R_tail = log[(1−M_K)/(1−Q_K)]
    Gradient through everything; the +1 cancels over the K+1 cells, so it is unbiased in the §3.9
    sense. Fixed point: p = q on K and equal tail masses. Tail masses are summed over the ids
    outside K (more accurate than 1 − M_K) and clamped at 1e-8 as in the paper's code, so K = V
    and near-complete Top-K sets stay finite (K = V gives exactly full_rkl). The OPSD math default
    of the paper's code, with K = 50 (§5).
    """
    _check(student_logits, teacher_logits, tokens)
    ids = _student_topk(student_logits, k, topk_ids)
    logp = student_logprobs(student_logits)  # (..., V)
    logq = teacher_logprobs(teacher_logits)  # (..., V)
    logp_K, logq_K = _gather(logp, ids), _gather(logq, ids)  # (..., K)
    in_K = torch.zeros_like(logp, dtype=torch.bool).scatter_(-1, ids, True)  # (..., V)
    tail_p = torch.where(in_K, torch.zeros_like(logp), logp.exp()).sum(-1).clamp_min(TAIL_EPS)  # 1 − M_K
    tail_q = torch.where(in_K, torch.zeros_like(logq), logq.exp()).sum(-1).clamp_min(TAIL_EPS)  # 1 − Q_K
    head = _xlogy_terms(logp_K.exp(), logp_K - logq_K).sum(-1)
    return head + tail_p * (tail_p.log() - tail_q.log())


def topk_fkl(
    student_logits, teacher_logits, tokens=None, k: int = 20, topk_ids: Optional[torch.Tensor] = None
):
    """Forward KL on the TEACHER's Top-K, not renormalised (§3.7; the forward direction in TRL).

        value     ℓ_t = Σ_{v∈K_T} q(v) (log q(v) − log p(v)),   K_T = the teacher's Top-K
        gradient  ∂ℓ/∂z_j = Q_K p_j − q_j 1[j∈K_T]
    Biased towards the teacher's head: the minimiser is p = q/Q_K on K_T with zero tail mass, and
    the value can be negative there (Q_K log Q_K < 0). `topk_ids` overrides the teacher's set.
    """
    _check(student_logits, teacher_logits, tokens)
    V = teacher_logits.shape[-1]
    if topk_ids is None and not 1 <= k <= V:
        raise ValueError(f"k must be in [1, V={V}], got k={k}")
    ids = topk_ids if topk_ids is not None else teacher_logits.detach().topk(k, dim=-1).indices
    logp_K = student_logprobs_at(student_logits, ids)
    logq_K = teacher_logprobs_at(teacher_logits, ids)
    return _xlogy_terms(logq_K.exp(), logq_K - logp_K).sum(-1)


LOSSES: Dict[str, Callable[..., torch.Tensor]] = {
    "sampled_rkl": sampled_rkl,
    "sampled_rkl_pathwise": sampled_rkl_pathwise,
    "full_rkl": full_rkl,
    "full_fkl": full_fkl,
    "jsd": jsd,
    "topk_plain": topk_plain,
    "topk_sg": topk_sg,
    "topk_renorm_intersect_sg": topk_renorm_intersect_sg,
    "topk_tail": topk_tail,
    "topk_fkl": topk_fkl,
}


# -----------------------------------------------------------------------------
# Reduction and diagnostics


def masked_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token-mean within each sequence, then mean over sequences (§2.4, "Loss reduction").

    `per_token` and `mask` are (B, T) (or (..., T)). Sequences with no valid token are left out of
    the outer mean; if no sequence has one, the result is 0 with a gradient path (zero gradient).
    Masked positions are never multiplied into the result, so NaN or inf there cannot leak.
    """
    if per_token.shape != mask.shape:
        raise ValueError(f"per_token {tuple(per_token.shape)} and mask {tuple(mask.shape)} differ in shape")
    mask = mask.bool()
    x = torch.where(mask, _upcast(per_token), torch.zeros((), dtype=_upcast(per_token).dtype))
    n_tok = mask.sum(-1)  # (B,)
    per_seq = x.sum(-1) / n_tok.clamp_min(1)  # (B,)
    has_tok = (n_tok > 0).reshape(-1)
    per_seq = per_seq.reshape(-1)
    return torch.where(has_tok, per_seq, torch.zeros_like(per_seq)).sum() / has_tok.sum().clamp_min(1)


# -----------------------------------------------------------------------------
# Chunked over tokens: the same losses at paper scale without materialising (N, V)
#
# At the paper's scale (V = 151,936, 64 × 4096 response tokens) one float32 logits tensor for all
# tokens is 37 GiB, and the losses above keep several such tensors for backward. Because the
# reduction (masked_mean) is a fixed weighted sum of per-token values, the gradient with respect to
# the student's hidden states and LM head can be accumulated chunk by chunk during the forward
# pass: each chunk's logits live only while that chunk is processed, and the backward pass just
# scales the accumulated gradients. The matrix products are the same three per token as the
# materialised version (logits, ∂hidden, ∂head), plus the teacher's logits per chunk under no_grad.


def _per_token_weights(mask: torch.Tensor) -> torch.Tensor:
    """The weights w with masked_mean(x, mask) = Σ w·x: 1 / (tokens in the sequence · sequences)."""
    mask = mask.bool()
    n_tok = mask.sum(-1, keepdim=True)  # (B, 1)
    n_seq = (n_tok > 0).sum().clamp_min(1)
    return mask.double() / (n_tok.clamp_min(1) * n_seq)  # (B, T), float64 until the caller casts


class _ChunkedLoss(torch.autograd.Function):
    """Σ_i w_i ℓ_i over valid positions i with ℓ = fn(h_s W_sᵀ, h_t W_tᵀ, tokens), chunk by chunk."""

    @staticmethod
    def forward(ctx, h_s, W_s, h_t, W_t, tokens, weights, fn, chunk_size, options, chunked_options):
        need_h, need_W = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        N = h_s.shape[0]
        # (N,) per-token loss, for logging
        values = torch.zeros(
            N, dtype=torch.float64 if h_s.dtype == torch.float64 else torch.float32, device=h_s.device
        )
        grad_h = torch.zeros_like(h_s) if need_h else None  # (N, H)
        grad_W = torch.zeros_like(W_s) if need_W else None  # (V, H), accumulated in the head's dtype
        for start in range(0, N, chunk_size):
            sl = slice(start, start + chunk_size)
            h = h_s[sl].to(W_s.dtype)  # (C, H) (hidden states may come out of autocast in another dtype)
            logits_t = h_t[sl].to(W_t.dtype) @ W_t.T  # (C, V) the teacher's logits, recomputed per chunk
            logits = (h @ W_s.T).requires_grad_(True)  # (C, V) matmul 1: the student's logits
            opts = dict(options, **{key: val[sl] for key, val in chunked_options.items()})
            with torch.enable_grad():
                per_token = fn(logits, logits_t, tokens[sl], **opts)  # (C,)
                (g_logits,) = torch.autograd.grad((per_token * weights[sl]).sum(), logits)  # (C, V)
            g_logits = g_logits.to(W_s.dtype)
            if need_h:
                grad_h[sl] = (g_logits @ W_s).to(grad_h.dtype)  # matmul 2: ∂loss/∂h = ∂loss/∂z · W
            if need_W:
                grad_W.addmm_(g_logits.T, h)  # matmul 3, accumulated in place: ∂loss/∂W += ∂loss/∂zᵀ · h
            values[sl] = per_token.detach()
        ctx.save_for_backward(grad_h, grad_W)
        ctx.mark_non_differentiable(values)
        return (values * weights).sum(), values

    @staticmethod
    def backward(ctx, grad_loss, grad_values):
        grad_h, grad_W = ctx.saved_tensors  # ∂(loss)/∂(inputs), scaled by the upstream gradient
        if bool(grad_loss != 1):  # the usual loss.backward() passes 1: no (V, H) copy then
            grad_h = None if grad_h is None else grad_h * grad_loss.to(grad_h.dtype)
            grad_W = None if grad_W is None else grad_W * grad_loss.to(grad_W.dtype)
        return grad_h, grad_W, None, None, None, None, None, None, None, None


def chunked_loss(
    name: str,
    student_hidden: torch.Tensor,
    student_head: torch.Tensor,
    teacher_hidden: torch.Tensor,
    teacher_head: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    chunk_size: int = 1024,
    **options,
):
    """masked_mean(LOSSES[name](h_s W_sᵀ, h_t W_tᵀ, tokens), mask) without materialising (N, V).

    student_hidden (B, T, H) and teacher_hidden (B, T, H_t) are the final (normed) hidden states
    at the positions that predict `tokens` (B, T); student_head (V, H) and teacher_head (V, H_t) are
    the LM-head weights (no bias, as in Llama/Qwen). Only positions where `mask` is True are
    computed, `chunk_size` at a time. Gradients flow into student_hidden and student_head; the
    teacher is never differentiated. Options are those of the loss; a tensor option whose leading
    dimensions are (B, T) (`old_logp`, `topk_ids`) is sliced per chunk with the tokens.

    Returns (loss, per_token): the scalar loss, equal in value and gradient to the materialised
    computation, and the detached per-token values (B, T) (0 where masked) for logging.

    Peak memory is about the head's gradient plus a few (chunk_size, V) float32 buffers; smaller
    chunks save memory and cost more kernel launches.
    Call backward once per forward (the gradients are computed in the forward pass).
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    if (
        student_hidden.shape[:2] != tokens.shape
        or teacher_hidden.shape[:2] != tokens.shape
        or mask.shape != tokens.shape
    ):
        raise ValueError(
            f"hidden states {tuple(student_hidden.shape)} / {tuple(teacher_hidden.shape)}, tokens "
            f"{tuple(tokens.shape)} and mask {tuple(mask.shape)} must share (B, T)"
        )
    if student_head.shape[0] != teacher_head.shape[0]:
        raise ValueError(
            f"student and teacher heads have different vocabularies ({student_head.shape[0]} vs "
            f"{teacher_head.shape[0]}); slice both to the shared vocabulary"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    valid = mask.bool()
    plain = {
        key: val for key, val in options.items() if not (torch.is_tensor(val) and val.shape[:2] == mask.shape)
    }
    per_pos = {key: val[valid] for key, val in options.items() if key not in plain}
    weights = _per_token_weights(valid)[valid].to(
        torch.float64 if student_hidden.dtype == torch.float64 else torch.float32
    )
    loss, values = _ChunkedLoss.apply(
        student_hidden[valid],
        student_head,
        teacher_hidden[valid],
        teacher_head,
        tokens[valid],
        weights,
        LOSSES[name],
        chunk_size,
        plain,
        per_pos,
    )
    per_token = torch.zeros(tokens.shape, dtype=values.dtype, device=values.device)
    per_token[valid] = values
    return loss, per_token


@torch.no_grad()
def topk_stats(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, k: int, tokens: Optional[torch.Tensor] = None
) -> Dict[str, torch.Tensor]:
    """Top-K collapse monitors per position (§2.5), each of shape (...):

    student_mass  M_K = Σ_{v∈K_S} p(v)       the student's mass on its own Top-K
    teacher_mass  Q_K = Σ_{v∈K_S} q(v)       the teacher's mass on the student's Top-K
    overlap       |K_S ∩ K_T| / K            student/teacher Top-K overlap ratio
    teacher_rank  rank of tokens[...] under the teacher, 1-based; K + 1 if outside its Top-K
                  (only when `tokens` is given)
    """
    _check(student_logits, teacher_logits, tokens)
    logp = student_logprobs(student_logits)
    logq = teacher_logprobs(teacher_logits)
    ids_s = student_logits.topk(k, dim=-1).indices  # (..., K)
    ids_t = teacher_logits.topk(k, dim=-1).indices  # (..., K)
    stats = {
        "student_mass": _gather(logp, ids_s).exp().sum(-1),
        "teacher_mass": _gather(logq, ids_s).exp().sum(-1),
        "overlap": (ids_s.unsqueeze(-1) == ids_t.unsqueeze(-2)).any(-1).float().sum(-1) / k,
    }
    if tokens is not None:
        hit = ids_t == tokens.unsqueeze(-1)  # (..., K)
        first = hit.float().argmax(-1) + 1
        stats["teacher_rank"] = torch.where(hit.any(-1), first, torch.full_like(first, k + 1))
    return stats


# -----------------------------------------------------------------------------
# Mechanism 3 (§4, §5): what a student without the privileged information can learn


def geometric_mean_teacher(teacher_logits: torch.Tensor, weights: Optional[torch.Tensor] = None):
    """The best PI-free student for a set of PI-conditioned teachers, and the loss it cannot remove.

    teacher_logits: (m, ..., V), teacher i conditioned on PI value c_i, all at the same states;
    weights: (m,) the probability of each c_i given what the student sees (default uniform).
    Returns (log_g, log_z): log_g (..., V) the log of g = Π_i q_i^{w_i} / Z, and log_z (...) ≤ 0.

    For every student p:  Σ_i w_i KL(p‖q_i) = KL(p‖g) − log Z,  so g is the minimiser of the OPSD
    reverse KL averaged over the PI the student cannot see, and −log Z is what remains at the
    optimum: 0 when the teachers agree (one shared rule), > 0 when they disagree (one answer per
    instance). (Forward KL would be minimised by the mixture Σ_i w_i q_i instead.)"""
    logq = teacher_logprobs(teacher_logits)  # (m, ..., V)
    m = logq.shape[0]
    if weights is None:
        weights = torch.full((m,), 1.0 / m, dtype=logq.dtype, device=logq.device)
    w = weights.to(logq.dtype).reshape((m,) + (1,) * (logq.dim() - 1))
    s = (w * logq).sum(0)  # (..., V) log Π q_i^{w_i}, unnormalised
    log_z = torch.logsumexp(s, dim=-1)  # (...)
    return s - log_z[..., None], log_z


# -----------------------------------------------------------------------------
# The demonstration of Mechanism 2 (`python losses.py`)


def expected_grad(
    name: str, student_logits: torch.Tensor, teacher_logits: torch.Tensor, **options
) -> torch.Tensor:
    """∂/∂z of the loss for one state (V,), in expectation over y ~ p for the sampled-token losses
    (enumerated exactly over the vocabulary), the plain gradient for the others."""
    z = student_logits.detach().clone().requires_grad_(True)
    V = z.shape[-1]
    if name.startswith("sampled"):
        zs, ts = z.expand(V, V), teacher_logits.expand(V, V)
        per_y = LOSSES[name](zs, ts, torch.arange(V), **options)  # (V,) one row per token y
        weights = torch.softmax(z.detach().double(), -1).to(per_y.dtype)
        (weights * per_y).sum().backward()
    else:
        LOSSES[name](z, teacher_logits, torch.zeros((), dtype=torch.long), **options).backward()
    return z.grad


def fixed_point_mass_ratio(
    name: str, teacher_logits: torch.Tensor, k: int, steps: int = 3000, lr: float = 0.05, seed: int = 0
) -> float:
    """Descend a Top-K loss on free student logits with K HELD FIXED (the teacher's Top-K ids, so
    K is well defined for any student), and return the student/teacher mass ratio on K (§3.9 3b)."""
    g = torch.Generator().manual_seed(seed)
    V = teacher_logits.shape[-1]
    ids = teacher_logits.topk(k).indices
    z = (0.5 * torch.randn(V, generator=g, dtype=torch.float64)).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        LOSSES[name](z, teacher_logits, None, topk_ids=ids).backward()
        opt.step()
    p, q = torch.softmax(z.detach(), -1), torch.softmax(teacher_logits, -1)
    return (p[ids].sum() / q[ids].sum()).item()


BIAS_NOTES = {
    "topk_plain": "  <- biased: the +1 term (∇M_K) moves mass out of the student's Top-K",
    "topk_fkl": "  <- biased the other way: pulls all mass into the teacher's Top-K",
}


def _demo() -> None:
    torch.manual_seed(0)
    V, k = 64, 8
    teacher = 2.0 * torch.randn(V, dtype=torch.float64)
    print(f"Mechanism 2 on a random distribution: V = {V}, K = {k} (§3.9)\n")
    print("gradient norm when the student already equals the teacher (p = q):")
    for name in LOSSES:
        opts = {"k": k} if name.startswith("topk") else {}
        gnorm = expected_grad(name, teacher, teacher, **opts).norm().item()
        note = BIAS_NOTES.get(name, "") if gnorm > 1e-6 else ""
        print(f"  {name:26s} {gnorm:10.2e}{note}")
    print("  (sampled losses: the exact expectation over y ~ p)\n")
    print("fixed point of gradient descent with K held fixed, student/teacher mass on K:")
    for name, target in (("topk_plain", 1 / math.e), ("topk_sg", 1.0)):
        ratio = fixed_point_mass_ratio(name, teacher, k)
        print(f"  {name:26s} {ratio:.4f}   (theory: {target:.4f})")


if __name__ == "__main__":
    _demo()
