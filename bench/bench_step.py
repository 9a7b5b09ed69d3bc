"""Where the seconds of one OPD step go: rollout, teacher scoring, student forward/backward, optimizer.

    make bench-step                                  # tiny world, CPU, about a minute
    python bench/bench_step.py --steps 10 --batch-size 64 --threads 2
    python bench/bench_step.py --student Qwen/Qwen3-1.7B --teacher Qwen/Qwen3-8B --data dapo --max-new-tokens 4096

Runs `--warmup` + `--steps` real OPD steps (train_opd.opd_step: the same code as training, with its
own per-phase timers) from the given models on synthetic or dataset prompts, and prints the mean
seconds of each phase over the measured steps, its share of the step, and generated tokens per
second. The timers are opd_step's wall clocks around each phase; on CUDA a phase that ends
without a host sync may leave kernels to the next one (the step total is exact).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules

import torch
import transformers

import common
import data
import models
import train_opd

PHASES = ("time/rollout_s", "time/teacher_s", "time/student_s", "time/optim_s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="tiny/student", help="student: hub id or folder (default tiny/student)")
    ap.add_argument("--teacher", default="tiny/teacher", help="teacher: hub id or folder (default tiny/teacher)")
    ap.add_argument("--data", default="synthetic", help="prompt source: synthetic, dapo, ... or a .jsonl path")
    ap.add_argument("--loss", default="topk_tail", help="the per-token loss (losses.LOSSES)")
    ap.add_argument("--batch-size", type=int, default=64, help="prompts per step")
    ap.add_argument("--micro-batch", type=int, default=0, help="rows per forward/backward (0 = the whole batch)")
    ap.add_argument("--max-new-tokens", type=int, default=80, help="response cap")
    ap.add_argument("--chunk-size", type=int, default=0, help="losses.chunked_loss chunk (0 = full logits)")
    ap.add_argument("--steps", type=int, default=10, help="measured steps")
    ap.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = ap.parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else models.default_device()
    student, tok = models.load(args.student, device=device, dtype=torch.float32)
    teacher, tok_t = models.load(args.teacher, device=device)
    models.check_compatible((student, tok), (teacher, tok_t))
    teacher.requires_grad_(False)
    examples = (data.synthetic_examples(args.batch_size * (args.steps + args.warmup), split="train")
                if args.data == "synthetic" else data.load_examples(args.data))
    cfg = dict(train_opd.PRESETS["tiny"], loss=args.loss, micro_batch=args.micro_batch or args.batch_size,
               max_new_tokens=args.max_new_tokens,
               chunk_size=args.chunk_size, amp=device.type == "cuda", cuda_graph=False)
    opt = torch.optim.AdamW(student.parameters(), lr=1e-6, betas=(0.9, 0.98))
    sched = common.cosine_schedule(opt, args.steps + args.warmup, 0.0)
    rows = []
    t_all = time.perf_counter()
    for step in range(args.warmup + args.steps):
        batch = examples[(step * args.batch_size) % len(examples):][: args.batch_size]
        prompts = [data.context_ids(tok, ex) for ex in batch]
        gen = torch.Generator(device=device).manual_seed(step)
        m = train_opd.opd_step(student, teacher, tok, prompts, prompts, cfg, opt, sched, gen)
        if step >= args.warmup:
            rows.append(m)
    wall = time.perf_counter() - t_all
    mean = {k: statistics.mean(r[k] for r in rows) for k in PHASES + ("tokens",)}
    total = sum(mean[k] for k in PHASES)
    print(f"OPD step breakdown: {args.student} <- {args.teacher}, {args.loss}, {args.batch_size} prompts x up to "
          f"{args.max_new_tokens} tokens, {device.type}, {torch.get_num_threads()} threads; mean of {args.steps} steps "
          f"after {args.warmup} warm-up ({wall:.0f} s in all)")
    print("| phase | seconds | share |\n|---|---|---|")
    for k in PHASES:
        print(f"| {k[5:-2]} | {mean[k]:.3f} | {100 * mean[k] / total:.0f} % |")
    print(f"| step | {total:.3f} | 100 % |")
    print(f"generated tokens per step {mean['tokens']:.0f}; {mean['tokens'] / total:.0f} tokens/s through the whole step")
    return {"mean": mean, "total": total}


if __name__ == "__main__":
    main()
