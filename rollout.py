"""The student writing trajectories, and any model scoring them: a hand-written batched sampler.

What this file is
    `generate()` samples one response per prompt for a batch of prompts of different lengths. It
    is a short loop: `prefill` runs the prompts into a preallocated KV cache, then each step
    `sample` draws one token per row (temperature, top-k, top-p), `record` writes it and its
    log-probs into the result, and `decode_step` runs it through the decoder of decoder.py,
    written out over the weights of a transformers Llama / Qwen2 / Qwen3 model (read at every
    call: what the optimizer changes, the sampler sees). It returns a `Rollout`: ids, each
    sampled token's log-prob under the model (T=1) and under the distribution actually sampled
    from, EOS/truncation flags.
    `score()` returns the logits that predict each response token after its context, aligned
    token for token with the responses. Its definition is the model's own transformers forward
    on the padded batch (`impl="transformers"`); by default, where it applies, packed.py's forward
    computes the same numbers with less work. It scores for the teacher in OPD (context = the
    student prompt), the teacher in OPSD (context = prompt + privileged information), and the
    student's training forward (with gradients).

Paper
    docs/paper.md §2.1: on-policy distillation samples y ~ p_student(.|x) and scores every token
    of y under the teacher q(.|x') (x' = x for OPD, x + PI for OPSD). The sampled tokens'
    log-probs log p(y_t) enter every sampled-token loss (§3.1); the Top-K losses (§3.3-3.6) take
    the student's top-K from `score`'s logits. If rollouts are drawn with temperature / top-k /
    top-p, the sampling distribution is not p: `Rollout.logp_sampling` says what it was.

Command
    `pytest -q tests/test_rollout.py tests/test_score.py` (checks against transformers, CPU, seconds);
    `python bench/bench_rollout.py` (tokens/s against transformers' generate).

Layout of a batch
    Prompts are left-padded to the longest one (P columns); every row writes its next token into
    the same cache slot, so one position counter serves the batch. Rotary positions are per row
    (the row's own count of real tokens, as transformers does with `cumsum(mask) - 1`), and an
    additive mask over the cache slots hides the pad slots. Rows that emitted EOS keep running
    (their input is the pad id, their output is discarded) until every row is done, or on CPU
    until `drop_finished` drops them.

Optimisations
    Each is a function of its own, and none changes a row's draws (every row's uniform is drawn
    every step as if the whole batch were decoded); logits change only up to float rounding:
    * `_prefill_shared_prefix`: the tokens every prompt starts with run once;
    * `_copy_prompt_rows`: a prompt that repeats (GRPO's G samples of each) runs once;
    * `drop_finished` (CPU, `compact`): finished rows leave the decode batch;
    * `_CudaGraphDecode` (`cuda_graph=True`): the decode step replayed as a CUDA graph;
    * `CHECK_EVERY`: on CUDA the finished rows are looked at (a host sync) every 16 steps.
    `dtype=torch.bfloat16` is not one of them: it samples from a bf16 copy of the weights, so
    the tokens and log-probs are the bf16 model's.

What it simplifies
    * The models decoder.py writes out (full attention, fixed rotary frequencies; others raise).
    * One response per prompt; repeat a prompt in the list to draw several.
    * Decode attention runs over the cache prefix `[:pos]` (a slice, cheapest without graphs);
      with `cuda_graph=True` it runs over the whole preallocated cache with a mask (static
      shapes, what graph capture needs). The graph holds the decoder and the output layer;
      sampling runs outside it. It is captured once per `generate` call and replayed every step.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import decoder
import packed
from errors import UserError

# Decode steps between looks at which rows have finished. A look is a host sync, which on CUDA
# waits for the queued kernels; the steps decoded after the last EOS are discarded.
CHECK_EVERY = {"cpu": 1, "cuda": 16}

# ----------------------------------------------------------------------------------------------
# The result of a rollout
# ----------------------------------------------------------------------------------------------


@dataclass
class Rollout:
    prompt_ids: torch.Tensor  # (B, P) long, left-padded with pad_token_id
    response: torch.Tensor  # (B, T) long, pad_token_id after the EOS
    logp: torch.Tensor  # (B, T) float32, log p(y_t) under the model at T=1 (0 past the row's end)
    logp_sampling: torch.Tensor  # (B, T) float32, the same under the distribution sampled from (warped)
    finished: torch.Tensor  # (B,) bool, the row emitted an EOS
    truncated: torch.Tensor  # (B,) bool, the row hit max_new_tokens without an EOS
    lengths: torch.Tensor  # (B,) long, response tokens including the EOS

    def responses(self) -> list[list[int]]:
        """Each row's response ids, EOS included, pads dropped."""
        return [row[:n].tolist() for row, n in zip(self.response.cpu(), self.lengths.tolist())]


# ----------------------------------------------------------------------------------------------
# Sampling: one pure function
# ----------------------------------------------------------------------------------------------


def sample(logits, temperature=1.0, top_k=0, top_p=1.0, generator=None, u=None):
    """Draw one token per row from softmax(logits / temperature) restricted by top-k and top-p.

    logits (B, V) float32 -> (tokens (B,) long, logp_sampling (B,) float32), the log-prob of each
    drawn token under the distribution actually sampled from. The order is transformers': divide
    by the temperature, keep the top_k largest (ties with the k-th kept), then keep the smallest
    set of top tokens whose mass reaches top_p. temperature=0 is greedy (argmax; its distribution
    is a point mass, so logp_sampling = 0), and so is a temperature below the smallest normal number
    of the logits' dtype (1.2e-38 in float32), which that precision cannot divide by; any larger
    one divides the logits after their row maximum is subtracted (`tempered`), so none overflows
    them. A row whose logits are not finite draws an id in range with a NaN log-prob, which
    `generate` refuses (`refuse_non_finite`). The draw inverts the CDF with one uniform per row
    (float64 running sums; no host sync), cheaper than torch.multinomial and than Gumbel-max
    (which needs a random number per vocabulary entry); `make bench-rollout` measures the sampler.
    u (B, 1) float32 in [0, 1): the uniforms to use instead of drawing them from `generator`.
    """
    B, V = logits.shape
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise ValueError(
            f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0; got {temperature}, {top_p}, {top_k}"
        )
    if temperature < torch.finfo(logits.dtype).tiny:  # 0, or too small to divide by: greedy
        return logits.argmax(-1), torch.zeros(B, device=logits.device)
    x = tempered(logits, temperature) if temperature != 1.0 else logits  # (B, V)
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
    # u < total: some cdf entry exceeds u
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    # (B, 1) the first index whose cdf exceeds u; a row of NaN or inf logits has a NaN cdf, which
    # searches past the end: the clamp keeps its index in range
    tokens = torch.searchsorted(cdf, u, right=True).clamp(max=V - 1)
    # A zero-probability id can only be hit if a parallel scan (CUDA) rounds two equal prefix
    # sums apart; never return one.
    tokens = torch.where(e.gather(-1, tokens) > 0, tokens, top1)
    logp_sampling = (x.gather(-1, tokens) - mx - total.log().to(x.dtype)).squeeze(-1)  # log softmax(x)[token]
    tokens = tokens.squeeze(-1)
    return tokens, logp_sampling


def tempered(logits, temperature):
    """logits / temperature with each row's maximum subtracted first: the same softmax, never inf - inf."""
    return (logits - logits.amax(-1, keepdim=True)) / temperature


# ----------------------------------------------------------------------------------------------
# generate: prefill, then one token per step for every row
# ----------------------------------------------------------------------------------------------


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
    cuda_graph=False,
    compact=None,
    dtype=None,
) -> Rollout:
    """Sample one response per prompt (a list of token-id lists of any lengths) -> Rollout.

    temperature=0 is greedy and reproduces transformers' generate(do_sample=False) row for row.
    `generator` (a torch.Generator on the model's device) makes sampling reproducible.
    `dtype` (default: the model's) is the precision the sampler computes in, from copies of the
    weights cast to it for this call (decoder.weights): torch.bfloat16 samples a float32-trained
    student from a bf16 copy, and the log-probs it returns are the bf16 model's.
    `cuda_graph=True` replays the decode step as a CUDA graph; `compact` (default: on CPU without
    CUDA graphs) drops finished rows from the decode batch. The response has T = the longest
    response's length columns. Logits that are not finite (NaN or inf: a broken checkpoint, or
    weights that overflow in `dtype`) are refused with a UserError naming the prompt and the token
    (`refuse_non_finite`, one host sync after the last step).
    """
    device, dtype, compact = _settings(model, max_new_tokens, eos_token_ids, cuda_graph, compact, dtype)
    prompt_ids, _ = left_pad(prompts, pad_token_id, device)  # (B, P): the Rollout's record
    W = decoder.weights(model, dtype=dtype)  # read once: the weights do not change during a rollout
    s, logits = prefill(model, W, prompts, max_new_tokens, pad_token_id)  # logits (B, V) predict token 0
    if cuda_graph:
        s.graph = _CudaGraphDecode(s)
    B, eos = len(prompts), torch.tensor(list(eos_token_ids), dtype=torch.long, device=device)
    rec = _Record.empty(B, max_new_tokens, pad_token_id, device)
    alive = torch.ones(B, dtype=torch.bool, device=device)  # (b,) the decoded rows without an EOS yet
    plain = temperature == 1.0 and top_k == 0 and top_p == 1.0  # sampling from p itself
    for t in range(max_new_tokens):
        # one uniform per row of the whole batch each step, whichever rows are still decoded: a
        # row's draws do not depend on when the others finish
        u = torch.rand((B, 1), generator=generator, device=device)[s.rows] if temperature > 0 else None
        tok, lp_s = sample(logits, temperature, top_k, top_p, u=u)  # (b,), (b,)
        # log p(y_t) under the model at T = 1: lp_s itself when the sampled distribution is p
        lp = lp_s if plain else logits.gather(-1, tok[:, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        tok = torch.where(alive, tok, pad_token_id)
        record(rec, s.rows, t, tok, lp, lp_s, alive)
        alive = alive & ~torch.isin(tok, eos)
        if t == max_new_tokens - 1:
            break
        if (t + 1) % CHECK_EVERY.get(device.type, 1) == 0:
            n_alive = int(alive.sum())  # a host sync
            if n_alive == 0:
                break
            if compact and n_alive <= 3 * len(alive) // 4:
                tok, alive = drop_finished(s, tok, alive)
        logits = decode_step(s, tok, t)  # (b, V)
    refuse_non_finite(rec, dtype)
    return rec.rollout(prompt_ids, eos)


def refuse_non_finite(rec, dtype):
    """A UserError naming the first response token drawn from logits that were not finite (NaN or inf)."""
    bad = ~(rec.logp.isfinite() & rec.logp_sampling.isfinite())  # (B, max_new_tokens); 0 past a row's end
    if bool(bad.any()):
        b, t = bad.nonzero()[0].tolist()
        raise UserError(
            f"the model's logits for response token {t} of prompt {b} are not finite (NaN or inf) in {dtype}, "
            "so no token can be drawn from them; check the checkpoint's weights, or sample in float32"
        )


def _settings(model, max_new_tokens, eos_token_ids, cuda_graph, compact, dtype):
    """Check generate's arguments -> (device, the sampler's dtype, compact)."""
    decoder.check_supported(model)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if not eos_token_ids:
        raise ValueError(
            "eos_token_ids is empty; pass the tokenizer's eos_token_ids (e.g. Tokenizer.eos_token_ids)"
        )
    emb = model.model.embed_tokens.weight
    device, dtype = emb.device, dtype or emb.dtype
    if not dtype.is_floating_point:
        raise ValueError(
            f"dtype {dtype}: the sampler computes in a floating-point precision "
            "(torch.float32, torch.bfloat16)"
        )
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph=True needs the model on a CUDA device; it is on {device}")
    if compact is None:
        compact = device.type == "cpu" and not cuda_graph
    if compact and cuda_graph:
        raise ValueError(
            "compact=True changes the decode batch's shape, which a captured CUDA graph cannot "
            "follow; pass compact=False with cuda_graph=True"
        )
    return device, dtype, compact


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
            out[b, : len(r)] = torch.as_tensor(r, dtype=dtype)
    return out.to(device)


# ---- prefill: the prompts into the KV cache ---------------------------------------------------


@dataclass
class _Decoding:
    """What the decode steps share. Its b rows are the batch rows still decoded (all B until
    `drop_finished` drops some)."""

    W: decoder.Weights
    cache: decoder.KVCache  # keys (L, b, H_kv, D, S_max), values (L, b, H_kv, S_max, D)
    key_bias: torch.Tensor  # (b, 1, S_max) additive: 0 on the slots a query may read, -inf on the rest
    cos: torch.Tensor  # (S_max, D) rotary tables
    sin: torch.Tensor  # (S_max, D)
    prompt_len: torch.Tensor  # (b,) long, each row's real prompt tokens: the rotary position of its token 0
    rows: torch.Tensor | slice = field(default_factory=lambda: slice(None))  # (b,) which batch rows these are
    graph: "_CudaGraphDecode | None" = None  # the decode step as a CUDA graph (cuda_graph=True)


def prefill(model, W, prompts, max_new_tokens, pad_token_id):
    """Run the prompts through the decoder into a new KV cache -> (_Decoding, logits (B, V) float32
    that predict each row's first response token).

    Cache slots: [0, c) the tokens every prompt starts with, [c, P) the rest of each prompt
    left-padded, then one slot per decode step. Plainly, this is the (B, P) left-padded batch run
    at once, each column attending causally to its row's real tokens; the shared prefix and each
    prompt that repeats run once instead, which gives every row the same keys, values and logits up
    to float rounding.
    """
    device, B, P = W.embed.device, len(prompts), max(len(p) for p in prompts)
    S_max, L, w0 = P + max_new_tokens, len(W.layers), W.layers[0]
    unique, inverse = _distinct(prompts)
    c = decoder.shared_prefix(unique)
    rest_ids, rest_mask = left_pad([p[c:] for p in unique], pad_token_id, device)  # (B_u, R), R = P - c
    cache = decoder.KVCache(L, len(unique), w0.kv_heads, S_max, w0.head_dim, W.dtype, device)
    cos, sin = decoder.rope_tables(model, S_max, W.dtype, device)  # (S_max, D)
    if c:
        _prefill_shared_prefix(W, unique[0][:c], cache, cos, sin)
    h = _prefill_rows(W, rest_ids, rest_mask, c, cache, cos, sin)  # (B_u, 1, d)
    cache.pos = P
    if len(unique) < B:
        h, rest_mask = _copy_prompt_rows(cache, inverse, h, rest_mask)  # (B, 1, d), (B, R)
    key_bias = torch.full((B, 1, S_max), float("-inf"), device=device)  # the prefix and real prompt slots: 0
    key_bias[:, 0, :c] = 0.0
    key_bias[:, 0, c:P].masked_fill_(rest_mask, 0.0)
    prompt_len = torch.tensor([len(p) for p in prompts], device=device)  # (B,)
    return _Decoding(W, cache, key_bias, cos, sin, prompt_len), decoder.lm_head(W, h[:, -1])


def _distinct(prompts):
    """-> (the distinct prompts in order of first appearance, each row's index among them)."""
    index = {}
    inverse = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(p) for p in index], inverse


def _prefill_shared_prefix(W, ids, cache, cos, sin):
    """Optimisation: the c tokens every prompt starts with run once, on one row, and their keys and
    values are copied into every row's slots [0, c); equals running them in every row (up to
    float rounding)."""
    c, device = len(ids), cache.kt.device
    one = decoder.KVCache(len(W.layers), 1, cache.kt.shape[2], c, cache.kt.shape[3], W.dtype, device)
    causal = torch.ones(c, c, dtype=torch.bool, device=device).tril()[None, None]  # (1, 1, c, c)
    # keys and values only
    decoder.forward(
        W, torch.tensor([ids], device=device), cos[None, :c], sin[None, :c], one, 0, c, causal, out_from=c
    )
    cache.kt[..., :c], cache.v[:, :, :, :c] = one.kt, one.v  # broadcast over the batch


def _prefill_rows(W, ids, mask, c, cache, cos, sin):
    """Each row's prompt after the shared prefix, ids and mask (n, R) left-padded, into cache slots
    [c, c + R): each column reads the prefix and, causally, its row's real tokens (a pad column
    itself only) -> the final-normed hidden state (n, 1, d) of each row's last column."""
    n, R = ids.shape
    positions = c + (mask.long().cumsum(-1) - 1).clamp(min=0)  # (n, R) per-row rotary positions
    causal = torch.ones(R, R, dtype=torch.bool, device=ids.device).tril()  # (R, R)
    eye = torch.eye(R, dtype=torch.bool, device=ids.device)
    attend = (mask[:, None, None, :] & causal) | eye  # (n, 1, R, R); pad queries see themselves
    attend = torch.cat([attend.new_ones(n, 1, R, c), attend], dim=-1)  # (n, 1, R, c + R)
    return decoder.forward(W, ids, cos[positions], sin[positions], cache, c, c + R, attend, out_from=R - 1)


def _copy_prompt_rows(cache, inverse, h, mask):
    """Optimisation: each distinct prompt was prefilled once (`_distinct`); every row gets copies of
    its prompt's cache rows, last hidden state and mask; equals prefilling every row (up to float
    rounding)."""
    idx = torch.tensor(inverse, device=h.device)  # (B,) each row's prefilled row
    cache.kt, cache.v = cache.kt[:, idx], cache.v[:, idx]
    return h[idx], mask[idx]


# ---- decode: one token for every row ----------------------------------------------------------


def decode_step(s, tok, t):
    """Token t of every decoded row, tok (b,), through the decoder into the next cache slot ->
    logits (b, V) float32 that predict token t + 1."""
    slot = s.cache.pos  # every row writes its token t into this slot
    s.key_bias[:, :, slot] = 0.0
    pos = s.prompt_len + t  # (b,) the row's rotary position of token t
    if s.graph is not None:
        logits = s.graph(tok, slot, pos)
    else:
        logits = _decoder_logits(s, tok[:, None], slot, slot + 1, pos)
    s.cache.pos += 1
    return logits


def _decoder_logits(s, tok, slot, kv_len, pos):
    """The decoder and the output layer on one token per row, tok (b, 1) at rotary positions pos
    (b,): its keys and values into cache `slot`, attention over slots [0, kv_len) -> (b, V) float32."""
    # (b, 1, d)
    h = decoder.forward(
        s.W, tok, s.cos[pos][:, None], s.sin[pos][:, None], s.cache, slot, kv_len, s.key_bias[:, :, :kv_len]
    )
    return decoder.lm_head(s.W, h[:, -1])  # (b, V)


class _CudaGraphDecode:
    """Optimisation (cuda_graph=True): decode_step's decoder and output layer captured once as a
    CUDA graph and replayed every step; equals the eager step up to float rounding (attention runs
    over the whole preallocated cache, the slots not yet written masked).

    Static buffers: the input token, the cache slot and each row's rotary position; the graph reads
    the cache and the additive key mask (B, 1, S_max) in place, and replaying leaves the float32
    logits in `self.logits`. Sampling runs outside the graph.
    """

    def __init__(self, s):
        B, dev = s.key_bias.shape[0], s.key_bias.device
        self.s = s
        self.tok = torch.zeros(B, 1, dtype=torch.long, device=dev)  # (B, 1)
        self.slot = torch.zeros(1, dtype=torch.long, device=dev)  # the cache slot written this step
        self.pos = torch.zeros(B, dtype=torch.long, device=dev)  # (B,) rotary positions
        self.graph = None

    def _step(self):
        return _decoder_logits(self.s, self.tok, self.slot, self.s.key_bias.shape[-1], self.pos)  # (B, V)

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


def drop_finished(s, tok, alive):
    """Optimisation (CPU, compact): the finished rows leave the decode batch, with their cache rows;
    equals decoding them on (generate draws every row's uniform each step, so each row's tokens are
    the same; its log-probs up to float rounding). -> tok, alive of the rows kept."""
    keep = alive.nonzero().squeeze(1)
    s.rows = keep if isinstance(s.rows, slice) else s.rows[keep]
    s.prompt_len, s.key_bias = s.prompt_len[keep], s.key_bias[keep]
    s.cache.kt, s.cache.v = s.cache.kt[:, keep], s.cache.v[:, keep]
    return tok[keep], alive[keep]


# ---- the record of each step ------------------------------------------------------------------


@dataclass
class _Record:
    """The Rollout's tensors while decoding, (B, max_new_tokens) each."""

    response: torch.Tensor  # long, pad_token_id where nothing was written
    mask: torch.Tensor  # bool, True up to and including the EOS
    logp: torch.Tensor  # float32
    logp_sampling: torch.Tensor  # float32

    @classmethod
    def empty(cls, B, n, pad_token_id, device):
        return cls(
            response=torch.full((B, n), pad_token_id, dtype=torch.long, device=device),
            mask=torch.zeros(B, n, dtype=torch.bool, device=device),
            logp=torch.zeros(B, n, device=device),
            logp_sampling=torch.zeros(B, n, device=device),
        )

    def rollout(self, prompt_ids, eos) -> Rollout:
        """The Rollout, cut to T = the longest response's length columns."""
        lengths = self.mask.sum(-1)  # (B,)
        T = max(int(lengths.max()), 1)  # one host sync, at the end
        finished = (torch.isin(self.response, eos) & self.mask).any(-1)  # (B,) the row emitted an EOS
        cut = lambda x: x[:, :T].contiguous()  # (B, T)
        return Rollout(
            prompt_ids=prompt_ids,
            response=cut(self.response),
            logp=cut(self.logp),
            logp_sampling=cut(self.logp_sampling),
            finished=finished,
            truncated=~finished,
            lengths=lengths,
        )


def record(rec, rows, t, tok, lp, lp_s, alive):
    """Step t of the decoded batch rows `rows` into the record: the token (the pad id once a row
    has ended), whether it is part of the response, and its log-probs (0 past the row's end)."""
    rec.response[rows, t] = tok
    rec.mask[rows, t] = alive
    rec.logp[rows, t] = torch.where(alive, lp, 0.0)
    rec.logp_sampling[rows, t] = torch.where(alive, lp_s, 0.0)


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
    own tokens, so it equals scoring that pair alone. Gradients flow when grad mode is on (the
    student's training forward); wrap a teacher call in torch.no_grad(). With return_hidden=True,
    out is instead the final-normed hidden states (B, T, d) at the same positions, for
    losses.chunked_loss with the model's output layer (`model.lm_head.weight`): no (B, T, V)
    logits are made.

    impl: "transformers" is the definition, the model's own forward on the padded batch (contexts
    left-padded, responses right-padded: `_score_padded`). "ours" is an optimisation, packed.py's
    forward (fused q/k/v and gate/up products, the contexts' shared prefix and each repeated
    context run once, no work on padding): the same numbers up to float rounding. "auto" (default)
    takes "ours" where it applies (`decoder.writes_out`: not under FSDP, not with activation
    checkpointing) and "transformers" elsewhere.
    """
    if len(contexts) != len(responses) or not contexts:
        raise ValueError(
            f"score needs as many contexts as responses (got {len(contexts)} and "
            f"{len(responses)}), at least one"
        )
    if any(len(c) == 0 for c in contexts):
        raise ValueError(
            "every context needs at least one token (the last context token predicts the first "
            "response token)"
        )
    if impl == "auto":
        impl = "ours" if decoder.writes_out(model) else "transformers"
    if impl == "transformers":
        out, mask, tokens = _score_padded(model, contexts, responses, return_hidden)
    elif impl == "ours":
        out, mask, tokens = _score_packed(model, contexts, responses, return_hidden)
    else:
        raise ValueError(f"impl must be 'auto', 'ours' or 'transformers'; got {impl!r}")
    if return_hidden or return_logits:
        return out, mask
    logp = out.float().log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)  # (B, T)
    return logp.masked_fill(~mask, 0.0), mask


def _score_padded(model, contexts, responses, return_hidden):
    """The model's own forward on the padded batch: contexts left-padded to P columns, responses
    right-padded to T, column P - 1 + t predicting response token t -> (logits (B, T, V), or the
    hidden states (B, T, d) with return_hidden; the response mask (B, T); the tokens (B, T))."""
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
        return out.last_hidden_state[:, P - 1 : P + T - 1], resp_mask, tokens
    out = model(
        input_ids=ids,
        attention_mask=mask.long(),
        position_ids=positions,
        logits_to_keep=T + 1,
        use_cache=False,
    )
    return out.logits[:, :-1], resp_mask, tokens  # (B, T, V): column P-1+t predicts response token t


def _score_packed(model, contexts, responses, return_hidden):
    """Optimisation: packed.py's forward, then the output layer on its hidden states; equals
    `_score_padded` up to float rounding. Same return as `_score_padded`."""
    if not decoder.writes_out(model):
        decoder.check_supported(model)  # names what is unsupported, if that is the reason
        raise ValueError(
            "score(impl='ours') cannot run this model: it is sharded by FSDP or uses activation "
            "checkpointing, which only its own forward applies; use impl='auto' or "
            "'transformers'"
        )
    hidden, resp_mask = packed.response_hidden(model, contexts, responses)  # (B, T, d): predicts token t
    if return_hidden:
        return hidden, resp_mask, None
    logits = F.linear(hidden, model.lm_head.weight, model.lm_head.bias)  # (B, T, V)
    return logits, resp_mask, pad_right(responses, 0, logits.device)[:, : logits.shape[1]]
