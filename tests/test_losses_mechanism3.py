"""Mechanism 3 (docs/paper.md §4, §5) in closed form: losses.geometric_mean_teacher.

A student that never sees the privileged information (PI) and is trained by reverse KL against
PI-conditioned teachers q_i (weights w_i) can at best reach argmin_p Σ_i w_i KL(p‖q_i), which is the
normalised geometric mean Π q_i^{w_i} / Z, with −log Z ≥ 0 left over (zero when the teachers
agree, as with a shared rule). Forward KL would pick the mixture Σ w_i q_i instead. The reference is
an independent argmin: free student logits descended by Adam in float64.
Run: `.venv/bin/python -m pytest -q tests/test_losses_mechanism3.py`.
"""

import pytest
import torch

import losses


def _descend(objective, V, steps=4000, seed=0):
    """Free student logits minimising objective(log p) by Adam, float64: an independent argmin."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(V, generator=g, dtype=torch.float64).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for i in range(steps):
        if i == steps // 2:
            opt.param_groups[0]["lr"] = 0.005
        opt.zero_grad()
        objective(torch.log_softmax(z, -1)).backward()
        opt.step()
    logp = torch.log_softmax(z.detach(), -1)
    return logp, objective(logp).item()


def _kl(logp, logq):  # KL(p‖q) over the last axis
    return (logp.exp() * (logp - logq)).sum(-1)


def test_geometric_mean_is_the_argmin_of_the_pi_averaged_reverse_kl():
    torch.manual_seed(0)
    m, V = 4, 12
    t = 2.0 * torch.randn(m, V, dtype=torch.float64)
    w = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    log_g, log_z = losses.geometric_mean_teacher(t, w)
    logq = torch.log_softmax(t, -1)
    objective = lambda logp: (w * _kl(logp[None], logq)).sum()
    logp, best = _descend(objective, V)
    torch.testing.assert_close(logp.exp(), log_g.exp(), atol=1e-6, rtol=0)
    # disagreeing teachers: a floor
    assert best == pytest.approx(-log_z.item(), abs=1e-9) and -log_z.item() > 0.1
    # the identity behind it holds for any student, not just at the optimum
    for seed in range(3):
        lp = torch.log_softmax(
            torch.randn(V, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)), -1
        )
        assert objective(lp).item() == pytest.approx((_kl(lp, log_g) - log_z).item(), abs=1e-12)


def test_agreeing_teachers_leave_nothing_irreducible_and_batch_shapes_work():
    t = torch.randn(3, 5, 7, dtype=torch.float64)  # 3 different teachers at 5 states
    same = t[:1].expand(3, 5, 7)  # one shared rule: every PI value gives the same teacher
    log_g, log_z = losses.geometric_mean_teacher(same)
    torch.testing.assert_close(log_g, torch.log_softmax(t[0], -1))
    assert log_z.shape == (5,) and log_z.abs().max() < 1e-12
    log_g, log_z = losses.geometric_mean_teacher(t)  # uniform weights by default
    assert log_g.shape == (5, 7) and (log_z < 0).all()
    torch.testing.assert_close(log_g.exp().sum(-1), torch.ones(5, dtype=torch.float64))
    expect = torch.log_softmax(torch.log_softmax(t, -1).mean(0), -1)
    torch.testing.assert_close(log_g, expect)


def test_forward_kl_is_minimised_by_the_mixture_not_the_geometric_mean():
    torch.manual_seed(1)
    t = 2.0 * torch.randn(3, 9, dtype=torch.float64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.softmax(t, -1)
    logp, _ = _descend(lambda logp: (w[:, None] * q * (torch.log(q) - logp[None])).sum(), 9)
    torch.testing.assert_close(logp.exp(), (w[:, None] * q).sum(0), atol=1e-6, rtol=0)
    log_g, _ = losses.geometric_mean_teacher(t, w)
    assert (logp.exp() - log_g.exp()).abs().max() > 0.02
