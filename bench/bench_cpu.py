"""What sets the tiny world's time on a CPU: matrix-product rates, the two scoring forwards, bf16.

    python bench/bench_cpu.py --threads 2              # about a minute
    python bench/bench_cpu.py --threads 2 --compile    # also torch.compile the written-out forward (minutes)

What it measures, on one tiny-world batch (64 synthetic prompts, tiny/student's own responses):
    1. the rate of a float32 and a bfloat16 matrix product at the teacher's scoring shape and at
       a decode-step shape, in GFLOP/s (casts to bfloat16 included);
    2. the teacher's scoring (no_grad) and the student's forward + backward through
       `rollout.score` with impl "ours" (packed.py's forward) and "transformers" (the model's
       own forward), in float32 and under bfloat16 autocast; the configurations alternate and the
       median of `--repeats` calls is printed, so a busy neighbour slows every one alike; and the
       teacher with its weights stored in bf16 (no casts per call), with its log-probs' distance
       from the float32 teacher's (what the speed costs in numbers);
    3. with --compile, `torch.compile(dynamic=True)` of decoder.forward run on the padded batch
       (no cache): seconds to compile and the time per call after.
The teacher's matrix products per batch are counted from its shapes, so the float32 rate of (1)
turns them into a floor for (2).
"""

import argparse
import copy
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules

import torch
import torch.nn.functional as F
import transformers

import data
import decoder
import models
import rollout


def clock(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def gemm_rate(m, k, n, dtype, repeats):
    x, w = torch.randn(m, k), torch.randn(n, k)
    s = clock(lambda: F.linear(x.to(dtype), w.to(dtype)), repeats)
    return 2 * m * k * n / s / 1e9, s


def matmul_macs(model, tokens: int) -> int:
    """Multiply-adds of the decoder's linear layers for `tokens` positions (attention scores excluded)."""
    return tokens * sum(p.numel() for n, p in model.model.layers.named_parameters() if p.dim() == 2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per configuration (median)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of decoder.forward")
    args = ap.parse_args(argv)
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    student, tok = models.load("tiny/student", device="cpu", dtype=torch.float32)
    teacher, _ = models.load("tiny/teacher", device="cpu", dtype=torch.float32)
    teacher.requires_grad_(False)
    prompts = [data.context_ids(tok, ex) for ex in data.load_examples("synthetic", n=64, split="train")]
    ro = rollout.generate(
        student,
        prompts,
        80,
        eos_token_ids=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(0),
    )
    responses = ro.responses()
    columns = max(map(len, prompts)) + max(map(len, responses))
    print(
        f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}; one batch: 64 prompts, "
        f"{sum(map(len, responses))} response tokens, padded to 64 x {columns} columns"
    )
    rate = product_rates(columns, args.repeats)
    time_scoring(student, teacher, prompts, responses, args.repeats)
    macs = matmul_macs(teacher, 64 * columns)
    print(
        f"\nthe teacher's decoder products for 64 x {columns} positions: {2 * macs / 1e9:.1f} GFLOP, "
        f"{2 * macs / 1e9 / rate:.3f} s at the float32 rate above (the last layer's prompt columns, "
        f"which impl 'ours' skips, included)"
    )
    if args.compile:
        time_compile(student, teacher, prompts, responses, columns, args.repeats)


def product_rates(columns, repeats) -> float:
    """(1): the float32 and bf16 product rates at the teacher's scoring shape and a decode step's;
    -> the float32 rate at the scoring shape, GFLOP/s."""
    print(
        "\n| product (m x k) . (k x n) | float32 GFLOP/s | bfloat16 GFLOP/s (casts included) |\n|---|---|---|"
    )
    rate = {}
    for m, k, n in ((64 * columns, 192, 576), (32, 256, 1536)):
        f32, _ = gemm_rate(m, k, n, torch.float32, repeats * 3)
        b16, _ = gemm_rate(m, k, n, torch.bfloat16, repeats * 3)
        rate.setdefault("f32", f32)
        print(f"| ({m} x {k}) . ({k} x {n}) | {f32:.0f} | {b16:.0f} |")
    return rate["f32"]


def time_scoring(student, teacher, prompts, responses, repeats):
    """(2): teacher scoring and student forward + backward through rollout.score, each impl, float32
    and bf16 autocast, alternating; then the teacher stored in bf16 and its log-probs' distance."""

    def teacher_call(impl, amp):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            rollout.score(teacher, prompts, responses, impl=impl)

    def student_call(impl, amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits, mask = rollout.score(student, prompts, responses, impl=impl)
        logits.float().logsumexp(-1)[mask].sum().backward()
        student.zero_grad(set_to_none=True)

    teacher_bf16 = copy.deepcopy(teacher).to(torch.bfloat16)  # a frozen teacher in bf16: no casts per call

    def teacher_bf16_call():
        with torch.no_grad():
            return rollout.score(teacher_bf16, prompts, responses, return_logits=False)

    configs = [(impl, amp) for impl in ("transformers", "ours") for amp in (False, True)]
    times = {(who, c): [] for who in ("teacher", "student") for c in configs}
    times["bf16"] = []
    for c in configs:  # warm-up
        teacher_call(*c), student_call(*c)
    teacher_bf16_call()
    for _ in range(repeats):  # alternate the configurations
        for c in configs:
            for who, fn in (("teacher", teacher_call), ("student", student_call)):
                t = time.perf_counter()
                fn(*c)
                times[(who, c)].append(time.perf_counter() - t)
        t = time.perf_counter()
        teacher_bf16_call()
        times["bf16"].append(time.perf_counter() - t)
    print("\n| forward | teacher scoring s | student forward + backward s |\n|---|---|---|")
    for c in configs:
        name = f"{c[0]}, {'bf16 autocast' if c[1] else 'float32'}"
        print(
            f"| {name} | {statistics.median(times[('teacher', c)]):.3f} | "
            f"{statistics.median(times[('student', c)]):.3f} |"
        )
    print(f"| ours, the teacher's weights stored in bf16 | {statistics.median(times['bf16']):.3f} | – |")
    with torch.no_grad():
        ref, mask = rollout.score(teacher, prompts, responses, return_logits=False)
    gap = (teacher_bf16_call()[0] - ref)[mask].abs()
    print(
        f"the bf16 teacher's log q(y_t) against the float32 teacher's over the {int(mask.sum())} response "
        f"tokens: mean |difference| {gap.mean():.3g}, largest {gap.max():.3g}"
    )


def time_compile(student, teacher, prompts, responses, columns, repeats):
    """(3): torch.compile(dynamic=True) of the written-out forward on the padded batch."""
    B, S = 64, columns
    ids = torch.zeros(B, S, dtype=torch.long)
    mask = torch.zeros(B, S, dtype=torch.bool)
    P = max(map(len, prompts))
    for b, (c, r) in enumerate(zip(prompts, responses)):
        ids[b, P - len(c) : P + len(r)] = torch.tensor(c + r)
        mask[b, P - len(c) : P + len(r)] = True
    pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones(S, S, dtype=torch.bool).tril()
    # (B, 1, S, S): causal over each row's real tokens; a pad position attends to itself
    attn = ((mask[:, None, :] & causal) | torch.eye(S, dtype=torch.bool))[:, None]

    def hidden_states(model, ids, mask, pos, out_from):  # the written-out forward on the padded batch
        cos, sin = decoder.rope_tables(model, S, torch.float32, "cpu")
        return decoder.forward(decoder.weights(model), ids, cos[pos], sin[pos], None, 0, S, attn, out_from)

    compiled = torch.compile(hidden_states, dynamic=True)
    print(
        "\n| torch.compile(dynamic=True) of the written-out forward | compile s | eager s | compiled s |\n"
        "|---|---|---|---|"
    )
    for who, model, grad in (
        ("teacher scoring", teacher, False),
        ("student forward + backward", student, True),
    ):

        def run(fn):
            with torch.set_grad_enabled(grad):
                h = fn(model, ids, mask, pos, P - 1)  # (B, S - P + 1, d) from the prompt's last column
                if grad:
                    (h @ model.lm_head.weight.T).logsumexp(-1).sum().backward()
                    model.zero_grad(set_to_none=True)

        t = time.perf_counter()
        run(compiled)
        first = time.perf_counter() - t
        print(
            f"| {who} | {first:.1f} | {clock(lambda: run(hidden_states), repeats):.3f} | "
            f"{clock(lambda: run(compiled), repeats):.3f} |"
        )


if __name__ == "__main__":
    main()
