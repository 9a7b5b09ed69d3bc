"""Scoring, packed: an optimisation of `rollout.score(impl="transformers")`.

What this file is
    `response_hidden` computes what the model's own forward computes on the padded batch of
    contexts + responses (rollout.score with impl="transformers", the definition), the same
    numbers up to float rounding: tests/test_score.py checks the logits and the weight
    gradients against it. It is rollout.score's impl="ours" (the default "auto" wherever
    decoder.writes_out). What it saves, against the padded batch:
      * the tokens every context starts with (`decoder.shared_prefix`: a chat template's opening,
        a shared system prompt or rule) run once, not once per row;
      * a context that repeats (GRPO's G samples of each prompt) runs once up to its last token;
      * norms, projections and MLPs run on real tokens only: only attention sees padding;
      * the last layer computes queries, output projection and MLP only at the positions that
        predict a response token;
      * decoder.weights fuses q/k/v and gate/up into one matrix product each on CPU.

Paper
    docs/paper.md §2.1: every token of the student's response is scored under the teacher (no
    gradient) and under the student (with gradients); this forward serves both.

Command
    `pytest -q tests/test_score.py -k score` (values and gradients against the model's own
    forward); `python bench/bench_step.py --forward transformers` times the step without it.

Layout
    Each row is context + response with positions 0, 1, ... and causal attention among its own
    tokens. The tokens run in three levels, packed end to end into one (N,) sequence: [0, a) the
    shared prefix, [a, b) each distinct context's middle (its tokens after the prefix but the
    last; only when contexts repeat), [b, N) each row's own tokens (the rest of its context and its
    response). Each level attends to the keys and values of the levels above it and, causally, to
    its own; `_Packing` maps a level between its packed tokens and the padded (n, L) layout that
    attention reads.

What it simplifies
    * The models decoder.py writes out, with their weights whole (no FSDP) and no activation
      checkpointing (rollout.score falls back to the model's own forward there).
    * No KV cache between calls: every call runs its contexts from the start.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import decoder


class _Packing:
    """Ragged rows of the given lengths, packed end to end (the projections' layout), and their
    padded (n, L) layout (attention's), with the index maps between the two."""

    def __init__(self, lens: list, device):
        self.n, self.L = len(lens), max(lens)
        self.real = torch.arange(self.L)[None, :] < torch.tensor(lens)[:, None]  # (n, L)
        self.total = sum(lens)
        from_padded = self.real.flatten().nonzero().squeeze(1)  # the padded slot of each packed token
        # the packed index of each padded slot; pads read an appended zero row
        to_padded = torch.full((self.n * self.L,), self.total, dtype=torch.long)
        to_padded[from_padded] = torch.arange(self.total)
        self.from_padded, self.to_padded = from_padded.to(device), to_padded.to(device)

    def pad(self, t):
        """Packed rows (total, heads, D) -> (n, heads, L, D), zeros at pads."""
        t = torch.cat([t, t.new_zeros(1, *t.shape[1:])]).index_select(0, self.to_padded)
        return t.unflatten(0, (self.n, self.L)).transpose(1, 2)

    def unpad(self, o):
        """Attention outputs (n, heads, L, D) -> the packed rows' (total, heads * D)."""
        return o.transpose(1, 2).reshape(self.n * self.L, -1).index_select(0, self.from_padded)


@dataclass
class _Plan:
    """What the layers read besides the weights: the packed tokens and their rotary tables, the
    levels, their attention masks (True = may attend), and where the returned positions are."""

    ids: torch.Tensor  # (N,) long: the prefix, the middles, the rows' own tokens
    cos: torch.Tensor  # (N, 1, D): broadcast over heads
    sin: torch.Tensor  # (N, 1, D)
    c: int  # packed tokens [0, c): the shared prefix
    a: int  # [a, b): the middles
    b: int  # [b, N): the rows' own tokens
    R: _Packing  # the rows' own tokens, (B, U) padded
    M: _Packing | None  # the distinct contexts' middles, (n_g, Pm) padded; None without middles
    row_group: torch.Tensor | None  # (B,) long: each row's middle
    prefix_mask: torch.Tensor  # (1, 1, c, c)
    mid_mask: torch.Tensor | None  # (n_g, 1, Pm, c + Pm)
    tail_mask: torch.Tensor  # (B, 1, U, c [+ Pm] + U)
    q0: int  # the earliest returned column among the rows' own tokens
    out_query: torch.Tensor  # (n_out,) each returned token's slot among the last layer's (B, U - q0) queries
    out_packed: torch.Tensor  # (n_out,) its index among the packed own tokens
    out_mask: torch.Tensor  # (B, T) bool on CPU: the real response tokens, in (row, t) order


def response_hidden(model, contexts, responses):
    """Final-normed hidden states (B, T, d) at the positions that predict each response token
    (row b, column t predicts responses[b][t]; T = the longest response, zeros past a row's end),
    and the (B, T) bool mask of real response tokens; gradients flow when grad mode is on. Each
    row equals that context + response scored alone up to float rounding."""
    p = _plan(model, contexts, responses)
    W = decoder.weights(model)
    x = F.embedding(p.ids, W.embed)  # (N, d)
    for i, w in enumerate(W.layers):
        x = _layer(w, x, p, last=i == len(W.layers) - 1)  # (N, d); after the last layer (n_out, d)
    h = decoder.rms_norm(x, W.norm, W.norm_eps)  # (n_out, d) the returned tokens in (row, t) order
    B, T = p.out_mask.shape
    slots = p.out_mask.flatten().nonzero().squeeze(1).to(h.device)
    out = h.new_zeros(B * T, h.shape[-1]).index_copy(0, slots, h)
    return out.view(B, T, h.shape[-1]), p.out_mask.to(h.device)


def _layer(w, x, p, last):
    """One decoder layer over the packed tokens x (N, d) -> (N, d); the last layer returns only the
    returned positions, (n_out, d). Norms, projections and the MLP run on the packed tokens; each
    level's attention on its padded layout, reading the keys and values of the levels above it."""
    H, D, B, c, a, b = w.heads, w.head_dim, p.R.n, p.c, p.a, p.b
    q, k, v = decoder.project_qkv(w, x, p.cos, p.sin)  # (N, H, D), (N, H_kv, D), (N, H_kv, D)
    kp, vp = k[:c].transpose(0, 1)[None], v[:c].transpose(0, 1)[None]  # (1, H_kv, c, D)
    above_k, above_v = [kp.expand(B, -1, -1, -1)], [vp.expand(B, -1, -1, -1)]  # what the own tokens read
    if p.M is not None:
        km, vm = p.M.pad(k[a:b]), p.M.pad(v[a:b])  # (n_g, H_kv, Pm, D)
        above_k.append(km.index_select(0, p.row_group))
        above_v.append(vm.index_select(0, p.row_group))
    kt = torch.cat(above_k + [p.R.pad(k[b:])], dim=2)  # (B, H_kv, c [+ Pm] + U, D)
    vt = torch.cat(above_v + [p.R.pad(v[b:])], dim=2)
    if last:  # the returned positions only: queries from column q0, then those tokens
        o = decoder.attend(w, p.R.pad(q[b:])[:, :, p.q0 :], kt, vt, p.tail_mask[:, :, p.q0 :])  # (B,H,U-q0,D)
        o = o.transpose(1, 2).reshape(B * (p.R.L - p.q0), H * D).index_select(0, p.out_query)  # (n_out, H*D)
        return decoder.out_and_mlp(w, x[b:].index_select(0, p.out_packed), o)
    o = [p.R.unpad(decoder.attend(w, p.R.pad(q[b:]), kt, vt, p.tail_mask))]  # (n_own, H*D)
    if p.M is not None:
        km = torch.cat([kp.expand(p.M.n, -1, -1, -1), km], dim=2)  # (n_g, H_kv, c + Pm, D): prefix and own
        vm = torch.cat([vp.expand(p.M.n, -1, -1, -1), vm], dim=2)
        o.insert(0, p.M.unpad(decoder.attend(w, p.M.pad(q[a:b]), km, vm, p.mid_mask)))
    if c:
        op = decoder.attend(w, q[:c].transpose(0, 1)[None], kp, vp, p.prefix_mask)  # (1, H, c, D)
        o.insert(0, op[0].transpose(0, 1).reshape(c, H * D))
    return decoder.out_and_mlp(w, x, o[0] if len(o) == 1 else torch.cat(o))  # (N, d)


def _plan(model, contexts, responses) -> _Plan:
    """The packed tokens, their positions and rotary tables, the levels' masks, the returned positions."""
    emb = model.model.embed_tokens.weight
    device = emb.device
    c, group, mids, tails, starts = _levels(contexts, responses)
    R = _Packing([len(t) for t in tails], device)
    M = _Packing([len(t) for t in mids], device) if mids else None
    q0, out_query, out_packed, out_mask = _returned(contexts, responses, starts, R, device)
    # (N,)
    ids = torch.tensor(
        list(contexts[0][:c]) + [t for mid in mids for t in mid] + [t for tail in tails for t in tail],
        dtype=torch.long,
        device=device,
    )
    pos = torch.cat(
        [torch.arange(c)]
        + [torch.arange(c, c + len(t)) for t in mids]
        + [torch.arange(s, s + len(t)) for s, t in zip(starts, tails)]
    ).to(device)  # (N,)
    n_pos = max(s + len(t) for s, t in zip(starts, tails))
    cos_table, sin_table = decoder.rope_tables(model, n_pos, emb.dtype, device)  # (n_pos, D)
    prefix_mask, mid_mask, tail_mask, row_group = _masks(c, group, R, M, device)
    return _Plan(
        ids=ids,
        cos=cos_table[pos][:, None],
        sin=sin_table[pos][:, None],
        c=c,
        a=c,
        b=c + (M.total if M is not None else 0),
        R=R,
        M=M,
        row_group=row_group,
        prefix_mask=prefix_mask,
        mid_mask=mid_mask,
        tail_mask=tail_mask,
        q0=q0,
        out_query=out_query,
        out_packed=out_packed,
        out_mask=out_mask,
    )


def _levels(contexts, responses):
    """Each row's tokens by level -> (c, group, mids, tails, starts): c the shared prefix's length;
    group (B,) each row's distinct context; mids each distinct context's middle ([] when no context
    repeats or none has a token beyond the prefix and its last); tails each row's own tokens;
    starts the position of each row's first own token."""
    c = decoder.shared_prefix(contexts)
    distinct = {}  # each distinct context -> its index, in order of first appearance
    group = [distinct.setdefault(tuple(x), len(distinct)) for x in contexts]  # (B,) the row's context
    mids = [list(x[c:-1]) for x in distinct]  # each distinct context's tokens after the prefix, but its last
    if len(distinct) == len(contexts) or not any(mids):  # nothing to share beyond the prefix
        mids = []
    if mids:
        tails = [[x[-1]] + list(r) for x, r in zip(contexts, responses)]  # its last context token, response
        starts = [c + len(mids[g]) for g in group]
    else:
        tails = [list(x[c:]) + list(r) for x, r in zip(contexts, responses)]
        starts = [c] * len(contexts)
    return c, group, mids, tails, starts


def _returned(contexts, responses, starts, R, device):
    """The returned positions, row b's own columns len(context_b) - start_b - 1, ... (one per
    response token) -> (q0 the earliest of them, out_query, out_packed, out_mask): see _Plan."""
    B, T, U = len(contexts), max(len(r) for r in responses), R.L
    first = torch.tensor([len(x) - s - 1 for x, s in zip(contexts, starts)])  # (B,)
    out_mask = torch.arange(T)[None, :] < torch.tensor([len(r) for r in responses])[:, None]  # (B, T)
    q0 = int(first.min())  # the last layer's queries start at the earliest returned column
    cols = (first[:, None] + torch.arange(T)[None, :])[out_mask]  # own column of each returned token
    rows = torch.arange(B)[:, None].expand(B, T)[out_mask]
    out_packed = R.to_padded[(rows * U + cols).to(device)]  # its index among the packed own tokens
    out_query = (rows * (U - q0) + cols - q0).to(device)  # its slot among the last layer's (B, U - q0)
    return q0, out_query, out_packed, out_mask


def _masks(c, group, R, M, device):
    """The levels' boolean attention masks (True = may attend) -> (prefix_mask, mid_mask,
    tail_mask, row_group): see _Plan; mid_mask and row_group are None without middles."""
    ones = lambda *shape: torch.ones(*shape, dtype=torch.bool, device=device)
    B, U = R.n, R.L
    prefix_mask = ones(c, c).tril()[None, None]  # (1, 1, c, c)
    own = ones(U, U).tril() & R.real.to(device)[:, None, :]  # (B, U, U) causal among a row's real tokens
    if M is None:
        tail_mask = torch.cat([ones(B, U, c), own], dim=-1)[:, None]  # (B, 1, U, c + U): the prefix, its own
        return prefix_mask, None, tail_mask, None
    row_group = torch.tensor(group, device=device)
    real_mid = M.real.to(device)
    # a middle's pad queries also read their own (zero) key, so no query row reads nothing
    own_mid = (ones(M.L, M.L).tril() & real_mid[:, None, :]) | torch.eye(M.L, dtype=torch.bool, device=device)
    mid_mask = torch.cat([ones(M.n, M.L, c), own_mid], dim=-1)[:, None]  # (n_g, 1, Pm, c + Pm)
    # (B, 1, U, c + Pm + U): the prefix, the row's middle, its own
    tail_mask = torch.cat([ones(B, U, c), real_mid[row_group][:, None, :].expand(B, U, M.L), own], dim=-1)[
        :, None
    ]
    return prefix_mask, mid_mask, tail_mask, row_group
