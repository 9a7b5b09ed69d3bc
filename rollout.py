"""The student writing trajectories, and any model scoring them: a hand-written batched sampler.

What this file is
    `generate()` samples one response per prompt for a batch of prompts of different lengths,
    with a preallocated KV cache and the decoder forward of decoder.py, written out over the
    weights of a transformers Llama / Qwen2 / Qwen3 model (read at every call: what the optimizer
    changes, the sampler sees). It returns a
    `Rollout`: ids, masks, each sampled token's log-prob under the model (T=1) and under the
    distribution actually sampled from, EOS/truncation flags and, if asked, the student's top-K.
    `sample()` is the pure sampling function (temperature, top-k, top-p).
    `score()` runs the same written-out decoder (or the model's own transformers forward) over
    context + response and returns the logits that predict each response token, aligned token
    for token with the responses: the teacher in OPD (context = the student prompt), the teacher
    in OPSD (context = prompt + privileged information), and the student's training forward
    (with gradients).

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
    * The models decoder.py writes out (full attention, fixed rotary frequencies; others raise).
    * One response per prompt; repeat a prompt in the list to draw several.
    * Decode attention runs over the cache prefix `[:pos]` (a slice, cheapest without graphs);
      with `cuda_graph=True` it runs over the whole preallocated cache with a mask (static
      shapes, what graph capture needs).
      The graph holds the decoder and the output layer; sampling runs outside it. It is captured
      once per `generate` call and replayed for every decode step.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import decoder

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
    topk_ids: torch.Tensor | None = None  # (B, T, k) long, the model's top-k ids at each step (T=1), 0 past the row's end
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


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None, u=None):
    """Draw one token per row from softmax(logits / temperature) restricted by top-k and top-p.

    logits (B, V) float32 -> (tokens (B,) long, logp_sampling (B,) float32), the log-prob of each
    drawn token under the distribution actually sampled from. The order is transformers': divide
    by the temperature, keep the top_k largest (ties with the k-th kept), then keep the smallest
    set of top tokens whose mass reaches top_p. temperature=0 is greedy (argmax; its distribution
    is a point mass, so logp_sampling = 0). The draw inverts the CDF with one uniform per row
    (float64 running sums; no host sync), cheaper than torch.multinomial and than Gumbel-max
    (which needs a random number per vocabulary entry); `make bench-rollout` measures the sampler.
    u (B, 1) float32 in [0, 1): the uniforms to use instead of drawing them from `generator`.
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
    if u is None:
        u = torch.rand(total.shape, generator=generator, device=x.device, dtype=x.dtype)
    u = u.double() * total
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


class _CudaGraphDecode:
    """The one-token decode step (decoder + output layer) captured as a CUDA graph.

    Static buffers: the input token, the cache slot, each row's rotary position, and the additive
    key mask over the whole cache (B, 1, S_max). Replaying writes the new keys/values into the
    cache and leaves the float32 logits in `self.logits`; sampling runs outside the graph.
    """

    def __init__(self, W, cache, key_bias, cos_table, sin_table):
        B, _, S_max = key_bias.shape
        dev = key_bias.device
        self.W, self.cache, self.key_bias = W, cache, key_bias
        self.cos_table, self.sin_table = cos_table, sin_table
        self.tok = torch.zeros(B, 1, dtype=torch.long, device=dev)  # (B, 1)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # the cache slot written this step
        self.pos = torch.zeros(B, dtype=torch.long, device=dev)  # (B,) rotary positions
        self.graph = None

    def _step(self):
        cos = self.cos_table[self.pos][:, None]  # (B, 1, D)
        sin = self.sin_table[self.pos][:, None]
        h = decoder.forward(self.W, self.tok, cos, sin, self.cache, self.slot, self.key_bias.shape[-1], self.key_bias)
        return decoder.lm_head(self.W, h[:, -1])  # (B, V)

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
    compact=None,
    dtype=None,
) -> Rollout:
    """Sample one response per prompt (a list of token-id lists of any lengths) -> Rollout.

    temperature=0 is greedy and reproduces transformers' generate(do_sample=False) row for row.
    `generator` (a torch.Generator on the model's device) makes sampling reproducible.
    `return_topk=k` also records the model's top-k ids and log-probs (T=1) at each step.
    `cuda_graph=True` captures the decode step as a CUDA graph (CUDA only).
    `check_every`: look at the finished rows every this many steps (a host sync on CUDA);
    default 1 on CPU, 16 on CUDA. `prefill_chunk=N` runs the prompt through the model N columns at
    a time (attention scores and activations of N, not P, query positions; 0 = all at once), with
    the same tokens and log-probs up to float rounding. `compact` (default: on CPU without CUDA
    graphs) drops finished rows from the decode batch, with their cache rows, once a quarter of
    it has finished; every row's tokens are the same (its uniforms are drawn as if all rows were
    decoded) and its log-probs too up to float rounding. The tokens every prompt starts with
    (decoder.shared_prefix) are prefilled once, and so is each prompt that repeats (G samples of a
    prompt): its rows start from copies of its cache. `dtype` (default: the model's) is the precision
    the sampler computes in, from copies of the weights cast to it for this call (decoder.weights):
    torch.bfloat16 samples a float32-trained student from a bf16 copy, half the bytes per decode
    step; the log-probs it returns are the bf16 model's. The response has T = the longest
    response's length columns.
    """
    decoder.check_supported(model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not eos_token_ids:
        raise ValueError("eos_token_ids is empty; pass the tokenizer's eos_token_ids (e.g. Tokenizer.eos_token_ids)")
    emb = model.model.embed_tokens.weight
    device, dtype = emb.device, dtype or emb.dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype {dtype}: the sampler computes in a floating-point precision (torch.float32, torch.bfloat16)")
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs the model on a CUDA device; it is on {device}")
    if check_every is None:
        check_every = 16 if device.type == "cuda" else 1
    if compact is None:
        compact = device.type == "cpu" and not cuda_graph
    if compact and cuda_graph:
        raise ValueError("compact=True changes the decode batch's shape, which a captured CUDA graph cannot follow; "
                         "pass compact=False with cuda_graph=True")
    cfg = model.config
    n_kv = cfg.num_key_value_heads
    head_dim = model.model.layers[0].self_attn.head_dim  # Qwen2 has no config.head_dim; Qwen3's may differ from d/H

    # ---- prefill --------------------------------------------------------------------------
    # Cache slots: [0, c) the prompts' shared prefix (decoder.shared_prefix, run once and copied
    # into every row), [c, P) the rest of each prompt left-padded, then one slot per decode step.
    # The rest runs all at once or prefill_chunk columns at a time.
    # A prompt that repeats (GRPO's G samples of each) is prefilled once; its cache rows are then copied.
    prompt_ids, prompt_mask = left_pad(prompts, pad_token_id, device)  # (B, P): the Rollout's record
    B, P = prompt_ids.shape
    distinct = {}  # each distinct prompt -> its prefill row
    inverse = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]  # (B,) the row's prefill row
    unique = [list(p) for p in distinct]  # what the prefill runs: B_distinct rows
    c = decoder.shared_prefix(unique)
    rest_ids, rest_mask = left_pad([p[c:] for p in unique], pad_token_id, device)  # (B_distinct, R), R = P - c
    R, S_max, n_layers = P - c, P + max_new_tokens, len(model.model.layers)
    cache = decoder.KVCache(n_layers, len(unique), n_kv, S_max, head_dim, dtype, device)
    W = decoder.weights(model, dtype=dtype)  # read once: the weights do not change during a rollout
    cos_table, sin_table = decoder.rope_tables(model, S_max, dtype, device)  # (S_max, D)
    if c:
        one = decoder.KVCache(n_layers, 1, n_kv, c, head_dim, dtype, device)
        decoder.forward(W, torch.tensor([unique[0][:c]], device=device), cos_table[None, :c],
                        sin_table[None, :c], one, 0, c, torch.ones(c, c, dtype=torch.bool, device=device).tril()[None, None],
                        out_from=c)  # keys and values only
        cache.kt[..., :c], cache.v[:, :, :, :c] = one.kt, one.v  # broadcast over the batch
    positions = c + (rest_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B_distinct, R) per-row rotary positions
    prompt_len = prompt_mask.sum(-1)  # (B,)
    causal = torch.ones(R, R, dtype=torch.bool, device=device).tril()  # (R, R)
    eye = torch.eye(R, dtype=torch.bool, device=device)
    step = prefill_chunk if prefill_chunk > 0 else R
    for s in range(0, R, step):  # columns [s, e) attend to the prefix and the slots [c, c + e) written so far
        e = min(s + step, R)
        mask = (rest_mask[:, None, None, :e] & causal[s:e, :e]) | eye[s:e, :e]  # (B_distinct, 1, e-s, e); pad queries see themselves
        mask = torch.cat([mask.new_ones(len(unique), 1, e - s, c), mask], dim=-1)  # (B_distinct, 1, e-s, c + e)
        last = e - s - 1 if e == R else e - s  # only the prompt's last column needs the last layer's output
        h = decoder.forward(W, rest_ids[:, s:e], cos_table[positions[:, s:e]], sin_table[positions[:, s:e]],
                            cache, c + s, c + e, mask, out_from=last)
    cache.pos = P
    if len(unique) < B:  # every row from its prompt's prefill
        inverse = torch.tensor(inverse, device=device)
        cache.kt, cache.v, h, rest_mask = cache.kt[:, inverse], cache.v[:, inverse], h[inverse], rest_mask[inverse]
    logits = decoder.lm_head(W, h[:, -1])  # (B, V) predicts the first response token

    # ---- decode: sample, record, feed the token back ----------------------------------------
    # (B, 1, S_max) additive mask of the slots a query may read: 0 on the prompt's real tokens and
    # on every response slot written so far, -inf on the padding and the slots still empty
    key_bias = torch.full((B, 1, S_max), float("-inf"), device=device)
    key_bias[:, 0, :c] = 0.0
    key_bias[:, 0, c:P].masked_fill_(rest_mask, 0.0)
    eos = torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)
    response = torch.full((B, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    response_mask = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
    logp = torch.zeros(B, max_new_tokens, device=device)
    logp_sampling = torch.zeros(B, max_new_tokens, device=device)
    topk_ids = torch.zeros(B, max_new_tokens, return_topk, dtype=torch.long, device=device) if return_topk else None
    topk_logp = torch.zeros(B, max_new_tokens, return_topk, device=device) if return_topk else None
    alive = torch.ones(B, dtype=torch.bool, device=device)  # no EOS yet (of the rows still decoded)
    graph_step = _CudaGraphDecode(W, cache, key_bias, cos_table, sin_table) if cuda_graph else None
    plain = temperature == 1.0 and top_k == 0 and top_p == 1.0
    rows = slice(None)  # the batch rows still decoded: all, until `compact` drops finished ones

    for t in range(max_new_tokens):
        # one uniform per row of the whole batch each step, whichever rows are still decoded: a
        # row's draws do not depend on when the others finish
        u = torch.rand((B, 1), generator=generator, device=device)[rows] if temperature > 0 else None
        tok, lp_s = sample(logits, temperature, top_k, top_p, u=u)  # (b,), (b,)
        lse = torch.logsumexp(logits, -1) if (return_topk or not plain) else None  # (b,)
        lp = lp_s if plain else logits.gather(-1, tok[:, None]).squeeze(-1) - lse  # log p(y_t), T=1
        tok = torch.where(alive, tok, pad_token_id)
        response[rows, t] = tok
        response_mask[rows, t] = alive
        logp[rows, t] = torch.where(alive, lp, 0.0)
        logp_sampling[rows, t] = torch.where(alive, lp_s, 0.0)
        if return_topk:
            vals, ids = logits.topk(return_topk, dim=-1)  # (b, k)
            topk_ids[rows, t] = torch.where(alive[:, None], ids, 0)  # zeros past a row's end
            topk_logp[rows, t] = torch.where(alive[:, None], vals - lse[:, None], 0.0)
        alive = alive & ~torch.isin(tok, eos)
        if t == max_new_tokens - 1:
            break
        if (t + 1) % check_every == 0:
            n_alive = int(alive.sum())  # a host sync
            if n_alive == 0:
                break
            if compact and n_alive <= 3 * len(alive) // 4:  # drop the finished rows from the decode batch
                keep = alive.nonzero().squeeze(1)
                rows = keep if isinstance(rows, slice) else rows[keep]
                tok, alive, prompt_len, key_bias = tok[keep], alive[keep], prompt_len[keep], key_bias[keep]
                cache.kt, cache.v = cache.kt[:, keep], cache.v[:, keep]
        slot = cache.pos  # every row writes its token t into this slot
        key_bias[:, :, slot] = 0.0
        pos = prompt_len + t  # (b,) the row's rotary position of token t
        if graph_step is not None:
            logits = graph_step(tok, slot, pos)
        else:
            h = decoder.forward(W, tok[:, None], cos_table[pos][:, None], sin_table[pos][:, None], cache, slot,
                                slot + 1, key_bias[:, :, : slot + 1])  # (b, 1, d)
            logits = decoder.lm_head(W, h[:, -1])  # (b, V)
        cache.pos += 1

    lengths = response_mask.sum(-1)  # (B,)
    T = max(int(lengths.max()), 1)  # one host sync, at the end
    finished = (torch.isin(response, eos) & response_mask).any(-1)  # (B,) the row emitted an EOS
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


def score(model, contexts, responses, *, return_logits=True, return_hidden=False, impl="auto"):
    """Logits (or log-probs) that `model` gives each response token after its own context.

    contexts, responses: lists of token-id lists (a context must be non-empty; a response may be).
    Returns (out, mask): mask (B, T) bool marks real response tokens (T = longest response); out is
    logits (B, T, V) in the model's dtype, row b position t being the logits that predict
    responses[b][t] (right-padded), or with return_logits=False the float32 log-probs (B, T) of
    the response tokens (0 where masked). Each row has positions 0, 1, ... and attends only to its
    own tokens, so it equals scoring that pair alone. Gradients flow when grad mode is on (the student's training
    forward); wrap a teacher call in torch.no_grad(). With return_hidden=True, out is instead the
    final-normed hidden states (B, T, d) at the same positions, for losses.chunked_loss with the
    model's output layer (`model.lm_head.weight`): no (B, T, V) logits are made.

    impl: "ours" runs the sampler's written-out decoder (decoder.response_hidden: fused q/k/v and
    gate/up products, fused norms, the contexts' shared prefix computed once and each repeated
    context once, no work on padding;
    the model's forward up to float rounding); "transformers" calls the model's own forward on the
    padded batch (contexts left-padded, responses right-padded); "auto" (default) takes "ours" where it applies
    (`writes_out`: not under FSDP, not with activation checkpointing) and "transformers" elsewhere.
    """
    if len(contexts) != len(responses) or not contexts:
        raise ValueError(f"score needs as many contexts as responses (got {len(contexts)} and {len(responses)}), at least one")
    if any(len(c) == 0 for c in contexts):
        raise ValueError("every context needs at least one token (the last context token predicts the first response token)")
    if impl == "auto":
        impl = "ours" if decoder.writes_out(model) else "transformers"
    if impl == "ours":
        if not decoder.writes_out(model):
            decoder.check_supported(model)  # names what is unsupported, if that is the reason
            raise ValueError("score(impl='ours') cannot run this model: it is sharded by FSDP or uses activation "
                             "checkpointing, which only its own forward applies; use impl='auto' or 'transformers'")
        hidden, resp_mask = decoder.response_hidden(model, contexts, responses)  # (B, T, d): predicts token t
        if return_hidden:
            return hidden, resp_mask
        logits = F.linear(hidden, model.lm_head.weight, model.lm_head.bias)  # (B, T, V)
        tokens = pad_right(responses, 0, logits.device)[:, : logits.shape[1]]  # (B, T)
    elif impl == "transformers":
        device = model.get_input_embeddings().weight.device
        B, P, T = len(contexts), max(len(c) for c in contexts), max(len(r) for r in responses)
        ids = torch.zeros(B, P + T, dtype=torch.long)  # pad id 0: masked, only needs to be a valid id
        mask = torch.zeros(B, P + T, dtype=torch.bool)
        for b, (c, r) in enumerate(zip(contexts, responses)):
            ids[b, P - len(c) : P + len(r)] = torch.tensor(list(c) + list(r), dtype=torch.long)
            mask[b, P - len(c) : P + len(r)] = True
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, P + T), as transformers' generate
        resp_mask, tokens = mask[:, P:], ids[:, P:]  # (B, T)
        if return_hidden:
            out = model.model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, use_cache=False)
            return out.last_hidden_state[:, P - 1 : P + T - 1], resp_mask
        out = model(input_ids=ids, attention_mask=mask.long(), position_ids=positions, logits_to_keep=T + 1, use_cache=False)
        logits = out.logits[:, :-1]  # (B, T, V): column P-1+t predicts response token t
    else:
        raise ValueError(f"impl must be 'auto', 'ours' or 'transformers'; got {impl!r}")
    if return_logits:
        return logits, resp_mask
    logp = logits.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)
    return logp.masked_fill(~resp_mask, 0.0), resp_mask
