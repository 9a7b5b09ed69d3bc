"""Tests for the sampler (rollout.py's generate and sample, decoder.py's forward and KV cache)
against transformers itself (its generate, its forward, its logits warpers): greedy tokens, finished
and truncated rows, left padding, shared and repeated prompts, dropping finished rows (compact),
the sampled log-probs, bf16 sampling, the sampling frequencies, and the CUDA-graph step's wiring.

Command: `pytest -q tests/test_rollout.py` (CPU, about 8 s; the tests run on one thread).

Models are tiny RANDOM transformers models of the three supported architectures, with what
default init would hide switched on: Llama with an MLP bias, grouped-query attention and
Llama-3 rotary scaling; Qwen2 with q/k/v biases, plain multi-head attention and tied embeddings;
Qwen3 with q/k norms and a head_dim different from hidden/heads. Biases and norm weights are
randomised and the init scale is large, so logits have wide gaps and a missing piece changes
greedy tokens. Scoring (rollout.score, packed.py) is checked in tests/test_score.py, which
imports these models.
"""

import copy
import math

import pytest
import torch
import transformers
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

import decoder
import rollout

V = 101  # vocabulary of the test models
ARCHS = ["llama", "qwen2", "qwen3"]
PROMPTS = [
    [5, 6, 7, 8, 9],
    [1, 2],
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13],
    [42],
    [17, 99, 23, 54, 8, 61, 2, 7],
]
PAD = 0
MAX_NEW = 12


def random_model(arch, seed=0):
    """A tiny random model whose biases and norm weights are not at their defaults."""
    common = dict(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if arch == "llama":
        rope = {
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        }
        config = transformers.LlamaConfig(
            **common,
            num_key_value_heads=2,
            head_dim=16,
            mlp_bias=True,
            tie_word_embeddings=False,
            rope_parameters=rope,
        )
        cls = transformers.LlamaForCausalLM
    elif arch == "qwen2":
        config = transformers.Qwen2Config(**common, num_key_value_heads=4, tie_word_embeddings=True)
        cls = transformers.Qwen2ForCausalLM
    else:
        config = transformers.Qwen3Config(
            **common, num_key_value_heads=2, head_dim=24, tie_word_embeddings=False
        )
        cls = transformers.Qwen3ForCausalLM
    torch.manual_seed(seed)
    model = cls(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:  # biases
                p.normal_(0.0, 0.3)
            else:
                p.normal_(0.0, 0.25)
    return model


@pytest.fixture(scope="module", params=ARCHS)
def model(request):
    return random_model(request.param)


def hf_greedy(model, prompt, eos, max_new=MAX_NEW):
    """transformers' greedy continuation of one prompt alone (no padding)."""
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new,
        eos_token_id=eos,
        pad_token_id=PAD,
    )
    return out[0, len(prompt) :].tolist()


def pick_eos(model, prompts=PROMPTS):
    """An EOS id that greedy decoding emits for the first prompt but not for some other prompt,
    so the batch holds both finished and truncated rows. Returns (eos, runs without EOS)."""
    free = [hf_greedy(model, p, eos=[V + 7]) for p in prompts]  # V+7: an id the model cannot emit
    for tok in free[0][2:]:
        if any(tok not in f for f in free[1:]):
            return tok, free
    raise AssertionError(
        "no EOS candidate gives both finished and truncated rows; change the prompts or seed"
    )


# ----------------------------------------------------------------------------------------------


def test_greedy_matches_transformers_generate_with_flags(model):
    eos, _ = pick_eos(model)
    ro = rollout.generate(model, PROMPTS, MAX_NEW, temperature=0, eos_token_ids=[eos], pad_token_id=PAD)
    finished_seen = truncated_seen = False
    for b, prompt in enumerate(PROMPTS):
        ref = hf_greedy(model, prompt, eos=[eos])
        n = int(ro.lengths[b])
        assert ro.response[b, :n].tolist() == ref, f"row {b}"
        assert (ro.response[b, n:] == PAD).all() and (ro.logp[b, n:] == 0).all()
        stopped = ref[-1] == eos
        assert bool(ro.finished[b]) == stopped and bool(ro.truncated[b]) == (not stopped)
        assert stopped or len(ref) == MAX_NEW
        finished_seen |= stopped
        truncated_seen |= not stopped
    assert finished_seen and truncated_seen  # both flags exercised
    assert ro.response.shape[1] == int(ro.lengths.max())
    assert ro.prompt_ids.shape == (len(PROMPTS), max(map(len, PROMPTS)))
    assert ro.responses()[0] == hf_greedy(model, PROMPTS[0], eos=[eos])


def test_early_exit_when_every_row_is_done(model):
    eos, free = pick_eos(model)
    first = [f[0] for f in free]  # every row's first greedy token as EOS: all stop after one token
    ro = rollout.generate(model, PROMPTS, MAX_NEW, temperature=0, eos_token_ids=first, pad_token_id=PAD)
    assert ro.response.shape[1] == 1 and ro.finished.all() and (ro.lengths == 1).all()
    assert ro.response[:, 0].tolist() == first


def test_left_padding_invariance(model):
    batch = rollout.generate(model, PROMPTS, MAX_NEW, temperature=0, eos_token_ids=[V + 7], pad_token_id=PAD)
    for b, prompt in enumerate(PROMPTS):
        alone = rollout.generate(
            model, [prompt], MAX_NEW, temperature=0, eos_token_ids=[V + 7], pad_token_id=PAD
        )
        assert alone.response[0].tolist() == batch.response[b].tolist()
        torch.testing.assert_close(alone.logp[0], batch.logp[b], rtol=0, atol=1e-4)


PREFIXED = [[7, 8, 9, 10, 11] + p for p in PROMPTS]  # every prompt opens with the same five tokens


def test_prompts_with_a_shared_prefix_give_transformers_greedy(model):
    """The tokens every prompt starts with are prefilled once and copied into each row's cache:
    each row's greedy continuation is still transformers' for that prompt alone, and its
    log-probs are score's."""
    assert decoder.shared_prefix(PREFIXED) == 5
    eos, _ = pick_eos(model, PREFIXED)
    ro = rollout.generate(model, PREFIXED, MAX_NEW, temperature=0, eos_token_ids=[eos], pad_token_id=PAD)
    for b, prompt in enumerate(PREFIXED):
        assert ro.responses()[b] == hf_greedy(model, prompt, eos=[eos]), f"row {b}"
    left_padded = rollout.left_pad(PREFIXED, PAD, "cpu")[0]
    assert ro.prompt_ids.tolist() == left_padded.tolist()  # the record stays left-padded
    logp, _ = rollout.score(model, PREFIXED, ro.responses(), return_logits=False)
    torch.testing.assert_close(logp, ro.logp, rtol=0, atol=1e-4)


@pytest.mark.parametrize("prompts", [PROMPTS, PREFIXED], ids=["no shared prefix", "shared prefix"])
def test_repeated_prompts_are_prefilled_once_and_each_row_is_its_prompts(model, prompts):
    """G samples of each prompt (GRPO's rows, here not even consecutive): each distinct prompt is
    prefilled once and its cache copied into its rows; greedy rows are still transformers' for
    their prompt alone, and sampled rows' log-probs are score's for their prompt."""
    rows = [prompts[i] for i in (0, 1, 0, 2, 1, 0, 3, 2)]
    eos, _ = pick_eos(model, prompts)
    greedy = rollout.generate(model, rows, MAX_NEW, temperature=0, eos_token_ids=[eos], pad_token_id=PAD)
    for b, prompt in enumerate(rows):
        assert greedy.responses()[b] == hf_greedy(model, prompt, eos=[eos]), f"row {b}"
    sampled = rollout.generate(
        model,
        rows,
        MAX_NEW,
        eos_token_ids=[eos],
        pad_token_id=PAD,
        generator=torch.Generator().manual_seed(4),
    )
    assert len({tuple(r) for r in sampled.responses()}) > len(prompts)  # copies of a prompt drew apart
    logp, _ = rollout.score(model, rows, sampled.responses(), return_logits=False)
    torch.testing.assert_close(logp, sampled.logp, rtol=0, atol=1e-4)


@pytest.mark.parametrize("check_every", [1, 4])
def test_dropping_finished_rows_changes_no_row(model, monkeypatch, check_every):
    """compact=True decodes only the rows still going once a quarter of the batch has finished;
    every row gets the tokens (same uniforms) and log-probs it gets with the whole batch, whether
    the finished rows are looked at every step (CPU) or every few (as on CUDA)."""
    monkeypatch.setitem(rollout.CHECK_EVERY, "cpu", check_every)
    prompts = [[(7 * i + 3 * j) % 90 + 1 for j in range(1 + i % 6)] for i in range(16)]
    assert decoder.shared_prefix(prompts) == 0  # every forward below is the whole batch or its decoded rows
    kw = dict(pad_token_id=PAD)
    free = rollout.generate(
        model, prompts, MAX_NEW, eos_token_ids=[V + 7], generator=torch.Generator().manual_seed(4), **kw
    )
    # the 8 most frequent ids as EOS: rows end at many steps
    eos = torch.bincount(free.response.flatten(), minlength=V).topk(8).indices.tolist()
    batch_sizes, forward = [], decoder.forward

    def counting(W, ids, *args, **kwargs):
        batch_sizes.append(ids.shape[0])
        return forward(W, ids, *args, **kwargs)

    monkeypatch.setattr(decoder, "forward", counting)
    runs = {}
    for compact in (True, False):
        batch_sizes.clear()
        runs[compact] = rollout.generate(
            model,
            prompts,
            MAX_NEW,
            eos_token_ids=eos,
            compact=compact,
            generator=torch.Generator().manual_seed(5),
            **kw,
        )
        runs[compact].batch_sizes = list(batch_sizes)
    on, off = runs[True], runs[False]
    assert min(on.batch_sizes) < 16 and set(off.batch_sizes) == {16}  # rows dropped, and only with compact
    assert 0 < int(off.finished.sum()) < 16
    assert on.response.tolist() == off.response.tolist()
    assert torch.equal(on.finished, off.finished) and torch.equal(on.lengths, off.lengths)
    for name in ("logp", "logp_sampling"):
        torch.testing.assert_close(getattr(on, name), getattr(off, name), rtol=0, atol=1e-5)


def hf_logits_per_row(model, ro):
    """transformers' forward over each prompt + response alone -> list of (n_b, V) logits that
    predict the response."""
    out = []
    for prompt, resp in zip(PROMPTS, ro.responses()):
        ids = torch.tensor([prompt + resp])
        with torch.no_grad():
            logits = model(ids).logits[0].float()  # (len, V)
        out.append(logits[len(prompt) - 1 : len(prompt) - 1 + len(resp)])
    return out


def test_logp_matches_transformers_forward(model):
    temperature, top_k, top_p = 0.8, 20, 0.9
    gen = torch.Generator().manual_seed(1)
    ro = rollout.generate(
        model,
        PROMPTS,
        MAX_NEW,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_token_ids=[V + 7],
        pad_token_id=PAD,
        generator=gen,
    )
    assert ro.logp.dtype == torch.float32 and ro.logp_sampling.dtype == torch.float32
    for b, logits in enumerate(hf_logits_per_row(model, ro)):
        n = logits.shape[0]
        tokens = ro.response[b, :n]
        ref_logp = logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
        torch.testing.assert_close(ro.logp[b, :n], ref_logp, rtol=0, atol=1e-4)
        # the warped distribution, built with transformers' own warpers in generate's order
        warped = logits
        warpers = (TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k), TopPLogitsWarper(top_p))
        for warper in warpers:
            warped = warper(None, warped)
        ref_logp_s = warped.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
        assert torch.isfinite(ref_logp_s).all()  # every sampled token lies inside the warped support
        torch.testing.assert_close(ro.logp_sampling[b, :n], ref_logp_s, rtol=0, atol=1e-4)


def test_sampling_in_bf16_from_float32_weights_is_sampling_the_bf16_model(model):
    """generate(dtype=torch.bfloat16) on a float32 model: the tokens and log-probs of the same
    model converted to bf16, its log-probs close to transformers' forward of that bf16 model, and
    the float32 weights untouched; after the weights change, the next call samples the new ones."""
    kw = dict(eos_token_ids=[V + 7], pad_token_id=PAD)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        bf16 = copy.deepcopy(model)
        for p in bf16.parameters():  # the weights in bf16 (the rotary frequencies stay float32, as loaded)
            p.data = p.data.to(torch.bfloat16)
        ro = rollout.generate(
            model, PROMPTS, MAX_NEW, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(3), **kw
        )
        ref = rollout.generate(bf16, PROMPTS, MAX_NEW, generator=torch.Generator().manual_seed(3), **kw)
        assert torch.equal(ro.response, ref.response) and torch.equal(ro.logp, ref.logp)
        assert torch.equal(ro.logp_sampling, ref.logp_sampling)
        for b, logits in enumerate(hf_logits_per_row(bf16, ro)):
            n = logits.shape[0]
            hf_logp = logits.log_softmax(-1).gather(-1, ro.response[b, :n, None]).squeeze(-1)
            # bf16 rounding, in another order of operations
            torch.testing.assert_close(ro.logp[b, :n], hf_logp, rtol=0.05, atol=0.05)
        fp32 = rollout.generate(model, PROMPTS, MAX_NEW, generator=torch.Generator().manual_seed(3), **kw)
        assert not torch.equal(fp32.logp, ro.logp)  # the bf16 copy computed, not the float32 weights
        for k, v in model.state_dict().items():
            assert v.dtype == torch.float32 and torch.equal(v, before[k]), k
        with torch.no_grad():  # an "optimizer step": the next rollout must sample the changed weights
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="floating-point"):
        rollout.generate(model, PROMPTS, 2, dtype=torch.int8, **kw)


# ---- sampling statistics ---------------------------------------------------------------------
# A chi-square goodness-of-fit test at p < 1e-4: a correct sampler fails it with probability 1e-4
# per seed (the seeds are fixed, so the tests are deterministic). Categories expected to hold
# fewer than 5 draws are pooled; categories the warped distribution excludes must hold none.


def chi_square_pvalue(counts, probs):
    n = counts.sum()
    expected = probs.double() * n
    support = probs > 0
    assert counts[~support].sum() == 0, f"tokens outside the top-k/top-p support drawn: {counts[~support]}"
    big = support & (expected >= 5)
    obs = torch.cat([counts[big].double(), counts[support & ~big].double().sum()[None]])
    exp = torch.cat([expected[big], expected[support & ~big].sum()[None]])
    if exp[-1] == 0:
        obs, exp = obs[:-1], exp[:-1]
    stat = ((obs - exp) ** 2 / exp).sum()
    dof = len(exp) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64), stat / 2))


def warped_probs(logits, temperature, top_k, top_p):
    x = logits[None].clone()
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    for w in warpers:
        x = w(None, x)
    return x.softmax(-1)[0]


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 6, 1.0), (1.3, 0, 0.8), (0.9, 7, 0.85)]
)
def test_sample_frequencies(temperature, top_k, top_p):
    logits = torch.tensor([2.0, 1.5, 1.1, 0.9, 0.3, 0.0, -0.4, -1.0, -1.7, -3.0])
    n = 40_000
    tokens, logp_s = rollout.sample(
        logits.expand(n, -1).contiguous(), temperature, top_k, top_p, torch.Generator().manual_seed(7)
    )
    probs = warped_probs(logits, temperature, top_k, top_p)
    counts = torch.bincount(tokens, minlength=len(logits))
    assert chi_square_pvalue(counts, probs) > 1e-4
    torch.testing.assert_close(logp_s, probs.log()[tokens], rtol=0, atol=1e-5)


def test_draw_is_the_exact_inverse_cdf_at_the_qwen_vocabulary():
    # Half the mass on one id, the other half spread over 151,935 tail ids (~3.3e-6 each). Each
    # draw must be the id that inverts the exact CDF (numpy, float64) at the same uniform: a
    # CDF kept in float32 (resolution ~6e-8 near 1) misplaces a few percent of the tail draws.
    import numpy as np

    V, n = 151_936, 256
    logits = torch.zeros(n, V)
    logits[:, 0] = math.log(V - 1)
    gen = torch.Generator().manual_seed(5)
    u = torch.rand(n, 1, generator=torch.Generator().manual_seed(5)).double().numpy()[:, 0]
    tokens, _ = rollout.sample(logits, 1.0, 0, 1.0, gen)
    e = np.exp(logits[0].double().numpy() - logits[0].max().item())
    cdf = np.cumsum(e)
    expected = np.searchsorted(cdf, u * cdf[-1], side="right")
    assert (expected > 0).sum() > n // 4  # many draws land in the tail
    assert tokens.tolist() == expected.tolist()


def test_first_token_frequencies_of_generate():
    model = random_model("qwen3", seed=3)
    with torch.no_grad():
        model.lm_head.weight.mul_(0.3)  # a flatter distribution: many tokens in play
        logits = model(torch.tensor([PROMPTS[0]])).logits[0, -1].float()
    temperature, top_p = 1.2, 0.9
    n = 3000
    gen = torch.Generator().manual_seed(11)
    ro = rollout.generate(
        model,
        [PROMPTS[0]] * n,
        1,
        temperature=temperature,
        top_p=top_p,
        eos_token_ids=[V + 7],
        pad_token_id=PAD,
        generator=gen,
    )
    probs = warped_probs(logits, temperature, 0, top_p)
    assert (probs > 0).sum() > 20  # the test has many categories to get wrong
    counts = torch.bincount(ro.response[:, 0], minlength=V)
    assert chi_square_pvalue(counts, probs) > 1e-4


def test_greedy_sample_is_argmax_with_zero_logp():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    tokens, logp_s = rollout.sample(logits, 0.0, 0, 1.0, None)
    assert tokens.tolist() == logits.argmax(-1).tolist() and (logp_s == 0).all()


def test_same_seed_same_output():
    model = random_model("qwen3")
    kw = dict(temperature=1.0, eos_token_ids=[V + 7], pad_token_id=PAD)
    a = rollout.generate(model, PROMPTS, MAX_NEW, generator=torch.Generator().manual_seed(5), **kw)
    b = rollout.generate(model, PROMPTS, MAX_NEW, generator=torch.Generator().manual_seed(5), **kw)
    c = rollout.generate(model, PROMPTS, MAX_NEW, generator=torch.Generator().manual_seed(6), **kw)
    assert torch.equal(a.response, b.response) and torch.equal(a.logp, b.logp)
    assert not torch.equal(a.response, c.response)


# ---- errors ----------------------------------------------------------------------------------


def test_unsupported_architecture_is_named():
    gpt2_config = transformers.GPT2Config(vocab_size=V, n_embd=32, n_layer=1, n_head=2)
    gpt2 = transformers.GPT2LMHeadModel(gpt2_config).eval()
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        rollout.generate(gpt2, PROMPTS, 4, eos_token_ids=[1], pad_token_id=PAD)


def test_bad_arguments_raise():
    model = random_model("qwen3")
    with pytest.raises(ValueError, match="CUDA"):
        rollout.generate(model, PROMPTS, 4, eos_token_ids=[1], pad_token_id=PAD, cuda_graph=True)
    with pytest.raises(ValueError, match="at least one token"):
        rollout.generate(model, [[1], []], 4, eos_token_ids=[1], pad_token_id=PAD)
    with pytest.raises(ValueError, match="top_p"):
        rollout.generate(model, PROMPTS, 4, top_p=0.0, eos_token_ids=[1], pad_token_id=PAD)


def test_static_shape_decode_step_equals_the_sliced_one(model):
    """The CUDA-graph step's arithmetic on CPU: the slot as a (1,) tensor written with index_copy_,
    attention over the whole preallocated cache with an additive mask, against the plain step
    over the cache prefix. (Graph capture itself needs a GPU.)"""
    prompt_ids, prompt_mask = rollout.left_pad(PROMPTS, PAD, "cpu")
    B, P = prompt_ids.shape
    S_max, D = P + 4, model.model.layers[0].self_attn.head_dim
    W = decoder.weights(model)
    layers = W.layers
    cos_t, sin_t = decoder.rope_tables(model, S_max, torch.float32, "cpu")
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)
    causal, eye = torch.ones(P, P, dtype=torch.bool).tril(), torch.eye(P, dtype=torch.bool)
    mask = (prompt_mask[:, None, None, :] & causal) | eye
    caches = []
    for _ in range(2):
        cache = decoder.KVCache(
            len(layers), B, model.config.num_key_value_heads, S_max, D, torch.float32, "cpu"
        )
        with torch.no_grad():
            decoder.forward(W, prompt_ids, cos_t[positions], sin_t[positions], cache, 0, P, mask)
        caches.append(cache)
    tok = torch.tensor([[7], [8], [9], [10], [11]])
    pos = prompt_mask.sum(-1)  # each row's next rotary position
    bias = torch.full((B, 1, S_max), float("-inf"))
    bias[:, 0, :P].masked_fill_(prompt_mask, 0.0)
    bias[:, :, P] = 0.0
    with torch.no_grad():
        sliced = decoder.forward(
            W, tok, cos_t[pos][:, None], sin_t[pos][:, None], caches[0], P, P + 1, bias[:, :, : P + 1]
        )
        static = decoder.forward(
            W, tok, cos_t[pos][:, None], sin_t[pos][:, None], caches[1], torch.tensor([P]), S_max, bias
        )
    torch.testing.assert_close(static, sliced, rtol=0, atol=1e-5)
    torch.testing.assert_close(caches[1].kt[..., : P + 1], caches[0].kt[..., : P + 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(
        caches[1].v[:, :, :, : P + 1], caches[0].v[:, :, :, : P + 1], rtol=0, atol=1e-5
    )


class _Uncaptured(rollout._CudaGraphDecode):
    """The CUDA-graph decode step without the capture: its static buffers and step, run eagerly."""

    def __call__(self, tok, slot, pos):
        self.tok.copy_(tok[:, None])
        self.slot.fill_(slot)
        self.pos.copy_(pos)
        return self._step()


def test_cuda_graph_step_gives_the_eager_steps_tokens(model):
    """decode_step through _CudaGraphDecode's static buffers (the step the graph captures, here not
    captured: capture needs a GPU) against the eager decode_step: the same greedy tokens, logits
    equal up to float rounding."""
    W = decoder.weights(model)
    runs = []
    for graph in (False, True):
        s, logits = rollout.prefill(model, W, PREFIXED + [PREFIXED[1]], 6, PAD)  # a shared prefix, a repeat
        if graph:
            s.graph = _Uncaptured(s)
        steps = [logits]
        for t in range(5):
            steps.append(rollout.decode_step(s, steps[-1].argmax(-1), t))
        runs.append(torch.stack(steps))  # (6, B, V)
    assert torch.equal(runs[0].argmax(-1), runs[1].argmax(-1))
    torch.testing.assert_close(runs[1], runs[0], rtol=0, atol=1e-4)
