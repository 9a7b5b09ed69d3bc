"""Gradient-level tests of losses.py (the gradient-bias tests: part of the tutorial).

Every loss is checked against references that do not share code with losses.py: numpy formulas
for the values, closed-form gradients in logit space, float64 central finite differences, and
Monte-Carlo averages over sampled tokens. docs/paper.md §8 lists properties (i)-(viii); each has a test.
Run: `make test` (or `.venv/bin/python -m pytest -q test_losses.py`).
"""

import ast
import math
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import losses

HERE = pathlib.Path(__file__).resolve().parent
K = 4
BETA = 0.3
ALL = list(losses.LOSSES)
SAMPLED = ["sampled_rkl", "sampled_rkl_pathwise"]
TOPK = [n for n in ALL if n.startswith("topk")]


def options(name):
    if name in TOPK:
        return {"k": K}
    if name == "jsd":
        return {"beta": BETA}
    return {}


# -----------------------------------------------------------------------------
# Independent numpy references, one state at a time: z, t are (V,) student/teacher logits.


def np_softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def topk_np(z, k):
    return set(np.argsort(-z, kind="stable")[:k].tolist())


def ref_value(name, z, t, y, k=K, beta=BETA):
    p, q = np_softmax(z), np_softmax(t)
    if name == "sampled_rkl":
        return -(np.log(q[y]) - np.log(p[y])) * np.log(p[y])
    if name == "sampled_rkl_pathwise":
        return np.log(p[y]) - np.log(q[y])
    if name == "full_rkl":
        return float(np.sum(p * np.log(p / q)))
    if name == "full_fkl":
        return float(np.sum(q * np.log(q / p)))
    if name == "jsd":
        m = beta * q + (1 - beta) * p
        return float(beta * np.sum(q * np.log(q / m)) + (1 - beta) * np.sum(p * np.log(p / m)))
    if name in ("topk_plain", "topk_sg"):
        Ks = sorted(topk_np(z, k))
        return float(sum(p[v] * np.log(p[v] / q[v]) for v in Ks))
    if name == "topk_renorm_intersect_sg":
        I = sorted(topk_np(z, k) & topk_np(t, k))
        if not I:
            return 0.0
        pI, qI = p[I] / p[I].sum(), q[I] / q[I].sum()
        return float(np.sum(pI * np.log(pI / qI)))
    if name == "topk_tail":
        Ks = sorted(topk_np(z, k))
        M, Q = p[Ks].sum(), q[Ks].sum()
        return float(np.sum(p[Ks] * np.log(p[Ks] / q[Ks])) + (1 - M) * np.log((1 - M) / (1 - Q)))
    if name == "topk_fkl":
        Kt = sorted(topk_np(t, k))
        return float(np.sum(q[Kt] * np.log(q[Kt] / p[Kt])))
    raise KeyError(name)


def ref_grad(name, z, t, y, k=K, beta=BETA):
    """Closed-form gradient with respect to the student logits z (docs/paper.md §3, derived by hand)."""
    p, q = np_softmax(z), np_softmax(t)
    V = len(z)
    r = np.log(p) - np.log(q)
    e_y = np.eye(V)[y]
    if name == "sampled_rkl":
        return r[y] * (e_y - p)
    if name == "sampled_rkl_pathwise":
        return e_y - p
    if name == "full_rkl":
        return p * (r - np.sum(p * r))
    if name == "full_fkl":
        return p - q
    if name == "jsd":
        m = beta * q + (1 - beta) * p
        a = (1 - beta) * np.log(p / m)
        return p * (a - np.sum(p * a))
    inK = np.zeros(V)
    inK[list(topk_np(z, k))] = 1.0
    S = np.sum(inK * p * r)
    sg = p * r * inK - p * S
    if name == "topk_sg":
        return sg
    if name == "topk_plain":
        M = np.sum(inK * p)
        return sg + p * (inK - M)  # §3.9 item 2: the extra ∇M_K
    if name == "topk_renorm_intersect_sg":
        inI = np.zeros(V)
        inI[list(topk_np(z, k) & topk_np(t, k))] = 1.0
        if inI.sum() == 0:
            return np.zeros(V)
        pI = inI * p / np.sum(inI * p)
        qI = inI * q / np.sum(inI * q)
        R = np.where(inI > 0, np.log(np.where(inI > 0, pI, 1.0) / np.where(inI > 0, qI, 1.0)), 0.0)
        return inI * pI * (R - np.sum(pI * R))
    if name == "topk_tail":
        M, Q = np.sum(inK * p), np.sum(inK * q)
        R_tail = np.log((1 - M) / (1 - Q))
        value = ref_value("topk_tail", z, t, y, k)
        return p * (inK * r + (1 - inK) * R_tail - value)
    if name == "topk_fkl":
        inKT = np.zeros(V)
        inKT[list(topk_np(t, k))] = 1.0
        return np.sum(inKT * q) * p - q * inKT
    raise KeyError(name)


def surrogate_fn(name, z0, t, y, k=K, beta=BETA):
    """A function of z whose true derivative at z0 must equal the loss's autograd gradient.

    For the proper losses it is the value itself; for the stop-gradient losses it is the value
    with the stopped quantity frozen at z0 (what sg means), so finite differences can check them.
    """
    p0, q = np_softmax(z0), np_softmax(t)
    if name == "sampled_rkl":
        A0 = np.log(q[y]) - np.log(p0[y])
        return lambda z: -A0 * np.log(np_softmax(z)[y])
    if name == "topk_sg":
        Ks = sorted(topk_np(z0, k))
        c = np.log(p0[Ks]) - np.log(q[Ks])
        return lambda z: float(np.sum(np_softmax(z)[Ks] * c))
    if name == "topk_renorm_intersect_sg":
        # On a closed support the stopped log p̃ contributes Σ∇p̃ = 0: the derivative is KL(p̃‖q̃)'s.
        I = sorted(topk_np(z0, k) & topk_np(t, k))

        def f(z):
            p = np_softmax(z)
            pI, qI = p[I] / p[I].sum(), q[I] / q[I].sum()
            return float(np.sum(pI * np.log(pI / qI)))

        return f
    if name in ("topk_plain", "topk_tail"):
        Ks = sorted(topk_np(z0, k))  # the set is piecewise constant in z: freeze it at z0

        def f(z):
            p = np_softmax(z)
            head = float(np.sum(p[Ks] * np.log(p[Ks] / q[Ks])))
            if name == "topk_plain":
                return head
            M, Q = p[Ks].sum(), q[Ks].sum()
            return head + (1 - M) * np.log((1 - M) / (1 - Q))

        return f
    return lambda z: ref_value(name, z, t, y, k, beta)


def central_diff(f, z, h=1e-6):
    g = np.zeros_like(z)
    for j in range(len(z)):
        e = np.zeros_like(z)
        e[j] = h
        g[j] = (f(z + e) - f(z - e)) / (2 * h)
    return g


def random_batch(B=3, T=5, V=13, seed=0, scale=1.5, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    zs = scale * torch.randn(B, T, V, generator=g, dtype=dtype)
    zt = scale * torch.randn(B, T, V, generator=g, dtype=dtype)
    y = torch.randint(0, V, (B, T), generator=g)
    return zs, zt, y


def autograd(name, zs, zt, y, **opts):
    z = zs.detach().clone().requires_grad_(True)
    out = losses.LOSSES[name](z, zt, y, **(opts or options(name)))
    out.sum().backward()
    return out.detach(), z.grad


# -----------------------------------------------------------------------------
# Values, closed-form gradients, finite differences


@pytest.mark.parametrize("name", ALL)
def test_value_and_gradient_match_independent_references(name):
    zs, zt, y = random_batch()
    out, grad = autograd(name, zs, zt, y)
    assert out.shape == y.shape and out.dtype == torch.float64
    for b in range(zs.shape[0]):
        for t in range(zs.shape[1]):
            z, tt, yy = zs[b, t].numpy(), zt[b, t].numpy(), int(y[b, t])
            assert out[b, t].item() == pytest.approx(ref_value(name, z, tt, yy), rel=1e-10, abs=1e-12)
            np.testing.assert_allclose(grad[b, t].numpy(), ref_grad(name, z, tt, yy), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ALL)
def test_gradient_matches_float64_finite_differences(name):
    zs, zt, y = random_batch(B=2, T=3, V=9, seed=1)
    _, grad = autograd(name, zs, zt, y)
    for b in range(zs.shape[0]):
        for t in range(zs.shape[1]):
            z, tt, yy = zs[b, t].numpy(), zt[b, t].numpy(), int(y[b, t])
            fd = central_diff(surrogate_fn(name, z, tt, yy), z)
            np.testing.assert_allclose(grad[b, t].numpy(), fd, rtol=1e-5, atol=1e-8)


def test_ppo_clipped_sampled_rkl_matches_its_formula_and_clips():
    zs, zt, y = random_batch(B=1, T=6, V=7, seed=2)
    logp_y = torch.log_softmax(zs, -1).gather(-1, y[..., None])[..., 0]
    eps = 0.2
    # old log-probs chosen so that rho = exp(logp - old) spans both clip edges and the middle
    shifts = torch.tensor([[-0.5, -0.1, 0.0, 0.05, 0.1, 0.6]], dtype=torch.float64)
    old = logp_y - shifts
    out, grad = autograd("sampled_rkl", zs, zt, y, old_logp=old, clip_eps=eps)
    for t in range(6):
        z, tt, yy = zs[0, t].numpy(), zt[0, t].numpy(), int(y[0, t])
        p, q = np_softmax(z), np_softmax(tt)
        rho = p[yy] / math.exp(old[0, t].item())
        A = math.log(q[yy]) - old[0, t].item()
        clipped = min(max(rho, 1 - eps), 1 + eps)
        assert out[0, t].item() == pytest.approx(-min(rho * A, clipped * A), rel=1e-10)
        unclipped_active = rho * A <= clipped * A
        expected = -A * rho * (np.eye(len(z))[yy] - p) if unclipped_active else np.zeros(len(z))
        np.testing.assert_allclose(grad[0, t].numpy(), expected, atol=1e-12)
    # at rho = 1 (old = current) the PPO form has the on-policy gradient of §3.1
    _, g_ppo = autograd("sampled_rkl", zs, zt, y, old_logp=logp_y, clip_eps=eps)
    _, g_on = autograd("sampled_rkl", zs, zt, y, old_logp=None)
    torch.testing.assert_close(g_ppo, g_on, rtol=1e-10, atol=1e-12)


# -----------------------------------------------------------------------------
# docs/paper.md §8 properties (i)-(viii)


def test_i_plain_minus_sg_gradient_is_grad_of_topk_mass():
    zs, zt, y = random_batch(seed=3)
    _, g_plain = autograd("topk_plain", zs, zt, y)
    _, g_sg = autograd("topk_sg", zs, zt, y)
    z = zs.clone().requires_grad_(True)
    ids = zs.topk(K, -1).indices
    torch.softmax(z, -1).gather(-1, ids).sum().backward()  # Σ over positions of M_K
    torch.testing.assert_close(g_plain - g_sg, z.grad, rtol=1e-9, atol=1e-12)
    assert z.grad.abs().max() > 1e-3  # the difference is not trivially zero


def test_ii_at_p_equal_q_only_plain_topk_has_a_gradient():
    zs, _, _ = random_batch(seed=4)
    for name in ALL:
        g = torch.stack(
            [
                losses.expected_grad(name, zs[b, t], zs[b, t], **options(name))
                for b in range(zs.shape[0])
                for t in range(zs.shape[1])
            ]
        )
        if name in ("topk_plain", "topk_fkl"):
            assert g.norm(dim=-1).min() > 1e-3, name  # biased: p = q is not stationary
        else:
            assert g.abs().max() < 1e-12, name


def test_iii_plain_topk_fixed_point_is_q_over_e_and_sg_fixed_point_is_q():
    teacher = 2.0 * torch.randn(32, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert losses.fixed_point_mass_ratio("topk_plain", teacher, k=6, steps=2000) == pytest.approx(
        1 / math.e, abs=2e-3
    )
    assert losses.fixed_point_mass_ratio("topk_sg", teacher, k=6, steps=2000) == pytest.approx(1.0, abs=2e-3)


def test_iv_sg_gradient_is_full_gradient_restricted_to_K():
    zs, zt, y = random_batch(B=1, T=4, V=11, seed=6)
    _, g_sg = autograd("topk_sg", zs, zt, y)
    for t in range(4):
        z0 = zs[0, t]
        J = torch.autograd.functional.jacobian(lambda z: torch.log_softmax(z, -1), z0)  # (V, V): ∇ log p_v
        p, q = torch.softmax(z0, -1), torch.softmax(zt[0, t], -1)
        ids = z0.topk(K).indices
        expected = ((p * (p.log() - q.log()))[ids, None] * J[ids]).sum(0)  # Σ_K p r ∇log p
        torch.testing.assert_close(g_sg[0, t], expected, rtol=1e-9, atol=1e-12)
    # with K = V it is the full-vocabulary gradient
    _, g_sg_all = autograd("topk_sg", zs, zt, y, k=11)
    _, g_full = autograd("full_rkl", zs, zt, y)
    torch.testing.assert_close(g_sg_all, g_full, rtol=1e-9, atol=1e-12)


def _per_sample_grads(name, z0, t0, n, seed):
    """Gradients of the sampled-token loss for n tokens y ~ p, one row each (n, V)."""
    V = z0.shape[-1]
    y = torch.multinomial(
        torch.softmax(z0, -1), n, replacement=True, generator=torch.Generator().manual_seed(seed)
    )
    z = z0.expand(n, V).clone().requires_grad_(True)
    losses.LOSSES[name](z, t0.expand(n, V), y).sum().backward()
    return z.grad


@pytest.mark.parametrize("name,target", [("sampled_rkl", "full_rkl"), ("sampled_rkl_pathwise", None)])
def test_v_vi_monte_carlo_mean_gradient(name, target):
    """(v) E_y~p of the PG-form gradient is the full reverse-KL gradient; (vi) pathwise gives 0."""
    zs, zt, _ = random_batch(B=1, T=1, V=10, seed=7)
    z0, t0 = zs[0, 0], zt[0, 0]
    g = _per_sample_grads(name, z0, t0, n=200_000, seed=8)
    mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    exact = torch.zeros_like(z0) if target is None else autograd(target, z0, t0, torch.tensor(0))[1]
    # 5 standard errors: a false alarm has probability < 1e-5 over the 10 coordinates
    assert ((mean - exact).abs() <= 5 * se + 1e-9).all(), (mean, exact, se)
    if target is not None:
        assert exact.abs().max() > 20 * se.max()  # the signal is resolved, not buried in noise
    else:
        assert g.abs().mean() > 0.05  # each sample has a large gradient: pure noise that averages out


def test_vii_tail_bucket_is_nonnegative_and_full_kl_at_K_equal_V():
    zs, zt, y = random_batch(B=8, T=16, V=12, seed=9, scale=3.0)
    for k in (1, 3, 6, 11):
        assert (losses.topk_tail(zs, zt, y, k=k) >= -1e-12).all()
    torch.testing.assert_close(
        losses.topk_tail(zs, zt, y, k=12), losses.full_rkl(zs, zt, y), rtol=1e-12, atol=1e-12
    )
    _, g_tail = autograd("topk_tail", zs, zt, y, k=12)
    _, g_full = autograd("full_rkl", zs, zt, y)
    torch.testing.assert_close(g_tail, g_full, rtol=1e-9, atol=1e-12)
    # near-complete Top-K sets stay finite (tail masses clamped at 1e-8)
    peaked = zs.clone()
    peaked[..., 0] += 60.0
    out, g = autograd("topk_tail", peaked, zt, y, k=1)
    assert torch.isfinite(out).all() and torch.isfinite(g).all()


def test_viii_jsd_endpoints_exact_and_scaled_limits():
    zs, zt, y = random_batch(seed=10)
    fkl, rkl = losses.full_fkl(zs, zt, y), losses.full_rkl(zs, zt, y)
    assert torch.equal(losses.jsd(zs, zt, y, beta=0.0), fkl)
    assert torch.equal(losses.jsd(zs, zt, y, beta=1.0), rkl)
    b = 1e-5
    torch.testing.assert_close(losses.jsd(zs, zt, y, beta=b) / b, fkl, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(losses.jsd(zs, zt, y, beta=1 - b) / b, rkl, rtol=1e-3, atol=1e-6)
    # the β convention (GKD/TRL): β weights the teacher in the mixture; swapping would fail here
    zs1, zt1 = zs[0, 0], zt[0, 0]
    assert losses.jsd(zs1, zt1, beta=0.2).item() == pytest.approx(
        ref_value("jsd", zs1.numpy(), zt1.numpy(), 0, beta=0.2), rel=1e-10
    )
    assert (
        abs(
            ref_value("jsd", zs1.numpy(), zt1.numpy(), 0, beta=0.2)
            - ref_value("jsd", zt1.numpy(), zs1.numpy(), 0, beta=0.2)
        )
        > 1e-4
    )
    with pytest.raises(ValueError, match="beta"):
        losses.jsd(zs, zt, y, beta=1.5)


# -----------------------------------------------------------------------------
# The contract: teacher detached, dtypes, shapes, reduction, padding, empty sets


@pytest.mark.parametrize("name", ALL)
def test_teacher_never_receives_a_gradient(name):
    zs, zt, y = random_batch(dtype=torch.float32)
    s, t = zs.clone().requires_grad_(True), zt.clone().requires_grad_(True)
    losses.LOSSES[name](s, t, y, **options(name)).sum().backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ALL)
def test_bf16_inputs_are_computed_in_float32(name):
    zs, zt, y = random_batch(dtype=torch.float32, seed=11)
    s16, t16 = zs.bfloat16().requires_grad_(True), zt.bfloat16()
    out = losses.LOSSES[name](s16, t16, y, **options(name))
    assert out.dtype == torch.float32 and out.shape == y.shape
    # the same numbers as float32 on the bf16-rounded inputs (nothing computed in bf16)
    ref = losses.LOSSES[name](s16.detach().float(), t16.float(), y, **options(name))
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    out.sum().backward()
    assert s16.grad.dtype == torch.bfloat16 and torch.isfinite(s16.grad.float()).all()


@pytest.mark.parametrize("name", ALL)
def test_minus_inf_teacher_logits_never_give_nan(name):
    zs, zt, y = random_batch(dtype=torch.float32, seed=12, V=12)
    y = y.clamp_max(8)
    zt = zt.clone()
    zt[..., 9:] = float("-inf")  # padded vocabulary rows the teacher cannot produce
    zt[1, 2:] = float("-inf")  # a fully padded stretch of one sequence (ragged batch)
    s = zs.clone().requires_grad_(True)
    per_token = losses.LOSSES[name](s, zt, y, **options(name))
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[1, 2:] = False
    assert torch.isfinite(per_token[mask]).all()
    losses.masked_mean(per_token, mask).backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[1, 2:].abs().max() == 0  # masked positions get exactly no gradient


def test_padded_vocab_rows_on_both_sides_equal_the_unpadded_loss():
    zs, zt, y = random_batch(seed=13, V=9)
    pad = torch.full(zs.shape[:-1] + (3,), float("-inf"), dtype=zs.dtype)
    for name in ("full_rkl", "full_fkl", "jsd", "topk_sg", "topk_plain", "topk_tail"):
        a = losses.LOSSES[name](zs, zt, y, **options(name))
        b = losses.LOSSES[name](torch.cat([zs, pad], -1), torch.cat([zt, pad], -1), y, **options(name))
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [K, 12])
@pytest.mark.parametrize("name", ALL)
def test_minus_inf_rows_on_both_sides_give_the_unpadded_value_and_gradient(name, k):
    # Padded vocabulary entries (-inf in the student's AND the teacher's logits, as the module
    # docstring tells users to pad): the value and the gradient on the real entries are those of
    # the unpadded vocabulary, the padded entries get exactly zero gradient, nothing is NaN. With
    # k = 12 the Top-K sets run into the padding (9 real entries).
    zs, zt, y = random_batch(seed=14, V=9)
    opts = {**options(name), **({"k": k} if name in TOPK else {})}
    pad = torch.full(zs.shape[:-1] + (3,), float("-inf"), dtype=zs.dtype)
    s_pad = torch.cat([zs, pad], -1).requires_grad_(True)
    per_token = losses.LOSSES[name](s_pad, torch.cat([zt, pad], -1), y, **opts)
    per_token.sum().backward()
    assert torch.isfinite(per_token).all() and torch.isfinite(s_pad.grad).all()
    assert s_pad.grad[..., 9:].abs().max() == 0
    s = zs.clone().requires_grad_(True)
    ref = losses.LOSSES[name](s, zt, y, **{**opts, **({"k": min(k, 9)} if name in TOPK else {})})
    ref.sum().backward()
    torch.testing.assert_close(per_token, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s_pad.grad[..., :9], s.grad, rtol=1e-10, atol=1e-10)


def test_empty_intersection_gives_zero_with_zero_finite_gradient():
    V = 12
    zs = torch.zeros(2, V, dtype=torch.float64)
    zt = torch.zeros(2, V, dtype=torch.float64)
    zs[:, :K] = torch.tensor([5.0, 4.0, 3.0, 2.0], dtype=torch.float64)  # student Top-4: ids 0-3
    zt[:, K : 2 * K] = torch.tensor([5.0, 4.0, 3.0, 2.0], dtype=torch.float64)  # teacher Top-4: ids 4-7
    zt[1, 2] = 9.0  # row 1 shares id 2: intersection of one element, KL of a point mass = 0
    s = zs.clone().requires_grad_(True)
    out = losses.topk_renorm_intersect_sg(s, zt, None, k=K)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(2, dtype=torch.float64))
    assert torch.isfinite(s.grad).all() and s.grad.abs().max() == 0
    # and a non-trivial intersection does give a non-zero gradient
    zt[0, 1] = 8.5
    zt[0, 0] = 9.0
    s = zs.clone().requires_grad_(True)
    losses.topk_renorm_intersect_sg(s, zt, None, k=K).sum().backward()
    assert s.grad[0].abs().max() > 1e-3


def test_masked_mean_ragged_all_masked_row_and_all_masked_batch():
    x = torch.arange(15, dtype=torch.float32).reshape(3, 5).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    out = losses.masked_mean(x, mask)
    assert out.item() == pytest.approx((np.mean([0, 1, 2, 3, 4]) + np.mean([5, 6])) / 2)
    out.backward()
    expected = torch.tensor([[0.1] * 5, [0.25, 0.25, 0, 0, 0], [0] * 5])  # 1/(5·2), 1/(2·2)
    torch.testing.assert_close(x.grad, expected)
    # NaN/inf at masked positions cannot leak into the value or the gradient
    y = x.detach().clone()
    y[2] = float("nan")
    y[1, 3] = float("inf")
    y.requires_grad_(True)
    out = losses.masked_mean(y, mask)
    out.backward()
    assert out.item() == pytest.approx((2.0 + 5.5) / 2) and torch.isfinite(y.grad).all()
    # nothing valid at all: 0, still differentiable, zero gradient
    z = torch.randn(2, 4, requires_grad=True)
    out = losses.masked_mean(z, torch.zeros(2, 4, dtype=torch.bool))
    assert out.item() == 0.0 and out.requires_grad
    out.backward()
    assert torch.equal(z.grad, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="shape"):
        losses.masked_mean(z, torch.ones(2, 3, dtype=torch.bool))


def test_topk_stats_against_numpy():
    zs, zt, y = random_batch(B=2, T=3, V=10, seed=14)
    st = losses.topk_stats(zs, zt, K, tokens=y)
    for b in range(2):
        for t in range(3):
            z, tt = zs[b, t].numpy(), zt[b, t].numpy()
            p, q = np_softmax(z), np_softmax(tt)
            Ks, Kt = topk_np(z, K), topk_np(tt, K)
            assert st["student_mass"][b, t].item() == pytest.approx(p[sorted(Ks)].sum(), rel=1e-10)
            assert st["teacher_mass"][b, t].item() == pytest.approx(q[sorted(Ks)].sum(), rel=1e-10)
            assert st["overlap"][b, t].item() == pytest.approx(len(Ks & Kt) / K)
            order = list(np.argsort(-tt, kind="stable"))
            rank = order.index(int(y[b, t])) + 1
            assert st["teacher_rank"][b, t].item() == (rank if rank <= K else K + 1)


def test_clear_errors_on_bad_input():
    zs, zt, y = random_batch()
    with pytest.raises(ValueError, match="differ in shape"):
        losses.full_rkl(zs, zt[..., :-1], y)
    with pytest.raises(ValueError, match="tokens"):
        losses.sampled_rkl(zs, zt, y[:, :-1])
    with pytest.raises(ValueError, match="k must be"):
        losses.topk_sg(zs, zt, y, k=0)


# -----------------------------------------------------------------------------
# losses.py stands alone


def test_losses_imports_only_torch_math_typing():
    tree = ast.parse((HERE / "losses.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"torch", "math", "typing"}, imported


def test_copied_alone_it_runs_the_mechanism_2_demonstration(tmp_path):
    shutil.copy(HERE / "losses.py", tmp_path / "losses.py")
    out = subprocess.run(
        [sys.executable, "losses.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    grad_norms = {}
    for ln in out.stdout.split("fixed point")[0].splitlines():
        parts = ln.split()
        if len(parts) >= 2 and parts[0] in losses.LOSSES:
            grad_norms[parts[0]] = float(parts[1])
    assert set(grad_norms) == set(losses.LOSSES)
    assert (
        grad_norms["topk_plain"] > 1e-2 and grad_norms["topk_sg"] < 1e-10 and grad_norms["full_rkl"] < 1e-10
    )
    fixed = out.stdout.split("fixed point")[1]
    plain = float(fixed.split("topk_plain")[1].split()[0])
    sg = float(fixed.split("topk_sg")[1].split()[0])
    assert plain == pytest.approx(1 / math.e, abs=2e-3) and sg == pytest.approx(1.0, abs=2e-3)
