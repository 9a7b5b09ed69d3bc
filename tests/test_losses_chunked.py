"""losses.chunked_loss (paper scale): the loss from final hidden states and the output
layers, a chunk of tokens at a time, never making the (N, V) logits of the whole batch.

Reference: the materialised loss of losses.LOSSES on hidden @ W.T, reduced by masked_mean. The
chunked one must equal it in value, per-token values and gradients (float64, any chunk size, ragged
masks, an all-masked row), in bf16 to bf16 rounding, and under an upstream scale; the teacher's
tensors never receive a gradient. Run: `.venv/bin/python -m pytest -q tests/test_losses_chunked.py`.
"""

import pytest
import torch

import losses
from test_losses import ALL, options


def _hidden_batch(B=3, T=7, H=6, Ht=5, V=17, seed=20, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    h_s = torch.randn(B, T, H, generator=g, dtype=dtype)
    W_s = torch.randn(V, H, generator=g, dtype=dtype)
    h_t = torch.randn(B, T, Ht, generator=g, dtype=dtype)
    W_t = torch.randn(V, Ht, generator=g, dtype=dtype)
    y = torch.randint(0, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 4:] = False  # ragged
    mask[2] = False  # a row with no valid token
    return h_s, W_s, h_t, W_t, y, mask


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("chunk_size", [1, 3, 64])
def test_chunked_loss_equals_materialised_in_value_and_gradient(name, chunk_size):
    h_s, W_s, h_t, W_t, y, mask = _hidden_batch()
    opts = options(name)
    if name == "sampled_rkl":  # a per-position tensor option is sliced with the tokens
        opts = {"old_logp": torch.log_softmax(h_s @ W_s.T, -1).gather(-1, y[..., None])[..., 0] - 0.1}
    a = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    ref = losses.masked_mean(losses.LOSSES[name](a[0] @ a[1].T, h_t @ W_t.T, y, **opts), mask)
    ref.backward()
    b = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    t = [x.clone().requires_grad_(True) for x in (h_t, W_t)]
    loss, per_token = losses.chunked_loss(
        name, b[0], b[1], t[0], t[1], y, mask, chunk_size=chunk_size, **opts
    )
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(b[0].grad, a[0].grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b[1].grad, a[1].grad, rtol=1e-10, atol=1e-12)
    assert t[0].grad is None and t[1].grad is None  # the teacher is never differentiated
    expected_tok = losses.LOSSES[name](h_s @ W_s.T, h_t @ W_t.T, y, **opts).masked_fill(~mask, 0)
    torch.testing.assert_close(per_token, expected_tok, rtol=1e-12, atol=1e-12)
    assert b[0].grad[2].abs().max() == 0 and a[0].grad[0].abs().max() > 0


def test_chunked_loss_bf16_matches_materialised_bf16():
    h_s, W_s, h_t, W_t, y, mask = _hidden_batch(H=32, Ht=24, V=300, dtype=torch.float32)
    h_s, W_s, h_t, W_t = (x.bfloat16() for x in (h_s, W_s, h_t, W_t))
    a = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    ref = losses.masked_mean(losses.topk_sg(a[0] @ a[1].T, h_t @ W_t.T, y, k=20), mask)
    ref.backward()
    b = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    loss, _ = losses.chunked_loss("topk_sg", b[0], b[1], h_t, W_t, y, mask, chunk_size=4, k=20)
    loss.backward()
    assert loss.dtype == torch.float32 and b[1].grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    for got, want in ((b[0].grad, a[0].grad), (b[1].grad, a[1].grad)):
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-3)


def test_chunked_loss_rejects_mismatched_inputs():
    h_s, W_s, h_t, W_t, y, mask = _hidden_batch()
    with pytest.raises(ValueError, match="vocabularies"):
        losses.chunked_loss("full_rkl", h_s, W_s, h_t, W_t[:-1], y, mask)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.chunked_loss("rkl", h_s, W_s, h_t, W_t, y, mask)


def test_chunked_loss_scales_by_the_upstream_gradient():
    h_s, W_s, h_t, W_t, y, mask = _hidden_batch()
    a = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    (3.0 * losses.masked_mean(losses.full_rkl(a[0] @ a[1].T, h_t @ W_t.T, y), mask)).backward()
    b = [x.clone().requires_grad_(True) for x in (h_s, W_s)]
    loss, _ = losses.chunked_loss("full_rkl", b[0], b[1], h_t, W_t, y, mask, chunk_size=2)
    (3.0 * loss).backward()
    torch.testing.assert_close(b[0].grad, a[0].grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(b[1].grad, a[1].grad, rtol=1e-10, atol=1e-12)
