"""Tests for rollout.score and packed.py (the packed scoring forward, score's impl="ours") against
transformers itself: each (context, response) pair alone through the model's own forward
(impl="transformers"), logits, log-probs, hidden states and weight gradients; contexts with a
shared prefix or repeated contexts; the separate (GPU) weight layout against the fused one; and
the fallbacks to the model's forward (activation checkpointing, a projection that is not a plain
linear layer).

Command: `pytest -q tests/test_score.py` (CPU, a few seconds; the tests run on one thread).

The models are test_rollout.py's tiny RANDOM transformers models of the three supported
architectures (`random_model`: biases, norm weights and rotary scaling away from their defaults).
"""

import pytest
import torch
import transformers

import decoder
import models
import rollout
from test_rollout import ARCHS, MAX_NEW, PAD, PROMPTS, V, random_model


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return random_model(request.param)


# ---- scoring under another context -----------------------------------------------------------


@pytest.mark.parametrize("impl", ["ours", "transformers"])
def test_score_equals_each_pair_alone(model, impl):
    contexts = [[3, 4, 5], [9, 8, 7, 6, 5, 4, 3, 2, 1], [50], [60, 61, 62, 63, 64]]
    responses = [[10, 11, 12, 13], [], [20, 21, 22, 23, 24, 25, 26], [30]]
    logits, mask = rollout.score(model, contexts, responses, impl=impl)
    logp, mask2 = rollout.score(model, contexts, responses, return_logits=False, impl=impl)
    T = max(map(len, responses))
    assert logits.shape == (4, T, V) and mask.shape == (4, T) and torch.equal(mask, mask2)
    for b, (c, r) in enumerate(zip(contexts, responses)):
        assert mask[b].tolist() == [t < len(r) for t in range(T)]
        if not r:
            continue
        with torch.no_grad():
            ref = model(torch.tensor([c + r])).logits[0, len(c) - 1 : len(c) - 1 + len(r)]  # (n, V)
        torch.testing.assert_close(logits[b, : len(r)], ref, rtol=0, atol=1e-4)
        ref_lp = ref.float().log_softmax(-1).gather(-1, torch.tensor(r)[:, None]).squeeze(-1)
        torch.testing.assert_close(logp[b, : len(r)], ref_lp, rtol=0, atol=1e-4)
    assert (logp[~mask] == 0).all()


SHARED = [7, 8, 9, 10, 11]  # a prefix every context starts with (a chat template's opening, a shared rule)
PREFIX_CASES = {
    "shared prefix, tails of several lengths": (
        [SHARED + [3, 4], SHARED + [9, 8, 7, 6, 5], SHARED + [50]],
        [[10, 11, 12], [20], [30, 31, 32, 33, 34]],
    ),
    "a context that is the prefix plus one token": (
        [SHARED + [1], SHARED + [1, 2, 3], SHARED + [1, 2]],
        [[40, 41], [42, 43, 44], []],
    ),
    "identical contexts": ([SHARED + [6]] * 3, [[60], [61, 62], [63, 64, 65]]),
    "contexts that are the prefix alone": ([SHARED, SHARED + [12, 13]], [[70, 71], [72]]),
    "no response at all": ([SHARED + [2], SHARED + [3, 4]], [[], []]),
    # contexts that repeat (GRPO's G samples of a prompt): their middles run once per distinct context
    "repeated contexts after the prefix": (
        [SHARED + [3, 4, 5]] * 3 + [SHARED + [9, 8]] * 2 + [SHARED + [1]],
        [[10, 11], [12], [13, 14, 15], [], [16, 17], [18, 19]],
    ),
    "repeated contexts, no shared prefix": (
        [[3, 4, 5]] * 2 + [[9, 8, 7, 6]] * 2 + [[4]],
        [[20, 21, 22], [23], [24, 25], [26], [27, 28]],
    ),
}


@pytest.mark.parametrize("case", PREFIX_CASES)
def test_score_with_a_shared_prefix_equals_each_pair_alone(model, case):
    """The packed forward computes the contexts' shared prefix once: every row still equals that
    pair alone through the model's own forward, whatever the prefix leaves of each context."""
    contexts, responses = PREFIX_CASES[case]
    c = decoder.shared_prefix(contexts)
    prefixed = all(x[:5] == SHARED for x in contexts)
    assert c == (min(len(SHARED), min(map(len, contexts)) - 1) if prefixed else 0)
    logits, mask = rollout.score(model, contexts, responses, impl="ours")
    T = max(map(len, responses))
    assert logits.shape == (len(contexts), T, V)
    for b, (x, r) in enumerate(zip(contexts, responses)):
        assert mask[b].tolist() == [t < len(r) for t in range(T)]
        if r:
            with torch.no_grad():
                ref = model(torch.tensor([x + r])).logits[0, len(x) - 1 : len(x) - 1 + len(r)]
            torch.testing.assert_close(logits[b, : len(r)], ref, rtol=0, atol=1e-4)


def test_shared_prefix_length():
    assert decoder.shared_prefix([[1, 2, 3]]) == 0  # one row: nothing to share
    assert decoder.shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert decoder.shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2  # each row keeps its last context token
    assert decoder.shared_prefix([[4, 2], [1, 2]]) == 0
    assert decoder.shared_prefix([[1], [1, 2]]) == 0


GRADIENT_CASES = [
    "shared prefix, tails of several lengths",
    "repeated contexts after the prefix",
    "repeated contexts, no shared prefix",
]


@pytest.mark.parametrize("case", GRADIENT_CASES)
def test_score_gradients_with_a_shared_prefix_equal_the_transformers_forward(model, case):
    """Every row's gradient flows back through the prefix (and the repeated context) it shares: the
    packed forward's weight gradients equal the padded batch through the model's own forward."""
    contexts, responses = PREFIX_CASES[case]
    w = torch.randn(len(contexts), max(map(len, responses)), V, generator=torch.Generator().manual_seed(6))
    grads = {}
    for impl in ("ours", "transformers"):
        model.zero_grad(set_to_none=True)
        logits, mask = rollout.score(model, contexts, responses, impl=impl)
        (logits * w).sum(-1)[mask].sum().backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["ours"].keys() == grads["transformers"].keys()
    for n, g in grads["transformers"].items():  # float32 rounding relative to each tensor's scale
        torch.testing.assert_close(grads["ours"][n], g, rtol=1e-4, atol=1e-5 * g.abs().max().item(), msg=n)
    model.zero_grad(set_to_none=True)


def test_score_carries_gradients_and_matches_rollout_logp():
    model = random_model("qwen2")
    ro = rollout.generate(
        model,
        PROMPTS,
        MAX_NEW,
        eos_token_ids=[V + 7],
        pad_token_id=PAD,
        generator=torch.Generator().manual_seed(2),
    )
    logp, mask = rollout.score(model, PROMPTS, ro.responses(), return_logits=False)
    torch.testing.assert_close(logp, ro.logp, rtol=0, atol=1e-4)  # the sampler's numbers are the trainer's
    (logp * mask).sum().backward()
    grad = model.model.layers[0].self_attn.q_proj.bias.grad
    assert grad is not None and grad.abs().sum() > 0


def test_score_gradients_equal_the_transformers_forward(model):
    """The written-out forward (fused q/k/v and gate/up copies) passes every weight the gradient
    the model's own forward gives it, hidden-state output included."""
    contexts, responses = [[3, 4, 5], [9, 8, 7, 6, 5], [50]], [[10, 11, 12, 13], [20, 21], [30, 31, 32]]
    w = torch.randn(3, 4, V, generator=torch.Generator().manual_seed(5))
    grads = {}
    for impl in ("ours", "transformers"):
        model.zero_grad(set_to_none=True)
        logits, mask = rollout.score(model, contexts, responses, impl=impl)
        hidden, _ = rollout.score(model, contexts, responses, impl=impl, return_hidden=True)
        ((logits * w).sum(-1)[mask].sum() + hidden[mask].pow(2).sum()).backward()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["ours"].keys() == grads["transformers"].keys()
    assert len(grads["ours"]) == len(list(model.parameters()))
    for n, g in grads["transformers"].items():
        torch.testing.assert_close(grads["ours"][n], g, rtol=1e-4, atol=1e-4, msg=n)
    model.zero_grad(set_to_none=True)


def test_separate_weights_give_what_fused_weights_give(model, monkeypatch):
    """The GPU layout (the model's own q/k/v and gate/up tensors, no fused copies) on CPU: the
    sampler's greedy rollout and the scores equal the fused layout's."""
    ro = rollout.generate(model, PROMPTS, MAX_NEW, temperature=0, eos_token_ids=[V + 7], pad_token_id=PAD)
    logits, _ = rollout.score(model, PROMPTS, ro.responses(), impl="ours")
    fused = decoder.layer_weights
    monkeypatch.setattr(decoder, "layer_weights", lambda m, fuse=None: fused(m, fuse=False))
    assert len(decoder.layer_weights(model)[0].qkv) == 3
    ro2 = rollout.generate(model, PROMPTS, MAX_NEW, temperature=0, eos_token_ids=[V + 7], pad_token_id=PAD)
    assert torch.equal(ro.response, ro2.response)
    torch.testing.assert_close(ro2.logp, ro.logp, rtol=0, atol=1e-5)
    logits2, _ = rollout.score(model, PROMPTS, ro.responses(), impl="ours")
    torch.testing.assert_close(logits2, logits, rtol=0, atol=1e-5)


def test_score_falls_back_to_the_model_forward_under_activation_checkpointing():
    model = random_model("qwen3")
    assert decoder.writes_out(model)
    model.activation_checkpointing_enable()
    assert not decoder.writes_out(model)  # the written-out forward would skip the checkpointing
    with pytest.raises(ValueError, match="activation checkpointing"):
        rollout.score(model, [[1]], [[2]], impl="ours")
    gpt2_config = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=2)
    gpt2 = transformers.GPT2LMHeadModel(gpt2_config).eval()
    assert not decoder.writes_out(gpt2)
    with pytest.raises(ValueError, match="impl"):
        rollout.score(model, [[1]], [[2]], impl="fast")


class ScaledLinear(torch.nn.Linear):
    """A projection that is not a plain linear layer (as a LoRA adapter or a quantised layer is)."""

    def forward(self, x):
        return 2 * super().forward(x)


def test_a_projection_that_is_not_a_plain_linear_is_refused_or_left_to_the_model():
    model = random_model("qwen3")
    q = model.model.layers[1].self_attn.q_proj
    swapped = ScaledLinear(q.in_features, q.out_features, bias=False)
    swapped.load_state_dict(q.state_dict())
    model.model.layers[1].self_attn.q_proj = swapped
    with pytest.raises(ValueError, match="layer 1's q_proj is a ScaledLinear"):
        rollout.generate(model, PROMPTS, 4, eos_token_ids=[1], pad_token_id=PAD)
    assert not decoder.writes_out(model)
    logits, _ = rollout.score(model, [[3, 4, 5]], [[6, 7]])  # auto: the model's own forward, adapter included
    with torch.no_grad():
        ref = model(torch.tensor([[3, 4, 5, 6, 7]])).logits[0, 2:4]
    torch.testing.assert_close(logits[0], ref, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="ScaledLinear"):
        rollout.score(model, [[3, 4, 5]], [[6, 7]], impl="ours")


def test_score_hidden_states_times_the_head_are_the_logits():
    torch.manual_seed(0)
    model = models.build_tiny(seed=3)
    contexts = [[257, 10, 11, 12], [257, 13]]
    responses = [[40, 41, 42], [43]]
    logits, mask = rollout.score(model, contexts, responses)
    hidden, mask_h = rollout.score(model, contexts, responses, return_hidden=True)
    assert torch.equal(mask, mask_h) and hidden.shape[:2] == logits.shape[:2]
    torch.testing.assert_close(hidden @ model.lm_head.weight.T, logits, rtol=1e-5, atol=1e-5)
