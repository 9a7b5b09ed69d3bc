"""Where the seconds of one OPD step go: rollout, teacher scoring, student forward/backward, optimizer.

    make bench-step                                  # tiny world, CPU, about two minutes
    python bench/bench_step.py --steps 10 --batch-size 64 --threads 2
    python bench/bench_step.py --forward transformers    # score with the models' own forward instead
    python bench/bench_step.py --baseline-rev REV --rounds 3    # this code against git revision REV
    python bench/bench_step.py --algo grpo --threads 1    # a tiny-world GRPO step (train_grpo's preset)
    python bench/bench_step.py --student Qwen/Qwen3-1.7B --teacher Qwen/Qwen3-8B --data dapo \
        --max-new-tokens 4096
    # the paper's shapes, random weights, offline (bench/shapes.py):
    python bench/bench_step.py --student random:qwen3-1.7b --teacher random:qwen3-8b --max-new-tokens 4096 \
        --micro-batch 4 --chunk-size 1024 --rollout-batch 64 --grad-checkpointing --cuda-graph --steps 1 \
        --warmup 1

Runs `--warmup` + `--steps` real OPD steps (train_opd.opd_step: the same code as training, with its
own per-phase timers) from the given models on synthetic or dataset prompts, and prints the mean
seconds of each phase over the measured steps (`--algo grpo`: train_grpo.grpo_step from the
student alone, its tiny preset's 8 samples per prompt and 2 updates per batch), its share of the
step, generated tokens per second and, on CUDA, the peak memory. Beside each phase it prints its
product floor: the FLOPs of its weight products (`product_flops`, over the tokens the packed
forward runs) at the GEMM rates measured in the same process, the time the phase would take if it
were nothing else. `random:SHAPE` builds a model of a bench/shapes.py shape with random weights
and the tiny tokenizer: it rarely emits EOS, so every row runs to the cap. The timers are
opd_step's wall clocks around each phase; on CUDA a phase that ends without a host sync may leave
kernels to the next one (the step total is exact).

The scoring forward: `--forward auto` (default; packed.py's forward wherever it applies),
`ours` (packed.py's) or `transformers` (the models' own); two runs that differ only in
`--forward` compare the teacher and student phases of the two.

`--baseline-rev REV` measures two codes on one machine in one command: the files of git revision
REV (extracted with `git archive` into a temporary folder) and the working tree, each running
this benchmark with the same flags as a subprocess, alternating for `--rounds` rounds so that a
neighbour loading the machine slows both alike; it prints each round's step time and the median
ratio.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules

import torch
import transformers

import common
import config
import data
import decoder
import models
import train_grpo
import train_opd
from shapes import build

PHASES = ("time/rollout_s", "time/teacher_s", "time/student_s", "time/optim_s")
GRPO_PHASES = ("time/rollout_s", "time/reward_s", "time/old_logp_s", "time/student_s")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="tiny/student", help="student: hub id or folder (%(default)s)")
    ap.add_argument("--teacher", default="tiny/teacher", help="teacher: hub id or folder (%(default)s)")
    ap.add_argument("--data", default="synthetic", help="prompt source: synthetic, dapo, ... or a .jsonl")
    ap.add_argument("--loss", default="topk_tail", help="the per-token loss (losses.LOSSES)")
    ap.add_argument(
        "--algo",
        choices=("opd", "grpo"),
        default="opd",
        help="the step timed: train_opd.opd_step (default) or train_grpo.grpo_step (no teacher)",
    )
    ap.add_argument(
        "--batch-size", type=int, default=None, help="prompts per step (default 64; grpo: 32, x 8 samples)"
    )
    ap.add_argument("--micro-batch", type=int, default=0, help="rows per forward/backward (0 = all)")
    ap.add_argument("--max-new-tokens", type=int, default=80, help="response cap")
    ap.add_argument("--chunk-size", type=int, default=0, help="losses.chunked_loss chunk (0 = full logits)")
    ap.add_argument("--rollout-batch", type=int, default=0, help="rows sampled at a time (0 = all)")
    ap.add_argument("--grad-checkpointing", action="store_true", help="activation checkpointing (student)")
    ap.add_argument("--cuda-graph", action="store_true", help="the sampler's decode step as a CUDA graph")
    ap.add_argument(
        "--rollout-dtype",
        choices=sorted(config.SAMPLING_DTYPES),
        help="the precision the student samples in (default: bfloat16 on CUDA, float32 on CPU)",
    )
    ap.add_argument(
        "--teacher-dtype",
        choices=sorted(config.SAMPLING_DTYPES),
        help="the precision the teacher is stored and scores in (default: bfloat16 on CUDA, float32 on CPU)",
    )
    ap.add_argument("--steps", type=int, default=10, help="measured steps")
    ap.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    ap.add_argument(
        "--forward",
        default="auto",
        choices=("auto", "ours", "transformers"),
        help="rollout.score's impl for the teacher and the student (default auto)",
    )
    ap.add_argument("--baseline-rev", default=None, help="also run git revision REV's benchmark, alternating")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --baseline-rev")
    return ap.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.baseline_rev:
        return against(args, argv if argv is not None else sys.argv[1:])
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else models.default_device()
    student, tok = load(args, args.student, torch.float32, device)
    if args.algo == "grpo":
        return grpo(args, student, tok, device)
    return opd(args, student, tok, device)


def load(args, name, dtype, device):
    """(model, tokenizer) of a hub id or folder, or of `random:SHAPE` (bench/shapes.py, random weights)."""
    if name.startswith("random:"):
        return build(
            name.removeprefix("random:"),
            device,
            dtype or models.default_dtype(device),
            max_positions=max(4096, 512 + args.max_new_tokens),
        ), models.tiny_tokenizer()
    return models.load(name, device=device, dtype=dtype)


def opd(args, student, tok, device) -> dict:
    """The seconds of each phase of train_opd.opd_step, and each phase's product floor."""
    args.batch_size = args.batch_size or 64
    teacher, tok_t = load(args, args.teacher, config.SAMPLING_DTYPES.get(args.teacher_dtype), device)
    models.check_compatible((student, tok), (teacher, tok_t))
    teacher.requires_grad_(False)
    if args.grad_checkpointing:
        student.activation_checkpointing_enable()
    n = args.batch_size * (args.steps + args.warmup)
    examples = (
        data.load_examples("synthetic", n=n, split="train")
        if args.data == "synthetic"
        else data.load_examples(args.data)
    )
    cfg = dict(
        train_opd.PRESETS["tiny"],
        loss=args.loss,
        micro_batch=args.micro_batch or args.batch_size,
        max_new_tokens=args.max_new_tokens,
        rollout_batch=args.rollout_batch,
        rollout_dtype=args.rollout_dtype,
        chunk_size=args.chunk_size,
        amp=device.type == "cuda",
        cuda_graph=args.cuda_graph,
        forward=args.forward,
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-6, betas=(0.9, 0.98))
    sched = common.cosine_schedule(opt, args.steps + args.warmup, 0.0)
    rows = []
    t_all = time.perf_counter()
    for step in range(args.warmup + args.steps):
        batch = examples[(step * args.batch_size) % len(examples) :][: args.batch_size]
        prompts = [data.context_ids(tok, ex) for ex in batch]
        gen = torch.Generator(device=device).manual_seed(step)
        m = train_opd.opd_step(student, teacher, tok, prompts, prompts, cfg, opt, sched, gen)
        if step >= args.warmup:
            c = decoder.shared_prefix(prompts)
            m["prompt_tokens"] = c + sum(len(p) - c for p in prompts)  # what the packed forward runs
            rows.append(m)
    wall = time.perf_counter() - t_all
    mean = {k: statistics.mean(r[k] for r in rows) for k in PHASES + ("tokens", "prompt_tokens")}
    total = sum(mean[k] for k in PHASES)
    floor = product_floor(student, teacher, mean["prompt_tokens"], mean["tokens"], args.batch_size, device)
    print_opd(args, cfg, student, device, rows, mean, total, floor, wall)
    return {"mean": mean, "total": total}


def print_opd(args, cfg, student, device, rows, mean, total, floor, wall):
    """The table of opd()'s phases, their product floors and the step's totals."""
    print(
        f"OPD step breakdown: {args.student} <- {args.teacher}, {args.loss}, forward {args.forward}, "
        f"{args.batch_size} prompts x up to {args.max_new_tokens} tokens, {device.type}, "
        f"{torch.get_num_threads()} threads; mean of {args.steps} steps after {args.warmup} warm-up "
        f"({wall:.0f} s in all)"
    )
    print("| phase | seconds | share | product floor s | floor / seconds |\n|---|---|---|---|---|")
    for k in PHASES:
        f = floor.get(k[5:-2])
        print(
            f"| {k[5:-2]} | {mean[k]:.3f} | {100 * mean[k] / total:.0f} % | "
            + (f"{f:.3f} | {f / mean[k]:.2f} |" if f is not None else "– | – |")
        )
    f = sum(floor[k] for k in ("rollout", "teacher", "student"))
    print(f"| step | {total:.3f} | 100 % | {f:.3f} | {f / total:.2f} |")
    print(
        "product floor: the weight products of the decoder and the output layer alone (attention excluded) "
        "over the packed tokens, at the GEMM rates measured here: %.0f GFLOP/s (teacher scoring), "
        "%.0f (student scoring), %.0f (a decode step)" % tuple(r / 1e9 for r in floor["rates"])
    )
    print(
        f"generated tokens per step {mean['tokens']:.0f}; {mean['tokens'] / total:.0f} tokens/s "
        "through the whole step"
    )
    print(
        f"sampling in {str(common.sampling_dtype(cfg, student)).removeprefix('torch.')}, training weights "
        f"{str(next(student.parameters()).dtype).removeprefix('torch.')}: largest |rollout - train log p| "
        f"of a token {max(r['logp/rollout_vs_train_max_abs'] for r in rows):.2g}"
    )
    if device.type == "cuda":
        print(
            f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB "
            f"({torch.cuda.get_device_name()})"
        )


def grpo(args, student, tok, device) -> dict:
    """The seconds of each phase of train_grpo.grpo_step with its tiny preset (8 samples per prompt,
    2 updates per rollout batch at lr 2e-4, so the second one is off-policy as in training)."""
    cfg = dict(
        train_grpo.PRESETS["tiny"],
        max_new_tokens=args.max_new_tokens,
        rollout_batch=args.rollout_batch,
        rollout_dtype=args.rollout_dtype,
        amp=device.type == "cuda",
        cuda_graph=args.cuda_graph,
        forward=args.forward,
    )
    n = args.batch_size = args.batch_size or cfg["batch_size"]
    cfg["micro_batch"] = args.micro_batch or cfg["micro_batch"]
    examples = data.load_examples("synthetic", n=n * (args.steps + args.warmup), split="train")
    opt = torch.optim.AdamW(student.parameters(), lr=cfg["lr"], betas=(0.9, 0.98))
    sched = common.cosine_schedule(opt, (args.steps + args.warmup) * cfg["minibatches"], 0.0)
    rows, t_all = [], time.perf_counter()
    for step in range(args.warmup + args.steps):
        batch = examples[step * n : (step + 1) * n]
        prompts = [data.context_ids(tok, ex) for ex in batch]
        m = train_grpo.grpo_step(
            student, tok, batch, prompts, cfg, opt, sched, torch.Generator(device=device).manual_seed(step)
        )
        if step >= args.warmup:
            rows.append(m)
    mean = {k: statistics.mean(r[k] for r in rows) for k in GRPO_PHASES + ("tokens",)}
    total = sum(mean[k] for k in GRPO_PHASES)
    print(
        f"GRPO step breakdown: {args.student}, {n} prompts x {cfg['group_size']} samples x up to "
        f"{args.max_new_tokens} tokens, {cfg['minibatches']} updates, {device.type}, "
        f"{torch.get_num_threads()} threads; mean of {args.steps} steps after {args.warmup} warm-up "
        f"({time.perf_counter() - t_all:.0f} s in all)"
    )
    print("| phase | seconds | share |\n|---|---|---|")
    for k in GRPO_PHASES:
        print(f"| {k[5:-2]} | {mean[k]:.3f} | {100 * mean[k] / total:.0f} % |")
    print(f"| step | {total:.3f} | 100 % |")
    print(
        f"generated tokens per step {mean['tokens']:.0f}; {mean['tokens'] / total:.0f} tokens/s "
        "through the whole step"
    )
    return {"mean": mean, "total": total}


def product_flops(model, n_all: float, n_out: float) -> float:
    """FLOPs of the weight products of one forward that runs every layer's q/k/v product on n_all
    tokens, the output projection and MLP on all of them in every layer but the last, and in the
    last layer those and the output layer on n_out: what packed.response_hidden (then the head
    on the returned positions) and the sampler's prefill compute."""
    layers = model.model.layers
    a, mlp = layers[0].self_attn, layers[0].mlp
    qkv = sum(m.weight.numel() for m in (a.q_proj, a.k_proj, a.v_proj))
    rest = sum(m.weight.numel() for m in (a.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    return 2 * (
        len(layers) * n_all * qkv
        + (len(layers) - 1) * n_all * rest
        + n_out * (rest + model.lm_head.weight.numel())
    )


def gemm_rate(m: int, k: int, n: int, device, dtype) -> float:
    """FLOP/s of an (m x k) . (k x n) product on this machine now (best of 10 after 3 warm-ups)."""
    x, w = torch.randn(m, k, device=device, dtype=dtype), torch.randn(n, k, device=device, dtype=dtype)
    best = float("inf")
    for i in range(13):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.nn.functional.linear(x, w)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 3:
            best = min(best, time.perf_counter() - t)
    return 2 * m * k * n / best


def product_floor(student, teacher, prompt_tokens: float, gen_tokens: float, batch: int, device) -> dict:
    """Seconds each phase would take if it were nothing but its weight products at this machine's
    measured GEMM rate: a floor for the float32 step (attention, norms, the loss and every other
    operation cost time on top). Rollout: prefill (the prompts' packed tokens, last column each)
    plus one decode row per generated token; teacher: its forward over prompts + responses;
    student: the same forward and its backward (twice the forward's products)."""
    n_all = prompt_tokens + gen_tokens
    dtype = student.lm_head.weight.dtype
    d_t, f_t = teacher.config.hidden_size, teacher.config.intermediate_size
    d_s, f_s = student.config.hidden_size, student.config.intermediate_size
    rate_t = gemm_rate(int(n_all), d_t, 2 * f_t, device, dtype)  # the teacher's gate/up product, the batch
    rate_s = gemm_rate(int(n_all), d_s, 2 * f_s, device, dtype)  # the student's
    rate_decode = gemm_rate(batch, d_s, 2 * f_s, device, dtype)  # the student's, one decode step
    return {
        "rollout": product_flops(student, prompt_tokens, batch) / rate_s
        + product_flops(student, gen_tokens, gen_tokens) / rate_decode,
        "teacher": product_flops(teacher, n_all, gen_tokens) / rate_t,
        "student": 3 * product_flops(student, n_all, gen_tokens) / rate_s,
        "rates": (rate_t, rate_s, rate_decode),
    }


def against(args, argv: list) -> dict:
    """This benchmark at git revision `args.baseline_rev` and in the working tree, alternating."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    flags, skip = [], False
    for a in argv:  # the same flags minus the baseline's own
        if skip:
            skip = False
        elif a in ("--baseline-rev", "--rounds"):
            skip = True
        elif not a.startswith(("--baseline-rev=", "--rounds=")):
            flags.append(a)
    times = {"baseline": [], "this": []}
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(
            ["git", "-C", here, "archive", args.baseline_rev], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
        for r in range(args.rounds):
            for name, root in (("baseline", old), ("this", here)):
                script = os.path.join(root, "bench", "bench_step.py")
                out = subprocess.run(
                    [sys.executable, script] + flags, cwd=root, capture_output=True, text=True, check=True
                ).stdout
                step = float(re.search(r"^\| step \| ([0-9.]+) \|", out, re.M).group(1))
                times[name].append(step)
                code = args.baseline_rev if name == "baseline" else "working tree"
                print(f"round {r + 1}, {name} ({code}): {step:.3f} s/step")
                if r == args.rounds - 1:
                    print(out)
    ratio = statistics.median(t / b for t, b in zip(times["this"], times["baseline"]))
    print(
        f"median over {args.rounds} rounds of (this / baseline) step time: {ratio:.2f} "
        f"({1 / ratio:.2f}x as fast)"
    )
    return {"times": times, "ratio": ratio}


if __name__ == "__main__":
    main()
