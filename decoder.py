"""The decoder forward of a transformers Llama / Qwen2 / Qwen3 model, written out over its weights.

What this file is
    One function, `forward`, runs the decoder on a batch of token ids from the model's weight
    tensors, with a preallocated KV cache (`KVCache`: the sampler's prefill and decode steps,
    rollout.generate). Its pieces (`project_qkv`, `attend`, `out_and_mlp`, `rms_norm`) are also
    what packed.py's scoring forward runs. `weights` reads the model's weights once per call
    (`Weights`), fusing q/k/v and gate/up into one matrix product each on CPU, and casts them when
    the sampler runs in another precision than the model (a bf16 copy of float32 master weights).
    `check_supported` refuses a model whose forward this would not reproduce, and `writes_out`
    says whether scoring may use it (not under FSDP, not with activation checkpointing).
    `shared_prefix` counts the tokens every prompt starts with (the sampler and packed.py run them
    once).

Paper
    docs/paper.md §2.1: the student samples y ~ p(.|x) and every token of y is scored under the
    teacher and the student; both come from this forward, so the sampler's log-probs are the
    trainer's (the rollout-vs-train mismatch monitor of train_opd.py checks it).

Command
    `pytest -q tests/test_rollout.py` checks it against transformers' own forward and generate.

What it simplifies
    * Full attention only: sliding-window layers and dynamic / longrope rotary scalings raise an
      error (their numerics would silently differ from the model's own forward).
    * A one-token step (decode) attends through two batched products against keys stored
      transposed; longer inputs use torch's scaled_dot_product_attention with a boolean mask.
"""

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM")
STATIC_ROPE = ("default", "linear", "llama3", "yarn")  # inverse frequencies fixed at init


def check_supported(model) -> None:
    """Raise a clear error for a model whose own forward `forward` would not reproduce."""
    name = type(model).__name__.removeprefix("FSDP")  # FSDP2 subclasses the model: FSDPQwen3ForCausalLM
    if name not in SUPPORTED:
        raise ValueError(
            f"decoder.py writes out the forward of {', '.join(SUPPORTED)}; got {name} "
            f"(model_type {getattr(model.config, 'model_type', '?')!r}). Add its forward to decoder.forward, "
            "or sample with transformers' generate"
        )
    layer_types = getattr(model.config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ValueError(
            f"{name} has sliding-window layers ({sorted(set(layer_types))}); "
            "decoder.py supports full attention only"
        )
    # The written-out forward reads each projection's .weight and .bias, which is what a module
    # computes when its forward is nn.Linear's: a plain Linear, or one whose weight is a
    # parametrization (lora.py's adapters: .weight is then the adapted weight). A PEFT adapter
    # or a quantised layer put in a projection's place would be silently left out.
    for i, layer in enumerate(model.model.layers):
        for part in (layer.self_attn, layer.mlp):
            for pname, proj in part.named_children():
                if pname.endswith("_proj") and not (
                    isinstance(proj, torch.nn.Linear) and type(proj).forward is torch.nn.Linear.forward
                ):
                    raise ValueError(
                        f"{name}: layer {i}'s {pname} is a {type(proj).__name__}, not a "
                        "torch.nn.Linear; decoder.py reads linear weights only (merge "
                        "adapters first, or use transformers' generate and forward)"
                    )
    rope_type = model.model.rotary_emb.rope_type
    if rope_type not in STATIC_ROPE:
        raise ValueError(
            f"{name} uses rope_type {rope_type!r}; decoder.py supports {STATIC_ROPE} "
            "(fixed inverse frequencies)"
        )


class KVCache:
    """Preallocated keys and values for every layer, with one position counter for the batch.

    Keys are stored transposed, (D, slot) per head: a one-token query's attention scores are then
    one batched matrix product against a row-major slice of the cache."""

    def __init__(self, n_layers, batch, n_kv_heads, max_len, head_dim, dtype, device):
        kw = dict(dtype=dtype, device=device)
        self.kt = torch.zeros(n_layers, batch, n_kv_heads, head_dim, max_len, **kw)  # (L, B, H_kv, D, S_max)
        self.v = torch.zeros(n_layers, batch, n_kv_heads, max_len, head_dim, **kw)  # (L, B, H_kv, S_max, D)
        self.pos = 0  # slots [0, pos) are written; every row writes its next token at slot pos


def rms_norm(x, weight, eps):
    """transformers' RMSNorm: normalise in fp32, cast back, then scale by the weight (one fused
    kernel when the model is fp32, where both orders are the same arithmetic)."""
    if x.dtype == torch.float32 and weight.dtype == torch.float32:
        return F.rms_norm(x, weight.shape, weight, eps)
    return weight * F.rms_norm(x.float(), weight.shape, None, eps).to(x.dtype)


@dataclass
class _Layer:
    """One decoder layer's weights as the written-out forward reads them. `qkv` and `gate_up` are
    lists of (weight, bias) whose outputs are concatenated: one fused pair each (two matrix products
    instead of five) or the model's own three and two. q/k norms are one (H + H_kv, D) scale."""

    ln1: torch.Tensor
    ln2: torch.Tensor
    eps: float
    qkv: list
    qk_norm: torch.Tensor | None  # (H + H_kv, D): the q-norm weight on query heads, the k-norm on key heads
    qk_eps: float
    o_w: torch.Tensor
    o_b: torch.Tensor | None
    gate_up: list
    down_w: torch.Tensor
    down_b: torch.Tensor | None
    act: object
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float


def _pairs(modules, fuse: bool) -> list:
    """[(weight, bias)] of linear modules whose outputs are concatenated: one concatenated pair
    (a copy) with fuse, else the modules' own tensors."""
    if not fuse:
        return [(m.weight, m.bias) for m in modules]
    bias = None if modules[0].bias is None else torch.cat([m.bias for m in modules])
    return [(torch.cat([m.weight for m in modules]), bias)]


def _linear_cat(h, pairs):
    if len(pairs) == 1:
        return F.linear(h, *pairs[0])
    return torch.cat([F.linear(h, w, b) for w, b in pairs], dim=-1)


def layer_weights(model, fuse=None) -> list:
    """The `_Layer` of every decoder layer of a transformers Llama / Qwen2 / Qwen3 model.

    fuse (default: on CPU) concatenates q/k/v and gate/up into one matrix each: fewer, larger
    products, which is what sets the time of small models on a CPU. The fused matrices are copies,
    so read them again after an optimizer step (under autograd the concatenation passes the
    gradients back to the weights); on a GPU, where they would cost about 3/4 of the decoder's
    weight memory again, the model's own tensors are read."""
    if fuse is None:
        fuse = model.model.embed_tokens.weight.device.type == "cpu"
    out = []
    for layer in model.model.layers:
        a, mlp = layer.self_attn, layer.mlp
        D = a.head_dim
        H, H_kv = a.q_proj.weight.shape[0] // D, a.k_proj.weight.shape[0] // D
        qk_norm = None
        if hasattr(a, "q_norm"):  # Qwen3: RMSNorm over each head's vector, before rotary
            qk_norm = torch.cat([a.q_norm.weight.expand(H, D), a.k_norm.weight.expand(H_kv, D)])
        out.append(
            _Layer(
                ln1=layer.input_layernorm.weight,
                ln2=layer.post_attention_layernorm.weight,
                eps=layer.input_layernorm.variance_epsilon,
                qkv=_pairs((a.q_proj, a.k_proj, a.v_proj), fuse),
                qk_norm=qk_norm,
                qk_eps=a.q_norm.variance_epsilon if qk_norm is not None else 0.0,
                o_w=a.o_proj.weight,
                o_b=a.o_proj.bias,
                gate_up=_pairs((mlp.gate_proj, mlp.up_proj), fuse),
                down_w=mlp.down_proj.weight,
                down_b=mlp.down_proj.bias,
                act=mlp.act_fn,
                heads=H,
                kv_heads=H_kv,
                head_dim=D,
                scaling=a.scaling,
            )
        )
    return out


@dataclass
class Weights:
    """Every tensor the written-out forward reads, in the precision it computes in: the model's own
    tensors (or fused copies of them on CPU), or copies cast to another dtype (`weights(dtype=...)`)."""

    embed: torch.Tensor
    layers: list  # of _Layer
    norm: torch.Tensor
    norm_eps: float
    head_w: torch.Tensor
    head_b: torch.Tensor | None
    dtype: torch.dtype


def weights(model, fuse=None, dtype=None) -> Weights:
    """The `Weights` of a transformers Llama / Qwen2 / Qwen3 model, read once per rollout or scoring call.

    dtype (default: the model's): compute in this precision from copies of the weights cast to it,
    e.g. a bf16 sampler for a model whose float32 master weights Adam updates. The copies are made
    per call, so they follow every optimizer step; the model's own tensors are left untouched. With
    the model's dtype the tensors are the model's (gradients reach them)."""
    m = model.model
    own = m.embed_tokens.weight.dtype
    dtype = dtype or own
    cast = (lambda t: t) if dtype == own else (lambda t: None if t is None else t.detach().to(dtype))
    layers = layer_weights(model, fuse)
    for w in layers if dtype != own else ():  # every tensor of the layer, and the (weight, bias) lists
        for f in dataclasses.fields(w):
            v = getattr(w, f.name)
            if isinstance(v, torch.Tensor):
                setattr(w, f.name, cast(v))
            elif isinstance(v, list):
                setattr(w, f.name, [(cast(a), cast(b)) for a, b in v])
    embed, head = cast(m.embed_tokens.weight), model.lm_head
    head_w = embed if head.weight is m.embed_tokens.weight else cast(head.weight)  # tied embeddings: one copy
    return Weights(
        embed=embed,
        layers=layers,
        norm=cast(m.norm.weight),
        norm_eps=m.norm.variance_epsilon,
        head_w=head_w,
        head_b=cast(head.bias),
        dtype=dtype,
    )


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
    sin_signed = torch.cat([-sin[:, :half], sin[:, half:]], dim=-1)  # rotate_half(x)*sin = roll(x)*sin_signed
    return cos, sin_signed


def _rope(x, cos, sin_signed):
    # x (..., heads, D); cos/sin broadcast over the heads axis. transformers' x*cos + rotate_half(x)*sin.
    return x * cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * sin_signed


def forward(W, ids, cos, sin, cache, slot, kv_len, mask, out_from=0):
    """Run the decoder on `ids` (B, S) -> final-normed hidden states (B, S - out_from, d) of the
    columns [out_from, S), in W's dtype.

    W: `weights(model)`. cos/sin (B, S, D) per-row rotary tables. With a cache, the
    keys/values of `ids` go into cache slots [slot, slot+S) and attention reads slots [0, kv_len);
    `slot` is an int, or a (1,) long tensor under CUDA graphs (S = 1 then). Without one
    (cache=None: a padded batch run whole, gradients allowed) attention reads the S positions
    themselves.
    mask (B, 1, S, kv_len) bool, True = may attend (scaled_dot_product_attention), or for a
    one-token decode step (S = 1, with a cache) an additive float bias (B, 1, kv_len): 0 where the
    key may be read, -inf where not (two batched products against the transposed keys).
    out_from: the last layer computes its keys and values for every column, but its queries,
    attention, output projection and MLP only for the columns whose hidden states are returned
    (prefill needs the last one, the prompts' shared prefix none: out_from = S). The other
    columns' last-layer outputs feed nothing.
    """
    layers = W.layers
    B, S = ids.shape
    cos, sin = cos[:, :, None], sin[:, :, None]  # (B, S, 1, D): broadcast over heads
    x = F.embedding(ids, W.embed)  # (B, S, d)
    for i, w in enumerate(layers):
        H, H_kv, D = w.heads, w.kv_heads, w.head_dim
        G = H // H_kv
        q, k, v = project_qkv(w, x, cos, sin)  # (B, S, H, D), (B, S, H_kv, D) x 2
        Sq = S
        if out_from and i == len(layers) - 1:  # queries only where outputs are returned
            Sq, q, x, mask = S - out_from, q[:, out_from:], x[:, out_from:], mask[:, :, out_from:]
        if mask.dtype != torch.bool:  # decode (S = 1, an additive bias): one batched product per side
            _write(cache, i, slot, k.permute(0, 2, 3, 1), v.transpose(1, 2))
            kt, vv = cache.kt[i, ..., :kv_len], cache.v[i, :, :, :kv_len]  # (B, H_kv, D, n), (B, H_kv, n, D)
            # GQA: query heads j*G .. j*G+G-1 read KV head j (transformers' repeat_kv), without copying K/V.
            scores = torch.bmm(q.reshape(B * H_kv, G, D), kt.reshape(B * H_kv, D, kv_len))  # (B*H_kv, G, n)
            scores = scores.view(B, H, kv_len).float() * w.scaling + mask  # (B, H, n) float32
            scores = scores.softmax(-1).to(q.dtype)  # fp32 softmax
            o = torch.bmm(scores.view(B * H_kv, G, kv_len), vv.reshape(B * H_kv, kv_len, D)).view(B, 1, H * D)
        else:
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, S, D)
            if cache is not None:
                _write(cache, i, slot, k.transpose(-1, -2), v)
                # (B, H_kv, n, D) each: the keys and values of slots [0, kv_len)
                k, v = cache.kt[i, ..., :kv_len].transpose(-1, -2), cache.v[i, :, :, :kv_len]
            if Sq == 0:  # out_from = S (the shared prefix): its keys and values are all that is needed
                return x
            o = attend(w, q, k, v, mask).transpose(1, 2).reshape(B, Sq, H * D)
        x = out_and_mlp(w, x, o)
    return rms_norm(x, W.norm, W.norm_eps)  # (B, S, d)


def project_qkv(w, x, cos, sin):
    """A layer's queries, keys and values of hidden states x (..., d): input norm, one product for
    q/k/v (or three), per-head q/k norms (Qwen3), rotary on queries and keys together. cos/sin
    broadcast against (..., heads, D). Returns (..., H, D), (..., H_kv, D), (..., H_kv, D)."""
    H, H_kv, D = w.heads, w.kv_heads, w.head_dim
    qkv = _linear_cat(rms_norm(x, w.ln1, w.eps), w.qkv).unflatten(-1, (H + 2 * H_kv, D))
    qk, v = qkv[..., : H + H_kv, :], qkv[..., H + H_kv :, :]
    if w.qk_norm is not None:
        qk = _rms_norm_heads(qk, w.qk_norm, w.qk_eps)
    qk = _rope(qk, cos, sin)
    return qk[..., :H, :], qk[..., H:, :], v


def attend(w, q, k, v, mask):
    """Scaled dot-product attention of q (B, H, Sq, D) over k, v (B, H_kv, n, D) under a boolean
    mask (B, 1, Sq, n) -> (B, H, Sq, D). GQA without copying K/V: each KV head's G query heads
    are folded into the query-length axis (rows (g, s)), as transformers' repeat_kv pairs them."""
    B, H, Sq, D = q.shape
    H_kv, n = k.shape[1], k.shape[2]
    G = H // H_kv
    qmask = mask if G == 1 else mask[:, :, None].expand(B, 1, G, Sq, n).reshape(B, 1, G * Sq, n)
    o = F.scaled_dot_product_attention(q.reshape(B, H_kv, G * Sq, D), k, v, attn_mask=qmask, scale=w.scaling)
    return o.reshape(B, H, Sq, D)


def out_and_mlp(w, x, o):
    """The rest of a layer after attention: output projection and residual, post-attention norm,
    gated MLP and residual. x (..., d) the layer's input, o (..., H*D) the attention output."""
    x = x + F.linear(o, w.o_w, w.o_b)
    gate, up = _linear_cat(rms_norm(x, w.ln2, w.eps), w.gate_up).chunk(2, dim=-1)
    return x + F.linear(w.act(gate) * up, w.down_w, w.down_b)


def _rms_norm_heads(x, weight, eps):
    """RMSNorm over each head's vector with a per-head scale (B, S, heads, D) x (heads, D)."""
    if x.dtype == torch.float32:
        return F.rms_norm(x, (x.shape[-1],), None, eps) * weight
    return weight * F.rms_norm(x.float(), (x.shape[-1],), None, eps).to(x.dtype)


def _write(cache, i, slot, kt, v):
    """Keys kt (B, H_kv, D, S) and values v (B, H_kv, S, D) into layer i's cache slots from `slot`."""
    if isinstance(slot, int):
        S = v.shape[2]
        cache.kt[i, ..., slot : slot + S] = kt
        cache.v[i, :, :, slot : slot + S] = v
    else:  # a (1,) tensor: the CUDA-graph step
        cache.kt[i].index_copy_(3, slot, kt)
        cache.v[i].index_copy_(2, slot, v)


def lm_head(W, h):
    return F.linear(h, W.head_w, W.head_b).float()  # (B, V) float32


def writes_out(model) -> bool:
    """Whether `score` can run the written-out decoder on this model: a supported architecture
    with its weights whole (not sharded by FSDP) and no activation checkpointing (which only the
    model's own forward applies)."""
    try:
        check_supported(model)
    except ValueError:
        return False
    if hasattr(model, "is_activation_checkpointing"):
        checkpointing = model.is_activation_checkpointing
    else:  # the name before transformers 5.x
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    return not type(model).__name__.startswith("FSDP") and not checkpointing


def shared_prefix(contexts) -> int:
    """The number of leading tokens every context shares, less one so that each row keeps its own
    last context token (the one that predicts its first response token); 0 for a single row. The
    sampler's prefill (rollout.py) and packed.py's scoring forward run these tokens once."""
    if len(contexts) < 2:
        return 0
    c, first = min(len(x) for x in contexts) - 1, contexts[0]
    for x in contexts[1:]:
        n = 0
        while n < c and x[n] == first[n]:
            n += 1
        c = n
    return c
