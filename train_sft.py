"""Supervised fine-tuning (NLL on the assistant's tokens) and the SFT-stabilised student of Fix 3.

What this file is
    One loop, `train(cfg, model, tok, items)`, over (prompt, response) items (sft_items.py) from
    four sources:
      reference  the reference solutions of a dataset (the synthetic task's worked steps, or
                 OpenThoughts math solutions), in the student's context;
      traces     responses a teacher writes (eval_math.sample_responses -> rollout.generate),
                 kept only when they finish, the grader accepts them and they do not repeat
                 (docs/paper.md §4, Fix 3; `sft_items.keep_trace`);
      samples    the teacher's responses as sampled, none dropped: sequence-level distillation,
                 OPD's baseline; `--tokens-of RUN` takes problems until the teacher has written
                 as many tokens as that OPD run's student rollouts held (the same teacher cost);
      jsonl      a local file of {"prompt": ..., "response": ...[, "system": ...]} lines.
    The loss is the token-level NLL of the response and its end-of-turn token after the chat
    prompt (rollout.score, the forward every trainer uses); prompt tokens are never supervised.
    AdamW with linear warm-up and cosine decay to --min-lr; a checkpoint every --ckpt-every steps
    that `--resume` continues bit for bit; held-out greedy and T = 1 accuracy before and after.
    tiny_world/build.py trains the tiny world's teacher and student with this loop.

Paper (docs/paper.md)
    §4 Fix 3: SFT on teacher-generated traces, filtered for a correct boxed answer and no
    repetition, before OPD (`--preset sft-student` in the tiny world). §2.4 (SFT column): lr
    5e-6 -> 5e-7, cosine, 10 % warm-up, batch 128, 1-3 epochs (`--preset paper-sft`).

Commands
    make sft-student                                             # Fix 3 in the tiny world
    python train_sft.py --preset sft-student --out runs/sft-student --threads 2
    python train_sft.py --source jsonl --data-path pairs.jsonl --student tiny/student --steps 50
    python train_sft.py --preset paper-sft --out runs/paper-sft  # GPU, hub
    python train_sft.py --out runs/paper-sft --resume            # a killed run continues with its saved flags
    python train_sft.py --preset sft-student --lora-rank 16 --out runs/sft-lora   # LoRA (lora.py)

What it simplifies
    * The loss is the mean over all supervised tokens of the batch (the usual SFT reduction),
      not the per-sequence mean of the distillation losses.
    * Weight decay (off in the tiny presets) applies to every parameter, norms and embeddings included.
    * No packing: each micro-batch is padded to its longest prompt and response (batches are
      sorted by length first, so short items share a micro-batch).
    * Teacher traces are generated once, before training, in the student's context (no PI),
      and cached in the run folder (`traces.jsonl`), so a resumed run trains on the same data.
    * On CUDA the weights stay float32 and the forward runs under bf16 autocast.
"""

import math
import os
import time
from typing import Callable, Optional

import torch

import checkpoint
import common
import config
import data
import errors
import eval_math
import lora
import models
import rollout
import run_folder
import sft_items
from errors import UserError

# -----------------------------------------------------------------------------
# Config: presets named after their purpose, then the flags given on top

# tiny/student on the synthetic task's own reference solutions (the plain `reference` source).
_REFERENCE = dict(
    student="tiny/student",
    source="reference",
    data="synthetic",
    data_path=None,
    teacher=None,
    n_train=3000,
    data_seed=0,
    trace_samples=1,
    trace_temperature=0.6,
    trace_top_p=0.95,
    trace_max_new_tokens=80,
    max_rep=0.4,
    steps=200,
    epochs=None,
    batch_size=32,
    micro_batch=32,
    lr=1e-3,
    min_lr=1e-4,
    warmup_frac=0.1,
    weight_decay=0.0,
    beta1=0.9,
    beta2=0.98,
    grad_clip=1.0,
    eval_data="synthetic",
    eval_n=500,
    eval_max_new_tokens=80,
    eval_batch_size=100,
    eval_before=True,
    ckpt_every=100,
    save_dtype="float16",
)
PRESETS = {
    "reference": _REFERENCE,
    # Fix 3 in the tiny world: the shipped student, SFT on the shipped teacher's graded traces
    # (3,000 at T = 0.6, top-p 0.95; two epochs).
    "sft-student": dict(_REFERENCE, source="traces", teacher="tiny/teacher", epochs=2.0),
    # OPD's baseline at the same cost (docs/protocol.md §6, kd): the shipped student on the teacher's
    # responses at T = 1, top-p 1, unfiltered, one pass in batches of 64; with --tokens-of OPD_RUN,
    # as many teacher tokens as that run's rollouts (out of up to 20,000 problems).
    "kd": dict(
        _REFERENCE,
        source="samples",
        teacher="tiny/teacher",
        n_train=20000,
        trace_temperature=1.0,
        trace_top_p=1.0,
        epochs=1.0,
        batch_size=64,
        micro_batch=64,
    ),
    # §2.4 SFT column / §4 Fix 3 at the paper's scale (GPU, hub): Qwen2.5-Math-1.5B on validated
    # Qwen2.5-Math-7B-Instruct traces of OpenThoughts math prompts; lr 5e-6 -> 5e-7, cosine, 10 %
    # warm-up, batch 128, 3 epochs.
    "paper-sft": dict(
        student="Qwen/Qwen2.5-Math-1.5B",
        source="traces",
        data="openthoughts",
        data_path=None,
        teacher="Qwen/Qwen2.5-Math-7B-Instruct",
        n_train=17000,
        data_seed=0,
        trace_samples=1,
        trace_temperature=0.6,
        trace_top_p=0.95,
        trace_max_new_tokens=1024,
        max_rep=0.4,
        steps=200,
        epochs=3.0,
        batch_size=128,
        micro_batch=8,
        lr=5e-6,
        min_lr=5e-7,
        warmup_frac=0.1,
        weight_decay=0.0,
        beta1=0.9,
        beta2=0.98,
        grad_clip=1.0,
        eval_data="math500",
        eval_n=500,
        eval_max_new_tokens=3072,
        eval_batch_size=100,
        eval_before=True,
        ckpt_every=50,
        save_dtype="bfloat16",
    ),
}
# Keys that only a preset sets, with their ranges: data_seed (the synthetic problems' seed),
# trace_samples and trace_top_p (the teacher's traces), the Adam betas, warm-up and weight decay,
# the evaluation's length cap and batch, eval_before (evaluate the initial weights too).
PRESET_RULES = {
    "trace_samples": config.AT_LEAST_1,
    "trace_top_p": config.TOP_P,
    "warmup_frac": config.PROB,
    "weight_decay": config.AT_LEAST_0,
    "beta1": config.BELOW_1,
    "beta2": config.BELOW_1,
    "eval_max_new_tokens": config.AT_LEAST_1,
    "eval_batch_size": config.AT_LEAST_1,
}


def add_flags(ap) -> None:
    g = ap.add_argument_group("model and data")
    g.add_argument("--student", help="the model to fine-tune: hub id or local folder (default tiny/student)")
    g.add_argument(
        "--source",
        choices=sft_items.SOURCES,
        help="reference: the dataset's reference solutions; traces: a teacher's graded, "
        "non-repetitive responses; samples: a teacher's responses, none dropped; jsonl: --data-path "
        "prompt/response pairs",
    )
    g.add_argument(
        "--data",
        help="problems for reference/traces: synthetic, openthoughts, dapo, or a "
        ".jsonl/.json/.parquet file with problem/answer[/solution]",
    )
    g.add_argument(
        "--data-path",
        help="source jsonl: the prompt/response file; otherwise: read --data from "
        "this local file instead of the hub",
    )
    g.add_argument(
        "--n-train",
        type=config.positive_int,
        help="problems to use (synthetic: generated; others: the first N)",
    )
    g = ap.add_argument_group("teacher traces (docs/paper.md §4, Fix 3)")
    g.add_argument(
        "--teacher",
        help="the teacher that writes the responses of --source traces or samples (path or hub id)",
    )
    g.add_argument(
        "--tokens-of",
        metavar="OPD_RUN",
        help="--source samples: take problems in order until the teacher's responses hold as many "
        "tokens as this finished OPD run's student rollouts (the sum of its metrics.jsonl's tokens)",
    )
    g.add_argument(
        "--trace-temperature",
        type=config.temperature_or_greedy,
        help="the teacher's sampling temperature; 0 = greedy",
    )
    g.add_argument(
        "--trace-max-new-tokens",
        type=config.positive_int,
        help="trace length cap; truncated traces are dropped",
    )
    g.add_argument(
        "--max-rep",
        type=config.ranged(float, (lambda v: 0 <= v <= 1, "in [0, 1] (a 3-gram repetition ratio)")),
        help="drop a trace whose 3-gram repetition ratio (diagnostics.repetition_ratio) exceeds this; the synthetic "
        "reference solutions reach 0.27, a looping response 0.5+",
    )
    config.add_optim_flags(ap)
    config.add_lora_flags(ap)
    g = ap.add_argument_group("batches and schedule")
    g.add_argument("--batch-size", type=config.positive_int, help="sequences per optimizer step")
    g.add_argument(
        "--epochs",
        type=config.positive_float,
        help="if set, steps = ceil(epochs x items / batch size), instead of --steps (give one of "
        "them; --steps over a preset's epochs counts steps)",
    )
    g = ap.add_argument_group("evaluation (greedy and T = 1 accuracy, before and after)")
    g.add_argument(
        "--eval-data", help="held-out problems: synthetic (the eval split) or any data.py name/file"
    )
    g.add_argument("--eval-n", type=config.positive_int, help="held-out problems")
    g.add_argument(
        "--save-dtype", choices=("float16", "bfloat16", "float32"), help="dtype of the saved final/ weights"
    )
    config.add_run_flags(ap, out="runs/sft")


def parse_config(argv=None) -> dict:
    """The run's config: a preset with the flags given on top (on --resume: the run's config.json),
    checked (check_config)."""
    cfg, typed = config.parse_config(PRESETS, add_flags, argv, __doc__)
    check_config(cfg, typed)
    return cfg


def check_config(cfg: dict, typed: set) -> None:
    """What SFT needs of a config, checked before any model loads, with --micro-batch fitted to the
    batch (`typed`: the keys a flag set, config.parse_config)."""
    config.check_ranges(cfg, {}, PRESET_RULES)
    config.check_lora(cfg, typed)
    if not cfg.get("resume") and "steps" in typed and cfg["epochs"] is not None:
        if "epochs" in typed:
            raise UserError(
                f"--steps {cfg['steps']} and --epochs {cfg['epochs']}: --epochs sets the number of steps "
                "(ceil(epochs x items / batch size)) and would override --steps; drop one of them"
            )
        cfg["epochs"] = None  # --steps given over a preset that counts epochs: the flag wins
    if cfg["source"] != "jsonl":  # with --source jsonl, --data-path is the prompt/response file itself
        config.check_data_path(cfg)
    config.fit_micro_batch(cfg, typed, cfg["batch_size"], f"--batch-size {cfg['batch_size']}")
    traced = [k for k in ("trace_temperature", "trace_max_new_tokens", "max_rep", "tokens_of") if k in typed]
    only = {"max_rep": ("traces",), "tokens_of": ("samples",)}
    traced = [k for k in traced if cfg["source"] not in only.get(k, sft_items.FROM_TEACHER)]
    if traced and not cfg.get("resume"):
        flag = "--" + traced[0].replace("_", "-")
        raise UserError(
            f"{flag} {cfg[traced[0]]}: only --source {' or '.join(only.get(traced[0], sft_items.FROM_TEACHER))} "
            f"reads it, and --source {cfg['source']} would ignore it; drop {flag}"
        )
    if cfg["source"] == "jsonl" and not cfg["data_path"]:
        raise UserError("--source jsonl needs --data-path FILE.jsonl with prompt/response lines")
    if cfg["source"] in sft_items.FROM_TEACHER and not cfg["teacher"]:
        raise UserError(f"--source {cfg['source']} needs --teacher (a path or hub id)")
    if cfg["source"] not in sft_items.FROM_TEACHER and cfg["teacher"]:
        raise UserError(
            f"--teacher only writes responses for --source traces or samples (here {cfg['source']}); "
            "the sft-student, kd and paper-sft presets set one: use --preset reference with another "
            "source"
        )
    if cfg.get("tokens_of") and not cfg.get("resume"):
        cfg["teacher_tokens"] = sft_items.rollout_tokens(cfg["tokens_of"])


# -----------------------------------------------------------------------------
# The algorithm: what is supervised. One item (sft_items.Item: prompt ids + response ids, made by
# sft_items.make_item) = one sequence; the loss covers the response and its end-of-turn token,
# never the prompt.


def nll_sum(model, items: list) -> tuple:
    """(Σ −log p(y_t) over the items' response tokens, their count): the SFT objective, from the
    same forward that scores responses everywhere else (rollout.score)."""
    # (B, T) log p of each response token, 0 where masked
    logp, mask = rollout.score(
        model, [it.prompt for it in items], [it.response for it in items], return_logits=False
    )
    return -logp.sum(), int(mask.sum())


# -----------------------------------------------------------------------------
# The training loop


def train(cfg: dict, model, tok, items: list, on_step: Optional[Callable[[int], None]] = None) -> dict:
    """SFT of `model` on `items` in the run folder of `cfg` (started with run_folder.start_run): the
    schedule spans cfg["steps"]; a checkpoint every ckpt_every steps and at --stop-at; at the end
    the weights in save_dtype under OUT/final. `on_step(steps_done)` runs after every optimizer
    step, before the checkpoint (the tiny world's teacher snapshots). Returns {"steps_done",
    "train_s"}."""
    device = next(model.parameters()).device
    optimizer, scheduler = common.optimizer(model, cfg, cfg["steps"])
    stream = common.PromptStream(items, cfg["batch_size"], seed=cfg["seed"])
    start = run_folder.resume(cfg, optimizer, scheduler, stream)
    ckpt = dict(model=model, tok=tok, optimizer=optimizer, scheduler=scheduler, stream=stream)
    # fp32 weights, bf16 compute
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    t_run, bar = time.time(), common.progress(total=cfg["steps"], initial=start, desc=f"SFT {cfg['out']}")
    for step in range(start, cfg["steps"]):
        t0 = time.perf_counter()
        batch = next(stream)
        n_tokens = sum(len(it.response) for it in batch)  # supervised tokens of the whole batch
        # less padding per micro-batch
        batch = sorted(batch, key=lambda it: len(it.prompt) + len(it.response))
        total = 0.0
        for i in range(0, len(batch), cfg["micro_batch"]):
            with amp:
                loss_sum, _ = nll_sum(model, batch[i : i + cfg["micro_batch"]])
            common.check_finite_loss(loss_sum)
            (loss_sum / n_tokens).backward()  # the mean over the batch's supervised tokens
            total += loss_sum.item()
        grad_norm = common.clip_grad_norm(model, cfg["grad_clip"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        m = {
            "loss": total / n_tokens,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": grad_norm,
            "tokens/supervised": n_tokens,
            "epoch": stream.epoch,
            "time/step_s": time.perf_counter() - t0,
        }
        if on_step is not None:
            on_step(step + 1)
        if run_folder.end_step(cfg, step + 1, m, bar, ckpt):
            return {"steps_done": step + 1, "train_s": round(time.time() - t_run, 1)}
    bar.close()
    checkpoint.save(cfg, step=cfg["steps"], **ckpt)
    model.eval()
    lora.merge(model)  # a LoRA student's final/ is W + (α/R) B A, plain weights (its adapters are in ckpt/)
    models.save(model.to(getattr(torch, cfg["save_dtype"])), tok, os.path.join(cfg["out"], "final"))
    model.float()
    return {"steps_done": cfg["steps"], "train_s": round(time.time() - t_run, 1)}


# -----------------------------------------------------------------------------
# Evaluation: held-out greedy and sampled accuracy


def held_out(cfg: dict) -> list:
    if cfg["eval_data"] == "synthetic":
        return data.load_examples("synthetic", n=cfg["eval_n"], split="eval", seed=cfg["data_seed"] + 1)
    return data.load_examples(cfg["eval_data"], limit=cfg["eval_n"])


def evaluate(
    model,
    tok,
    cfg: dict,
    examples: list,
    pi: str = "none",
    greedy: bool = False,
    label: str = "",
    rule: str = None,
    measure=None,
) -> tuple:
    """(accuracy cell, records): pass@1 with its interval, length, truncation and repetition, and
    `measure(examples, records)`'s numbers when given (tiny_world.task.measures in the second world);
    `rule` is the system prompt of pi="system_prompt" (None: data.py's default)."""
    s, records = eval_math.evaluate(
        model,
        tok,
        examples,
        k=1,
        temperature=0.0 if greedy else 1.0,
        top_p=1.0,
        top_k=0,
        max_new_tokens=cfg["eval_max_new_tokens"],
        batch_size=cfg["eval_batch_size"],
        seed=cfg["seed"],
        pi=pi,
        rule=rule,
        bench=label,
        progress=False,
    )
    lo, hi = s["acc/pass@1_ci"]
    cell = {
        "acc": round(s["acc/pass@1"], 4),
        "ci": [round(lo, 4), round(hi, 4)],
        "len": round(s["len/mean"], 1),
        "trunc": s["len/truncated_frac"],
        "rep": round(s["rep/ratio"], 4),
        "n": s["n"],
    }
    if measure is not None:
        cell.update({k: round(v, 4) for k, v in measure(examples, records).items()})
    return cell, records


@torch.no_grad()
def evaluate_model(model, tok, cfg: dict, measure=None) -> dict:
    """Greedy and T = 1 accuracy on the held-out problems (synthetic: also by number of operations),
    with `measure`'s numbers (see evaluate)."""
    model.eval()
    examples, out = held_out(cfg), {}
    for name, greedy in (("greedy", True), ("sampled", False)):
        out[name], records = evaluate(model, tok, cfg, examples, greedy=greedy, label=name, measure=measure)
        if cfg["eval_data"] == "synthetic":
            by_ops = {}
            for ex, r in zip(examples, records):
                by_ops.setdefault(ex.meta["ops"], []).append(r["correct"])
            out[name]["by_ops"] = {str(k): round(sum(v) / len(v), 3) for k, v in sorted(by_ops.items())}
    return out


def pct(r: dict) -> str:
    """An accuracy cell in percent with its 95 % interval."""
    return f"{100 * r['acc']:.1f} [{100 * r['ci'][0]:.0f}, {100 * r['ci'][1]:.0f}]"


def before_after_table(before: dict, after: dict) -> str:
    rows = [
        [
            name,
            pct(e["greedy"]),
            pct(e["sampled"]),
            f"{e['sampled']['len']:.1f}",
            f"{e['sampled']['trunc']:.3f}",
            f"{e['sampled']['rep']:.3f}",
        ]
        for name, e in (("before SFT", before), ("after SFT", after))
    ]
    return common.md_table(
        [
            "model",
            "greedy acc % [95% CI]",
            "sampled acc % (T=1) [95% CI]",
            "mean len",
            "truncated",
            "3-gram rep",
        ],
        rows,
    )


# -----------------------------------------------------------------------------
# The run


def main(argv=None) -> dict:
    cfg = parse_config(argv)
    # The data and every sequence against the context, before the folder is written and the
    # weights load (teacher traces are written in the run, by a teacher checked here).
    tok, context = models.load_tokenizer(run_folder.student_source(cfg))
    if cfg["source"] in sft_items.FROM_TEACHER:
        models.check_compatible(tok, models.load_tokenizer(cfg["teacher"])[0])
        problems = sft_items.load_problems(cfg)
        common.check_prompt_lengths(
            context,
            [data.context_ids(tok, ex) for ex in problems],
            cfg["trace_max_new_tokens"],
            "trace prompts",
            problems,
        )
    else:
        items, data_stats = sft_items.build_items(cfg, tok)
        common.check_prompt_lengths(
            context, [it.prompt + it.response for it in items], 0, "SFT sequences (prompt + response)", items
        )
    evals = held_out(cfg)
    common.check_held_out(context, tok, evals, cfg)
    models_read, data_read = {"the student (--student)": cfg["student"]}, {"the held-out set": evals}
    if cfg["source"] in sft_items.FROM_TEACHER:
        models_read["the teacher (--teacher)"] = cfg["teacher"]
        data_read["the problems"] = problems
    else:
        data_read["the training data"] = items
    device = run_folder.start_run(cfg, "train_sft.py", models_read, data_read, before_in_log=False)
    model, tok = run_folder.load_student(cfg, device)
    if cfg["source"] in sft_items.FROM_TEACHER:
        items, data_stats = sft_items.build_items(cfg, tok)
    if cfg["epochs"] is not None:
        cfg["steps"] = max(1, math.ceil(cfg["epochs"] * len(items) / cfg["batch_size"]))
    common.say(
        f"{cfg['out']}: {sum(p.numel() for p in model.parameters()):,} parameters, {len(items):,} items "
        f"{data_stats['kinds']}, {cfg['steps']} steps of {cfg['batch_size']}, {torch.get_num_threads()} threads"
    )
    before = None
    if cfg["eval_before"]:  # the initial weights (on --resume reloaded: the run keeps no copy of them)
        initial = (
            models.load(cfg["student"], device=device, dtype=torch.float32)[0] if cfg["resume"] else model
        )
        before = evaluate_model(initial, tok, cfg)
    done = train(cfg, model, tok, items)
    if done["steps_done"] < cfg["steps"]:
        return done
    saved, saved_tok = models.load(os.path.join(cfg["out"], "final"), device=device, dtype=torch.float32)
    # the model as saved
    summary = {
        "params": sum(p.numel() for p in model.parameters()),
        "data": data_stats,
        "steps": cfg["steps"],
        **done,
        "eval_before": before,
        "eval": evaluate_model(saved, saved_tok, cfg),
    }
    run_folder.write_summary(cfg, summary)
    if before:
        print(before_after_table(before, summary["eval"]))
    return summary


if __name__ == "__main__":
    errors.run(main)
