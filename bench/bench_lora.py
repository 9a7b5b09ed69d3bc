"""LoRA students against full weights in the tiny world: accuracy over seeds, trainable parameters,
memory and seconds per step (docs/lora.md's protocol), and what the adapters' form costs a forward.

    python bench/bench_lora.py                  # every run of the protocol, then its table (about an hour, one core)
    python bench/bench_lora.py --table          # the table of the runs kept in runs/lora/
    python bench/bench_lora.py --forward-cost   # a training forward and backward: full weights, lora.py, PEFT
    python bench/bench_lora.py --step-cost      # one OPD and one OPSD step per variant, interleaved

Each run is one process (`--threads 1`, OMP_NUM_THREADS=1) with its own folder
runs/lora/{method}-{variant}-s{seed}: a finished run (summary.json) is reused and a killed one
continued (`--resume`), so the grid survives an interruption. The largest resident set of each run's
process (os.wait4) is written beside it (bench.json; for a resumed run, of its last process). The
learning rate is the presets' (3e-4) for full weights and ten times it with adapters
(config.LORA_LR_SCALE). Seconds per step are the mean over a run's steps of its phases (rollout,
teacher, student, optimizer), evaluations excluded. The training state is arithmetic: float32
weights, and gradients and two AdamW moments for the trainable ones; OPSD's frozen teacher adds a
copy of the weights with full weights and nothing with adapters.

The grid's seconds per step come from runs that share the machine with whatever else runs; --step-cost
times the variants' steps (train_opd.opd_step with each method's tiny preset, 64 prompts) in turn,
round after round, so that a change of load falls on all of them alike.

--forward-cost times, interleaved, one forward and backward of the tiny student on 64 sampled
responses (rollout.score with gradients): full weights; lora.py's adapters (the weight W + (α/R) B A
formed in the forward) through packed.py's forward and through the model's own; PEFT's adapters
(W x + (α/R) B (A x), the model's own forward), when peft is installed.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import common  # noqa: E402
import data  # noqa: E402
import folders  # noqa: E402
import lora  # noqa: E402
import models  # noqa: E402
import rollout  # noqa: E402

OUT = os.path.join(ROOT, "runs", "lora")
SEEDS = (0, 1, 2)
# method -> (its command, its student, {variant: the flags it adds})
VARIANTS = {"full": [], "r4": ["--lora-rank", "4"], "r16": ["--lora-rank", "16"]}
METHODS = {
    "opd": (["train_opd.py"], "tiny/student", VARIANTS),
    "opsd": (["train_opsd.py", "--preset", "tiny2-concise"], "tiny2/teacher", VARIANTS),
}
T_975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}  # Student's t, 97.5 % quantile, by number of seeds


def folder(method: str, variant: str, seed: int) -> str:
    return os.path.join(OUT, f"{method}-{variant}-s{seed}")


def run(method: str, variant: str, seed: int) -> None:
    """One run of the grid, started, continued or reused; its peak resident set into bench.json."""
    out = folder(method, variant, seed)
    if os.path.exists(os.path.join(out, "summary.json")):
        return
    resume = folders.resumable(out)  # else a run killed before its first checkpoint starts over itself
    cmd, _, variants = METHODS[method]
    cmd = [sys.executable, *cmd, *variants[variant], "--seed", str(seed), "--threads", "1", "--out", out]
    if resume:
        cmd.append("--resume")
    print(("resuming: " if resume else "") + " ".join(cmd[1:]), flush=True)
    os.makedirs(OUT, exist_ok=True)
    with open(out + ".log", "a") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=log, stderr=log
        )
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"{' '.join(cmd)} failed; its output is in {out}.log")
    with open(os.path.join(out, "bench.json"), "w") as f:  # ru_maxrss: KiB on Linux
        json.dump({"peak_rss_mib": usage.ru_maxrss / 1024, "resumed": resume}, f)


def model_sizes(student: str, variant: str) -> tuple:
    """(the base's parameters, the student's, its trainable ones) for a variant."""
    model, _ = models.load(student, device="cpu", dtype=torch.float32)
    base = sum(p.numel() for p in model.parameters())
    if variant != "full":
        lora.attach(model, int(VARIANTS[variant][1]), 2 * int(VARIANTS[variant][1]))
    return base, sum(p.numel() for p in model.parameters()), lora.trainable(model)


def steps(out: str) -> list:
    return [r for r in map(json.loads, open(os.path.join(out, "metrics.jsonl"))) if "loss" in r]


def seconds_per_step(out: str) -> float:
    return statistics.mean(sum(v for k, v in r.items() if k.startswith("time/")) for r in steps(out))


def interval(values: list) -> str:
    """mean [95 % interval over seeds] (Student's t)."""
    m = statistics.mean(values)
    if len(values) < 2:
        return f"{m:.3f}"
    h = T_975[len(values)] * statistics.stdev(values) / math.sqrt(len(values))
    return f"{m:.3f} [{m - h:.3f}, {m + h:.3f}]"


def table() -> str:
    rows = []
    for method, (_, student, variants) in METHODS.items():
        for variant in variants:
            done = [folder(method, variant, s) for s in SEEDS]
            done = [d for d in done if os.path.exists(os.path.join(d, "summary.json"))]
            if not done:
                continue
            summaries = [json.load(open(os.path.join(d, "summary.json"))) for d in done]
            configs = [json.load(open(os.path.join(d, "config.json"))) for d in done]
            bench = [json.load(open(os.path.join(d, "bench.json"))) for d in done]
            base, total, train = model_sizes(student, variant)
            teacher = base * 4 if method == "opsd" and variant == "full" else 0  # frozen: a copy
            state = (total * 4 + train * 12 + teacher) / 2**20
            after = [s["student_after"]["acc/pass@1"] for s in summaries]
            extra = ""
            if method == "opsd":
                extra = " / concise " + interval([s["student_after"]["format/concise"] for s in summaries])
            rows.append(
                [
                    method,
                    variant,
                    f"{configs[0]['lr']:g}",
                    len(done),
                    f"{statistics.mean(s['student_before']['acc/pass@1'] for s in summaries):.3f}",
                    interval(after) + extra,
                    ", ".join(f"{a:.3f}" for a in after),
                    f"{train:,}",
                    f"{state:.1f}",
                    f"{statistics.mean(b['peak_rss_mib'] for b in bench):.0f}",
                    f"{statistics.mean(seconds_per_step(d) for d in done):.3f}",
                    f"{max(r['logp/rollout_vs_train_max_abs'] for d in done for r in steps(d)):.0e}",
                ]
            )
    return common.md_table(
        [
            "method",
            "variant",
            "lr",
            "seeds",
            "acc before",
            "acc after (mean [95 % CI over seeds])",
            "per seed",
            "trainable params",
            "weights+grads+Adam (+teacher) MiB",
            "peak RSS MiB",
            "s/step",
            "rollout-vs-train max |Δ log p|",
        ],
        rows,
    )


def forward_cost(repeats: int) -> None:
    """Seconds of one training forward and backward of the tiny student, per form of the weights."""
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    tok = models.tiny_tokenizer()
    prompts = [data.context_ids(tok, ex) for ex in data.load_examples("synthetic", n=64, split="train")]
    full, _ = models.load("tiny/student", device="cpu", dtype=torch.float32)
    ro = rollout.generate(full, prompts, 80, eos_token_ids=tok.eos_token_ids, pad_token_id=tok.pad_token_id,
                          generator=torch.Generator().manual_seed(0))  # fmt: skip
    responses = ro.responses()
    ours = lora.attach(models.load("tiny/student", device="cpu", dtype=torch.float32)[0], 16, 32)
    forms = {"full weights (packed)": (full, "ours"), "lora.py r16 (packed)": (ours, "ours"),
             "lora.py r16 (model's own)": (ours, "transformers")}  # fmt: skip
    try:
        import peft

        base = models.load("tiny/student", device="cpu", dtype=torch.float32)[0]
        twin = peft.get_peft_model(
            base, peft.LoraConfig(r=16, lora_alpha=32, target_modules=list(lora.TARGETS))
        )
        forms["PEFT r16 (model's own)"] = (twin.base_model.model, "transformers")
    except ImportError:
        print("peft is not installed (make install-trl): its column is left out")
    times = {name: [] for name in forms}
    for _ in range(repeats + 1):  # the first round warms up
        for name, (model, impl) in forms.items():
            t0 = time.perf_counter()
            logp, mask = rollout.score(model, prompts, responses, return_logits=False, impl=impl)
            (logp * mask).sum().backward()
            times[name].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    print(f"one forward and backward, 64 responses of the tiny student ({sum(map(len, responses))} tokens), "
          f"1 thread, median of {repeats}:")  # fmt: skip
    for name, t in times.items():
        print(f"  {name:28s} {statistics.median(t[1:]):.3f} s")


def step_cost(repeats: int) -> None:
    """Seconds of one training step of each method and variant, interleaved round by round, and
    the median of each phase."""
    import train_opd
    import train_opsd

    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    tok = models.tiny_tokenizer()
    examples = data.load_examples("synthetic", n=64, split="train")
    prompts = [data.context_ids(tok, ex) for ex in examples]
    steps = {}
    for method, (cmd, student_name, variants) in METHODS.items():
        script = train_opd if method == "opd" else train_opsd
        for variant, flags in variants.items():
            cfg = script.parse_config(cmd[1:] + flags)
            cfg["threads"] = 1
            model, _ = models.load(student_name, device="cpu", dtype=torch.float32)
            if variant != "full":
                lora.attach(model, cfg["lora_rank"], cfg["lora_alpha"], cfg["lora_targets"])
            if method == "opd":
                teacher = models.load(cfg["teacher"], device="cpu", dtype=torch.float32)[0].requires_grad_(
                    False
                )
                contexts, view = prompts, None
            else:
                teacher = train_opsd.self_teacher(cfg, model, torch.device("cpu"))
                contexts = train_opsd.teacher_contexts(tok, examples, prompts, cfg["pi"], cfg["rule"])
                view = train_opsd.teacher_view(cfg)
            opt, sched = common.optimizer(model, cfg, 1000)
            steps[f"{method} {variant}"] = (model, teacher, contexts, cfg, opt, sched, view)
    times = {name: [] for name in steps}
    for r in range(repeats + 1):  # the first round warms up
        for name, (model, teacher, contexts, cfg, opt, sched, view) in steps.items():
            gen = torch.Generator().manual_seed(r)
            m = train_opd.opd_step(model, teacher, tok, prompts, contexts, cfg, opt, sched, gen, view)
            times[name].append({k: v for k, v in m.items() if k.startswith("time/")})
    print(f"one training step (64 prompts), 1 thread, median of {repeats} interleaved rounds, seconds:")
    phases = list(times[next(iter(times))][0])
    print(common.md_table(["step"] + [p[5:-2] for p in phases] + ["total"], [
        [name] + [f"{statistics.median(t[p] for t in ts[1:]):.3f}" for p in phases]
        + [f"{statistics.median(sum(t.values()) for t in ts[1:]):.3f}"]
        for name, ts in times.items()
    ]))  # fmt: skip


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", action="store_true", help="print the table of the finished runs and exit")
    ap.add_argument("--forward-cost", action="store_true", help="time the adapters' forms and exit")
    ap.add_argument("--step-cost", action="store_true", help="time each variant's training step and exit")
    ap.add_argument("--repeats", type=int, default=10, help="--forward-cost, --step-cost: measured rounds")
    args = ap.parse_args(argv)
    if args.forward_cost:
        return forward_cost(args.repeats)
    if args.step_cost:
        return step_cost(args.repeats)
    if not args.table:
        for seed in SEEDS:  # seed by seed: an interruption leaves whole seeds of every variant
            for method in METHODS:
                for variant in METHODS[method][2]:
                    run(method, variant, seed)
    print(table())


if __name__ == "__main__":
    main()
