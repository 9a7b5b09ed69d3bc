"""The student writing trajectories, and any model scoring them: a hand-written batched sampler.

What this file is
    `generate()` samples one response per prompt for a batch of prompts of different lengths,
    with a preallocated KV cache and a decoder forward written out over the weights of a
    transformers Llama / Qwen2 / Qwen3 model (no copies: what the optimizer changes, the sampler
    sees). It returns a `Rollout`: ids, masks, each sampled token's log-prob under the model
    (T=1) and under the distribution actually sampled from, EOS/truncation flags and, if asked,
    the student's top-K. `sample()` is the pure sampling function (temperature, top-k, top-p).
    `score()` runs any model's own transformers forward over context + response and returns the
    logits that predict each response token, aligned token for token with the responses: the
    teacher in OPD (context = the student prompt), the teacher in OPSD (context = prompt +
    privileged information), and the student's training forward (with gradients).

Paper
    docs/paper.md §2.1: on-policy distillation samples y ~ p_student(.|x) and scores every token
    of y under the teacher q(.|x') (x' = x for OPD, x + PI for OPSD). The sampled tokens'
    log-probs log p(y_t) enter every sampled-token loss (§3.1), and the student's top-K at each
    position defines the Top-K losses (§3.3-3.6). If rollouts are drawn with temperature / top-k
    / top-p, the sampling distribution is not p: `Rollout.logp_sampling` says what it was.

Command
    `pytest -q tests/test_rollout.py` (checks against transformers, CPU, seconds);
    `python bench/bench_rollout.py` (tokens/s against transformers' generate).

Layout of a batch
    Prompts are left-padded to the longest one (P columns); every row writes its next token into
    the same cache slot, so one position counter serves the batch. Rotary positions are per row
    (the row's own count of real tokens, as transformers does with `cumsum(mask) - 1`), and the
    attention mask hides the pad slots. Rows that emitted EOS keep running (their input is the
    pad id, their output is discarded) until every row is done.

What it simplifies
    * Full attention only: sliding-window layers and dynamic / longrope rotary scalings raise an
      error (their numerics would silently differ from the model's own forward).
    * One response per prompt; repeat a prompt in the list to draw several.
    * Decode attention runs over the cache prefix `[:pos]` (a slice, cheapest without graphs);
      with `cuda_graph=True` it runs over the whole preallocated cache with a mask (static
      shapes, what graph capture needs). The graph holds the decoder and the output layer;
      sampling runs outside it. It is captured once per `generate` call and replayed for every
      decode step.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inverse frequencies fixed at init

# ----------------------------------------------------------------------------------------------
# The result of a rollout
# ----------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # (B, P) long, left-padded with pad_token_id
    prompt_mask: torch.Tensor  # (B, P) bool, True on real prompt tokens
    response: torch.Tensor  # (B, T) long, pad_token_id after the EOS
    response_mask: torch.Tensor  # (B, T) bool, True up to and including the EOS
    logp: torch.Tensor  # (B, T) float32, log p(y_t) under the model at T=1 (0 where masked)
    logp_sampling: torch.Tensor  # (B, T) float32, log-prob under the warped distribution sampled from
    finished: torch.Tensor  # (B,) bool, the row emitted an EOS
    truncated: torch.Tensor  # (B,) bool, the row hit max_new_tokens without an EOS
    lengths: torch.Tensor  # (B,) long, response tokens including the EOS
    topk_ids: torch.Tensor | None = None  # (B, T, k) long, the model's top-k ids at each step (T=1)
    topk_logp: torch.Tensor | None = None  # (B, T, k) float32, their log-probs under the model

    def responses(self) -> list[list[int]]:
        """Each row's response ids, EOS included, pads dropped."""
        return [row[:n].tolist() for row, n in zip(self.response.cpu(), self.lengths.tolist())]

    def full_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.response], dim=1)  # (B, P + T)

    def full_mask(self) -> torch.Tensor:
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)  # (B, P + T)


# ----------------------------------------------------------------------------------------------
# Sampling: one pure function
# ----------------------------------------------------------------------------------------------


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None):
    """Draw one token per row from softmax(logits / temperature) restricted by top-k and top-p.

    logits (B, V) float32 -> (tokens (B,) long, logp_sampling (B,) float32), the log-prob of each
    drawn token under the distribution actually sampled from. The order is transformers': divide
    by the temperature, keep the top_k largest (ties with the k-th kept), then keep the smallest
    set of top tokens whose mass reaches top_p. temperature=0 is greedy (argmax; its distribution
    is a point mass, so logp_sampling = 0). The draw inverts the CDF with one uniform per row
    (float64 running sums; no host sync), cheaper than torch.multinomial and than Gumbel-max
    (which needs a random number per vocabulary entry); `make bench-rollout` measures the sampler.
    """
    B, V = logits.shape
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}")
    if temperature == 0:
        return logits.argmax(-1), torch.zeros(B, device=logits.device)
    x = logits / temperature if temperature != 1.0 else logits  # (B, V)
    if 0 < top_k < V or top_p < 1.0:
        k = top_k if 0 < top_k < V else V
        vals = torch.topk(x, k, dim=-1).values if k < V else x.sort(dim=-1, descending=True).values  # (B, k)
        keep = torch.ones_like(vals, dtype=torch.bool)  # (B, k)
        if top_p < 1.0:
            p = vals.softmax(-1)  # over the top-k only: the rest are already out
            keep = (p.cumsum(-1) - p) < top_p  # keep a token while the mass above it is < top_p
        threshold = vals.masked_fill(~keep, float("inf")).amin(-1, keepdim=True)  # (B, 1) smallest kept value
        x = x.masked_fill(x < threshold, float("-inf"))
    # Inverse-CDF draw: one uniform per row against the running sum of exp(x - max). The running
    # sum is float64: in float32 an entry below ~6e-8 of the sum so far adds nothing (CUDA's
    # cumsum accumulates in float32), so at a 151,936-token vocabulary the tail ids would be drawn
    # below their rate and their width in the CDF lost.
    mx, top1 = x.max(-1, keepdim=True)  # (B, 1)
    e = (x - mx).exp()  # (B, V) unnormalised probabilities, 0 outside top-k / top-p
    cdf = e.cumsum(-1, dtype=torch.float64)  # (B, V)
    total = cdf[:, -1:]  # (B, 1)
    u = torch.rand(total.shape, generator=generator, device=x.device, dtype=x.dtype).double() * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # u < total: some cdf entry exceeds u
    tokens = torch.searchsorted(cdf, u, right=True)  # (B, 1) the first index whose cdf exceeds u
    # A zero-probability id can only be hit if a parallel scan (CUDA) rounds two equal prefix
    # sums apart; never return one.
    tokens = torch.where(e.gather(-1, tokens) > 0, tokens, top1)
    logp_sampling = (x.gather(-1, tokens) - mx - total.log().to(x.dtype)).squeeze(-1)  # log softmax(x)[token]
    tokens = tokens.squeeze(-1)
    return tokens, logp_sampling


# ----------------------------------------------------------------------------------------------
# The decoder forward, written out over the transformers module's weights
# ----------------------------------------------------------------------------------------------


def check_supported(model) -> None:
    """Raise a clear error for a model whose forward `_decoder` does not reproduce."""
    name = type(model).__name__.removeprefix("FSDP")  # FSDP2 subclasses the model: FSDPQwen3ForCausalLM
    if name not in SUPPORTED:
        raise ValueError(
            f"rollout.generate writes out the decoder of {', '.join(SUPPORTED)}; got {name} "
            f"(model_type {getattr(model.config, 'model_type', '?')!r}). Add its forward to rollout._decoder, "
            "or sample with transformers' generate"
        )
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ValueError(f"{name} has sliding-window layers ({sorted(set(layer_types))}); rollout.py supports full attention only")
    rope_type = model.model.rotary_emb.rope_type
    if rope_type not in STATIC_ROPE:
        raise ValueError(f"{name} uses rope_type {rope_type!r}; rollout.py supports {STATIC_ROPE} (fixed inverse frequencies)")


class KVCache:
    """Preallocated keys and values for every layer, with one position counter for the batch."""

    def __init__(self, n_layers, batch, n_kv_heads, max_len, head_dim, dtype, device):
        self.k = torch.zeros(n_layers, batch, n_kv_heads, max_len, head_dim, dtype=dtype, device=device)
        self.v = torch.zeros_like(self.k)  # (L, B, H_kv, S_max, D)
        self.pos = 0  # slots [0, pos) are written; every row writes its next token at slot pos


def _rms_norm(x, norm):
    """transformers' RMSNorm: normalise in fp32, cast back, then scale by the weight."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * h.to(x.dtype)


def rope_tables(model, n_positions, dtype, device):
    """cos and sin (n_positions, D) from the model's own rotary module (its inverse frequencies and
    attention scaling, so Llama-3 / YaRN scalings come for free), computed as transformers does:
    fp32 angles, scaled, cast to the model dtype. The sign of rotate_half is folded into `sin`."""
    rot = model.model.rotary_emb
    pos = torch.arange(n_positions, device=device, dtype=torch.float32)
    freqs = pos[:, None] * rot.inv_freq.to(device=device, dtype=torch.float32)[None]  # (S, D/2)
    emb = torch.cat([freqs, freqs], dim=-1)  # (S, D)
    cos = (emb.cos() * rot.attention_scaling).to(dtype)
    sin = (emb.sin() * rot.attention_scaling).to(dtype)
    half = sin.shape[-1] // 2
    sin_signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # rotate_half(x)*sin == roll(x)*sin_signed
    return cos, sin_signed


def _rope(x, cos, sin_signed):
    # x (B, H, S, D); cos/sin (B, 1, S, D). Same products as transformers' x*cos + rotate_half(x)*sin.
    return x * cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * sin_signed


def _decoder(model, ids, cos, sin, cache, slot, kv_len, mask):
    """Run the decoder on `ids` (B, S), writing their keys/values into cache slots [slot, slot+S).

    cos/sin (B, S, D) per-row rotary tables; mask (B, 1, S, kv_len) bool, True = may attend;
    attention reads cache slots [0, kv_len). `slot` is an int, or a (1,) long tensor under CUDA
    graphs (S = 1 then). Returns the final-normed hidden states (B, S, d) in the model dtype.
    """
    m = model.model
    B, S = ids.shape
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, S, D)
    x = F.embedding(ids, m.embed_tokens.weight)  # (B, S, d)
    for i, layer in enumerate(m.layers):
        attn = layer.self_attn
        D = attn.head_dim
        h = _rms_norm(x, layer.input_layernorm)
        q = F.linear(h, attn.q_proj.weight, attn.q_proj.bias).view(B, S, -1, D)  # (B, S, H, D)
        k = F.linear(h, attn.k_proj.weight, attn.k_proj.bias).view(B, S, -1, D)  # (B, S, H_kv, D)
        v = F.linear(h, attn.v_proj.weight, attn.v_proj.bias).view(B, S, -1, D)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head's vector, before rotary
            q, k = _rms_norm(q, attn.q_norm), _rms_norm(k, attn.k_norm)
        q = _rope(q.transpose(1, 2), cos, sin)  # (B, H, S, D)
        k = _rope(k.transpose(1, 2), cos, sin)  # (B, H_kv, S, D)
        v = v.transpose(1, 2)
        if isinstance(slot, int):
            cache.k[i, :, :, slot : slot + S] = k
            cache.v[i, :, :, slot : slot + S] = v
        else:
            cache.k[i].index_copy_(2, slot, k)
            cache.v[i].index_copy_(2, slot, v)
        K, V = cache.k[i, :, :, :kv_len], cache.v[i, :, :, :kv_len]  # (B, H_kv, kv_len, D)
        H, H_kv = q.shape[1], K.shape[1]
        G = H // H_kv
        # GQA: query heads j*G .. j*G+G-1 share KV head j (transformers' repeat_kv). Rather than
        # copying K/V G times, fold those G heads into the query-length axis of KV head j.
        q = q.reshape(B, H_kv, G * S, D)  # rows (g, s)
        qmask = mask if G == 1 else mask[:, :, None].expand(B, 1, G, S, kv_len).reshape(B, 1, G * S, kv_len)
        o = F.scaled_dot_product_attention(q, K, V, attn_mask=qmask, scale=attn.scaling)  # (B, H_kv, G*S, D)
        o = o.reshape(B, H, S, D).transpose(1, 2).reshape(B, S, H * D)
        x = x + F.linear(o, attn.o_proj.weight, attn.o_proj.bias)
        h = _rms_norm(x, layer.post_attention_layernorm)
        mlp = layer.mlp
        gate = mlp.act_fn(F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias))
        x = x + F.linear(gate * F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias), mlp.down_proj.weight, mlp.down_proj.bias)
    return _rms_norm(x, m.norm)  # (B, S, d)


def _lm_head(model, h):
    head = model.lm_head
    return F.linear(h, head.weight, head.bias).float()  # (B, V) float32


class _CudaGraphDecode:
    """The one-token decode step (decoder + output layer) captured as a CUDA graph.

    Static buffers: the input token, the cache slot, each row's rotary position, and the key mask
    over the whole cache (B, S_max). Replaying writes the new keys/values into the cache and
    leaves the float32 logits in `self.logits`; sampling runs outside the graph.
    """

    def __init__(self, model, cache, key_mask, cos_table, sin_table):
        B, S_max = key_mask.shape
        dev = key_mask.device
        self.model, self.cache, self.key_mask = model, cache, key_mask
        self.cos_table, self.sin_table = cos_table, sin_table
        self.tok = torch.zeros(B, 1, dtype=torch.long, device=dev)  # (B, 1)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # the cache slot written this step
        self.pos = torch.zeros(B, dtype=torch.long, device=dev)  # (B,) rotary positions
        self.graph = None

    def _step(self):
        cos = self.cos_table[self.pos][:, None]  # (B, 1, D)
        sin = self.sin_table[self.pos][:, None]
        mask = self.key_mask[:, None, None, :]  # (B, 1, 1, S_max)
        h = _decoder(self.model, self.tok, cos, sin, self.cache, self.slot, self.key_mask.shape[1], mask)
        return _lm_head(self.model, h[:, -1])  # (B, V)

    def __call__(self, tok, slot, pos):
        self.tok.copy_(tok[:, None])
        self.slot.fill_(slot)
        self.pos.copy_(pos)
        if self.graph is None:  # warm up on a side stream (allocator, kernels), then capture
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.logits = self._step()
        self.graph.replay()
        return self.logits


# ----------------------------------------------------------------------------------------------
# generate: prefill, then one token per step for every row
# ----------------------------------------------------------------------------------------------


def left_pad(prompts, pad_token_id, device):
    """list of id lists -> ids (B, P) long left-padded, mask (B, P) bool."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("generate needs a non-empty list of prompts, each with at least one token")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), P, dtype=torch.bool)
    for b, p in enumerate(prompts):
        ids[b, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[b, P - len(p) :] = True
    return ids.to(device), mask.to(device)


def pad_right(rows, pad_value, device=None, dtype=torch.long):
    """list of id lists (or 1-D tensors) -> (B, T) right-padded with pad_value, T the longest
    row (at least 1): the layout of `score`'s response positions."""
    T = max(max((len(r) for r in rows), default=0), 1)
    out = torch.full((len(rows), T), pad_value, dtype=dtype)
    for b, r in enumerate(rows):
        if len(r):
            out[b, :len(r)] = torch.as_tensor(r, dtype=dtype)
    return out.to(device)


@torch.no_grad()
def generate(
    model,
    prompts,
    max_new_tokens,
    *,
    temperature=1.0,
    top_p=1.0,
    top_k=0,
    eos_token_ids,
    pad_token_id,
    generator=None,
    return_topk=0,
    cuda_graph=False,
    check_every=None,
    prefill_chunk=0,
) -> Rollout:
    """Sample one response per prompt (a list of token-id lists of any lengths) -> Rollout.

    temperature=0 is greedy and reproduces transformers' generate(do_sample=False) row for row.
    `generator` (a torch.Generator on the model's device) makes sampling reproducible.
    `return_topk=k` also records the model's top-k ids and log-probs (T=1) at each step.
    `cuda_graph=True` captures the decode step as a CUDA graph (CUDA only).
    `check_every`: look at the finished rows every this many steps (a host sync on CUDA);
    default 1 on CPU, 16 on CUDA. `prefill_chunk=N` runs the prompt through the model N columns at
    a time (attention scores and activations of N, not P, query positions; 0 = all at once), with
    the same tokens and log-probs up to float rounding. The response has T = the longest
    response's length columns.
    """
    check_supported(model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not eos_token_ids:
        raise ValueError("eos_token_ids is empty; pass the tokenizer's eos_token_ids (e.g. Tokenizer.eos_token_ids)")
    emb = model.model.embed_tokens.weight
    device, dtype = emb.device, emb.dtype
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs the model on a CUDA device; it is on {device}")
    if check_every is None:
        check_every = 16 if device.type == "cuda" else 1
    cfg = model.config
    n_kv = cfg.num_key_value_heads
    head_dim = model.model.layers[0].self_attn.head_dim  # Qwen2 has no config.head_dim; Qwen3's may differ from d/H

    # ---- prefill: the left-padded prompt, all at once or prefill_chunk columns at a time -------
    prompt_ids, prompt_mask = left_pad(prompts, pad_token_id, device)  # (B, P)
    B, P = prompt_ids.shape
    S_max = P + max_new_tokens
    cache = KVCache(len(model.model.layers), B, n_kv, S_max, head_dim, dtype, device)
    cos_table, sin_table = rope_tables(model, S_max, dtype, device)  # (S_max, D)
    positions = (prompt_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P) per-row rotary positions
    prompt_len = prompt_mask.sum(-1)  # (B,)
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()  # (P, P)
    eye = torch.eye(P, dtype=torch.bool, device=device)
    step = prefill_chunk if prefill_chunk > 0 else P
    for s in range(0, P, step):  # columns [s, e) attend to the cache slots [0, e) written so far
        e = min(s + step, P)
        mask = (prompt_mask[:, None, None, :e] & causal[s:e, :e]) | eye[s:e, :e]  # (B, 1, e-s, e); pad queries see themselves
        h = _decoder(model, prompt_ids[:, s:e], cos_table[positions[:, s:e]], sin_table[positions[:, s:e]], cache, s, e, mask)
    cache.pos = P
    logits = _lm_head(model, h[:, -1])  # (B, V) predicts the first response token

    # ---- decode: sample, record, feed the token back ----------------------------------------
    key_mask = torch.zeros(B, S_max, dtype=torch.bool, device=device)  # (B, S_max) slots a query may see
    key_mask[:, :P] = prompt_mask
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)
    response = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    response_mask = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
    logp = torch.zeros(B, max_new_tokens, device=device)
    logp_sampling = torch.zeros(B, max_new_tokens, device=device)
    topk_ids = torch.zeros(B, max_new_tokens, return_topk, dtype=torch.long, device=device) if return_topk else None
    topk_logp = torch.zeros(B, max_new_tokens, return_topk, device=device) if return_topk else None
    alive = torch.ones(B, dtype=torch.bool, device=device)  # no EOS yet
    graph_step = _CudaGraphDecode(model, cache, key_mask, cos_table, sin_table) if cuda_graph else None
    plain = temperature == 1.0 and top_k == 0 and top_p == 1.0

    for t in range(max_new_tokens):
        tok, lp_s = sample(logits, temperature, top_k, top_p, generator)  # (B,), (B,)
        lse = torch.logsumexp(logits, -1) if (return_topk or not plain) else None  # (B,)
        lp = lp_s if plain else logits.gather(-1, tok[:, None]).squeeze(-1) - lse  # log p(y_t), T=1
        tok = torch.where(alive, tok, pad_token_id)
        response[:, t] = tok
        response_mask[:, t] = alive
        logp[:, t] = torch.where(alive, lp, 0.0)
        logp_sampling[:, t] = torch.where(alive, lp_s, 0.0)
        if return_topk:
            vals, ids = logits.topk(return_topk, dim=-1)  # (B, k)
            topk_ids[:, t], topk_logp[:, t] = ids, vals - lse[:, None]
        alive = alive & ~torch.isin(tok, eos)
        if t == max_new_tokens - 1 or ((t + 1) % check_every == 0 and not bool(alive.any())):
            break
        slot = cache.pos  # every row writes its token t into this slot
        key_mask[:, slot] = True
        pos = prompt_len + t  # (B,) the row's rotary position of token t
        if graph_step is not None:
            logits = graph_step(tok, slot, pos)
        else:
            h = _decoder(model, tok[:, None], cos_table[pos][:, None], sin_table[pos][:, None], cache, slot, slot + 1,
                         key_mask[:, None, None, : slot + 1])  # (B, 1, d)
            logits = _lm_head(model, h[:, -1])  # (B, V)
        cache.pos += 1

    lengths = response_mask.sum(-1)  # (B,)
    T = max(int(lengths.max()), 1)  # one host sync, at the end
    finished = ~alive
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response=response[:, :T].contiguous(),
        response_mask=response_mask[:, :T].contiguous(),
        logp=logp[:, :T].contiguous(),
        logp_sampling=logp_sampling[:, :T].contiguous(),
        finished=finished,
        truncated=~finished,
        lengths=lengths,
        topk_ids=topk_ids[:, :T].contiguous() if return_topk else None,
        topk_logp=topk_logp[:, :T].contiguous() if return_topk else None,
    )


# ----------------------------------------------------------------------------------------------
# Scoring a response under any model (teacher, OPSD teacher with privileged context, student)
# ----------------------------------------------------------------------------------------------


def score(model, contexts, responses, *, return_logits=True, return_hidden=False):
    """Logits (or log-probs) that `model` gives each response token after its own context.

    contexts, responses: lists of token-id lists (a context must be non-empty; a response may be).
    Returns (out, mask): mask (B, T) bool marks real response tokens (T = longest response); out is
    logits (B, T, V) in the model's dtype, row b position t being the logits that predict
    responses[b][t] (right-padded), or with return_logits=False the float32 log-probs (B, T) of
    the response tokens (0 where masked). One call of the model's own transformers forward, with
    contexts left-padded and responses right-padded (the rollout layout when contexts are the
    student's prompts) and per-row position ids, so each row equals scoring that pair alone.
    Gradients flow when grad mode is on (the student's training forward); wrap a teacher call in
    torch.no_grad(). With return_hidden=True, out is instead the final-normed hidden states
    (B, T, d) at the same positions, for losses.chunked_loss with the model's output layer
    (`model.lm_head.weight`): no (B, T, V) logits are made.
    """
    if len(contexts) != len(responses) or not contexts:
        raise ValueError(f"score needs as many contexts as responses (got {len(contexts)} and {len(responses)}), at least one")
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token (the last context token predicts the first response token)")
    device = model.get_input_embeddings().weight.device
    B = len(contexts)
    P = max(len(c) for c in contexts)
    T = max(len(r) for r in responses)
    ids = torch.zeros(B, P + T, dtype=torch.long)  # pad id 0: masked, only needs to be a valid id
    mask = torch.zeros(B, P + T, dtype=torch.bool)
    for b, (c, r) in enumerate(zip(contexts, responses)):
        ids[b, P - len(c) : P + len(r)] = torch.tensor(list(c) + list(r), dtype=torch.long)
        mask[b, P - len(c) : P + len(r)] = True
    ids, mask = ids.to(device), mask.to(device)
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P + T), as transformers' generate
    if return_hidden:
        hidden = model.model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=False)
        return hidden.last_hidden_state[:, P - 1 : P + T - 1], mask[:, P:]  # (B, T, d): column P-1+t predicts token t
    out = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, logits_to_keep=T + 1, use_cache=False)
    logits = out.logits[:, :-1]  # (B, T, V): column P-1+t predicts response token t
    resp_mask = mask[:, P:]  # (B, T)
    if return_logits:
        return logits, resp_mask
    tokens = ids[:, P:]  # (B, T)
    logp = logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)
    return logp.masked_fill(~resp_mask, 0.0), resp_mask
