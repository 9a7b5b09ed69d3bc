"""Tokens/s of rollout.generate against transformers' generate, same model, prompts and sampling.

What it measures
    Generated tokens per second (batch x new tokens / wall time, prefill included, warm-up run
    excluded) of `rollout.generate` and of `model.generate(do_sample=True)` on one random-init
    model, the same left-padded prompts and the same sampling settings (T=1, no top-k/top-p by
    default; transformers is told top_k=0 explicitly, its default is 50). Runs alternate
    (ours, theirs, ours, theirs, ...) so a neighbour loading the machine hits both alike; the
    table reports the median of `--repeats` runs and the ratio. EOS is an id the model cannot
    emit, so every row runs the full length in both.

Why
    Sampling is a large share of every OPD step (docs/design.md); the goals are >= 2.5x transformers
    at batch 32 on the tiny model and >= 1.2x with the 151,936-token Qwen vocabulary, on CPU
    (docs/performance.md has the measured ratios).

Commands
    python bench/bench_rollout.py                                  # CPU: tiny and qwen-vocab, batch 1 8 32 64
    python bench/bench_rollout.py --threads 2 --shapes tiny        # other thread count / one shape
    python bench/bench_rollout.py --device cuda --shapes qwen3-1.7b --new-tokens 256 --cuda-graph \
        --peak-gbps 3350
    python bench/bench_rollout.py --device cuda --shapes qwen3-1.7b --batch 64 --prompt-len 256 \
        --new-tokens 3840 --repeats 1 --cuda-graph --hf static-compile --peak-gbps 4800   # 64 x 4096, H200

Shapes (all random init, nothing downloaded): bench/shapes.py (tiny, qwen-vocab, qwen3-0.6b,
    qwen3-1.7b, qwen3-8b).

What it simplifies
    The baseline is transformers' generate with its default dynamic cache (`--hf dynamic`), or with
    a preallocated static cache whose forward transformers compiles itself (`--hf static-compile`:
    cache_implementation="static", torch.compile mode "reduce-overhead", i.e. CUDA graphs on a GPU;
    on CPU the compile is forced through CompileConfig). Compilation happens in the warm-up run and
    is not timed. One prompt length for all rows (--prompt-len, with a few tokens cut from every
    other row so left padding is exercised); memory bandwidth on CUDA counts the weights plus the
    mean KV cache read per decode step, an estimate.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules

import torch
import transformers

import models
import rollout
from shapes import build

# ---- config ----------------------------------------------------------------------------------
p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
# what to run
p.add_argument("--shapes", nargs="+", default=["tiny", "qwen-vocab"], help="model shapes (see the docstring)")
p.add_argument("--batch", nargs="+", type=int, default=[1, 8, 32, 64], help="batch sizes")
p.add_argument("--prompt-len", type=int, default=64, help="prompt tokens per row (every other row 8 shorter)")
p.add_argument("--new-tokens", type=int, default=64, help="tokens generated per row")
p.add_argument("--repeats", type=int, default=3, help="timed runs of each side (median reported)")
# sampling
p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
p.add_argument("--top-k", type=int, default=0, help="top-k (0 = off)")
p.add_argument("--top-p", type=float, default=1.0, help="top-p (1 = off)")
# hardware
p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
p.add_argument(
    "--dtype",
    default=None,
    choices=["float32", "bfloat16", "float16"],
    help="default: bf16 on CUDA, fp32 on CPU",
)
p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
p.add_argument(
    "--cuda-graph",
    action="store_true",
    help="also time rollout.generate with the decode step as a CUDA graph",
)
p.add_argument(
    "--peak-gbps",
    type=float,
    default=None,
    help="the GPU's peak memory bandwidth, to print utilisation (H100 SXM: 3350)",
)
p.add_argument(
    "--skip-hf",
    action="store_true",
    help="time rollout.generate only (for shapes where transformers is too slow)",
)
p.add_argument(
    "--hf",
    default="dynamic",
    choices=["dynamic", "static-compile"],
    help="the transformers baseline: default dynamic cache, or static cache + its torch.compile",
)
args = p.parse_args()


# ---- plumbing --------------------------------------------------------------------------------
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def prompts_for(batch, vocab, gen):
    """`batch` prompts of random ids below 256 (bytes), every other one 8 tokens shorter."""
    lens = [args.prompt_len - (8 if b % 2 else 0) for b in range(batch)]
    return [torch.randint(0, min(vocab, 256), (n,), generator=gen).tolist() for n in lens]


def run_ours(model, prompts, eos, cuda_graph, device):
    gen = torch.Generator(device=device).manual_seed(0)
    sync(device)
    t0 = time.perf_counter()
    ro = rollout.generate(
        model,
        prompts,
        args.new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        eos_token_ids=[eos],
        pad_token_id=0,
        generator=gen,
        cuda_graph=cuda_graph,
    )
    sync(device)
    dt = time.perf_counter() - t0
    assert int(ro.lengths.sum()) == len(prompts) * args.new_tokens
    return dt


def run_hf(model, prompts, eos, device):
    ids, mask = rollout.left_pad(prompts, 0, device)
    kw = dict(do_sample=True, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    if args.temperature == 0:
        kw = dict(do_sample=False)
    if args.hf == "static-compile":
        compile_config = transformers.CompileConfig()
        compile_config._compile_all_devices = True  # transformers compiles on CUDA only unless told
        kw.update(cache_implementation="static", compile_config=compile_config)
    sync(device)
    t0 = time.perf_counter()
    out = model.generate(
        ids,
        attention_mask=mask.long(),
        max_new_tokens=args.new_tokens,
        eos_token_id=eos,
        pad_token_id=0,
        **kw,
    )
    sync(device)
    dt = time.perf_counter() - t0
    assert out.shape[1] == ids.shape[1] + args.new_tokens
    return dt


def main():
    device = torch.device(args.device) if args.device else models.default_device()
    dtype = getattr(torch, args.dtype) if args.dtype else models.default_dtype(device)
    torch.set_num_threads(args.threads)
    cpu = f"CPU, {torch.get_num_threads()} thread(s)"
    name = torch.cuda.get_device_name() if device.type == "cuda" else cpu
    print(
        f"device: {name}; dtype {dtype}; torch {torch.__version__}; transformers {transformers.__version__}"
    )
    baseline = "static cache + torch.compile" if args.hf == "static-compile" else "dynamic cache"
    print(f"transformers baseline: {baseline}")
    print(
        f"prompt {args.prompt_len} tokens, {args.new_tokens} new tokens, T={args.temperature} "
        f"top_k={args.top_k} top_p={args.top_p}; median of {args.repeats} interleaved runs after one "
        "warm-up; tokens/s = B*new/wall"
    )
    cols = ["shape", "params", "batch", "ours tok/s", "HF tok/s", "ratio"]
    if args.cuda_graph:
        cols += ["graph tok/s", "graph ratio"]
    if device.type == "cuda":
        cols += ["GB/s (best)"] + (["MBU"] if args.peak_gbps else [])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for shape in args.shapes:
        model = build(shape, device, dtype)
        n_params = sum(p.numel() for p in model.parameters())
        V = model.config.vocab_size
        eos = V + 1  # an id the model cannot emit: every row runs the full length
        for batch in args.batch:
            prompts = prompts_for(batch, V, torch.Generator().manual_seed(batch))
            sides = {"ours": lambda: run_ours(model, prompts, eos, False, device)}
            if not args.skip_hf:
                sides["hf"] = lambda: run_hf(model, prompts, eos, device)
            if args.cuda_graph:
                sides["graph"] = lambda: run_ours(model, prompts, eos, True, device)
            times = {k: [] for k in sides}
            for k, f in sides.items():  # warm-up (and transformers' compilation with --hf static-compile)
                f()
            compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            if args.hf == "static-compile" and "hf" in sides and not compiled:
                raise RuntimeError(
                    "--hf static-compile: transformers' generate compiled nothing; "
                    "the baseline would be eager"
                )
            for _ in range(args.repeats):
                for k, f in sides.items():
                    times[k].append(f())
            tps = {k: batch * args.new_tokens / statistics.median(v) for k, v in times.items()}
            row = [shape, f"{n_params / 1e6:.1f}M", str(batch), f"{tps['ours']:,.0f}"]
            row += [f"{tps['hf']:,.0f}", f"{tps['ours'] / tps['hf']:.2f}x"] if "hf" in tps else ["-", "-"]
            if args.cuda_graph:
                row += [f"{tps['graph']:,.0f}", f"{tps['graph'] / tps['hf']:.2f}x" if "hf" in tps else "-"]
            if device.type == "cuda":
                # bytes read per decode step: every weight once + the mean KV cache (keys and values)
                cfg = model.config
                kv_per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim
                kv_per_token *= dtype.itemsize
                mean_len = args.prompt_len + args.new_tokens / 2
                step_bytes = n_params * dtype.itemsize + batch * mean_len * kv_per_token
                best = max(tps.get("graph", 0), tps["ours"]) / batch  # decode steps per second
                gbps = step_bytes * best / 1e9
                row += [f"{gbps:,.0f}"] + ([f"{100 * gbps / args.peak_gbps:.0f}%"] if args.peak_gbps else [])
            print("| " + " | ".join(row) + " |", flush=True)
        model = sides = None  # free this shape's weights before the next is built


if __name__ == "__main__":
    main()
