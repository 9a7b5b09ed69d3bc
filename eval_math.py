"""Math evaluation for on-policy distillation: benchmark evaluation with the strict grader of
grader.py, each sample's collapse diagnostics recorded with diagnostics.py's monitors.

Paper sections (docs/paper.md):
  §2.4  the in-training evaluation setting: temperature 0.6, top-p 0.95, one sample (`--preset paper`)
  §2.5  metrics: pass@1 under the strict boxed grader; response length; truncation; the 3-gram
        repetition ratio; the hedging-word rate (the monitors and intervals are diagnostics.py's)

    python eval_math.py --model Qwen/Qwen3-1.7B --bench math500 --preset paper
    python eval_math.py --model PATH --bench synthetic --k 4          # the tiny world (T=1)

probes.py (the prefix probe of Mechanism 1 and the teacher's fit of Fix 2) builds on this file's
sampler and flag groups and has its own command line. The grader (extract_boxed, is_equiv, grade)
is grader.py's.

Deliberate simplification: the evaluation's random stream depends on the batch size (same seed
and batch size, same samples).
"""

import argparse
import dataclasses
import json
import os
import time
from typing import Optional

import torch

import common
import config
import data
import diagnostics
import distributed
import errors
import folders
import grader
import models
import rollout
from errors import UserError
from tiny_world import partition, task

# -----------------------------------------------------------------------------
# Sampling many prompts in batches, reproducibly

PRESETS = {
    # §2.4: the paper's in-training evaluation (non-thinking mode, one sample)
    "paper": {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 16384, "k": 1},
    "greedy": {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 16384, "k": 1},
    # the tiny world: sampled accuracy at T=1, short synthetic answers
    "tiny": {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": 80, "k": 1},
}


def sample_responses(
    model,
    tokenizer,
    prompts: list,
    *,
    k: int = 1,
    temperature: float,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int,
    batch_size: int = 32,
    seed: int = 0,
    progress: Optional[str] = None,
    grade_fn=None,
) -> list:
    """k responses per prompt: a list over samples j of lists over prompts of dicts with `ids`
    (response ids without the EOS), `finished`, `truncated`, `length` (generated tokens).

    Batch b of sample j is drawn with a generator seeded by (seed, j, b), so a call with the same
    prompts, seed and batch size gives the same responses. `grade_fn(j, i, ids)` is only used for
    the running accuracy printed by the progress line."""
    device = next(model.parameters()).device
    eos = set(tokenizer.eos_token_ids)
    out, done, right = [], 0, 0
    bar = common.progress(total=k * len(prompts), desc=progress or "", disable=not progress)
    for j in range(k):
        per_prompt = []
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + j * 10_007 + b)
            r = rollout.generate(
                model,
                prompts[start : start + batch_size],
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                eos_token_ids=tokenizer.eos_token_ids,
                pad_token_id=tokenizer.pad_token_id,
                generator=gen,
            )
            for row, ids in enumerate(r.responses()):
                ids = list(ids)
                length = len(ids)
                if ids and ids[-1] in eos:
                    ids = ids[:-1]
                per_prompt.append(
                    {
                        "ids": ids,
                        "finished": bool(r.finished[row]),
                        "truncated": bool(r.truncated[row]),
                        "length": length,
                    }
                )
                if grade_fn is not None:
                    right += bool(grade_fn(j, start + row, ids))
            done += len(prompts[start : start + batch_size])
            bar.update(len(prompts[start : start + batch_size]))
            if grade_fn is not None:
                bar.set_postfix_str(f"acc {right / done:.3f}")
        out.append(per_prompt)
    bar.close()
    return out


# -----------------------------------------------------------------------------
# Benchmark evaluation: pass@1, avg@k, pass@k, diagnostics, per-sample JSONL


def evaluate(
    model,
    tokenizer,
    examples: list,
    *,
    k: int = 1,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 0,
    max_new_tokens: int = 16384,
    batch_size: int = 32,
    seed: int = 0,
    pi: str = "none",
    rule: Optional[str] = None,
    bench: str = "",
    out_path: Optional[str] = None,
    progress: bool = True,
) -> tuple:
    """Evaluate a model on examples: k samples per problem in the context `pi` (data.py; "none"
    is the student's). Returns (summary dict, records); writes one JSONL line per (problem,
    sample) to `out_path` if given.

    acc/pass@1 is sample 0 alone (the in-training number), acc/avg@k the mean over the k samples
    (the lower-variance estimate of pass@1), acc/pass@k whether any sample is right; each with a
    95% interval (Wilson for proportions, normal over problems for avg@k)."""
    if not examples:
        raise ValueError("no examples to evaluate")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    prompts = [data.context_ids(tokenizer, ex, pi, rule) for ex in examples]
    graded = {}

    def grade_ids(j, i, ids):
        text = tokenizer.decode(ids, skip_special=True)
        graded[(j, i)] = (text, grader.grade(text, examples[i].answer))
        return graded[(j, i)][1]

    settings = {
        "temperature": temperature,
        "top_p": top_p,
        "top_k": top_k,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "seed": seed,
    }
    t0 = time.time()
    samples = sample_responses(
        model,
        tokenizer,
        prompts,
        k=k,
        progress=f"eval {bench}" if progress else None,
        grade_fn=grade_ids,
        **settings,
    )
    elapsed = time.time() - t0
    records = sample_records(examples, samples, graded, bench)
    summary = summarize(records, k)
    summary.update({"bench": bench, "time_s": round(elapsed, 1), "pi": pi, "settings": settings})
    if out_path:
        write_jsonl(out_path, records)
    return summary, records


def sample_records(examples: list, samples: list, graded: dict, bench: str) -> list:
    """One record per (problem, sample), sample by sample: the gold and the extracted answer, the
    verdict, and the sample's length, ending, repetition and hedging. `samples` is
    sample_responses' output, `graded[(j, i)]` the (text, verdict) of sample j of problem i."""
    records = []
    for j, per_prompt in enumerate(samples):
        for i, s in enumerate(per_prompt):
            text, correct = graded[(j, i)]
            records.append(
                {
                    "bench": bench,
                    "id": examples[i].id,
                    "sample": j,
                    "gold": examples[i].answer,
                    "pred": grader.extract_boxed(text),
                    "correct": correct,
                    "length": s["length"],
                    "finished": s["finished"],
                    "truncated": s["truncated"],
                    "rep_ratio": round(diagnostics.repetition_ratio(s["ids"]), 4),
                    "hedge_per_1k": round(diagnostics.hedging_rate(text), 2),
                    "response": text,
                }
            )
    return records


def summarize(records: list, k: int) -> dict:
    """Accuracy and diagnostics from per-sample records (also used to re-grade a JSONL file)."""
    by_problem = {}
    for r in records:
        by_problem.setdefault(r["id"], []).append(r)
    n = len(by_problem)
    first = [next(r for r in rs if r["sample"] == 0)["correct"] for rs in by_problem.values()]
    per_problem = [sum(r["correct"] for r in rs) / len(rs) for rs in by_problem.values()]
    any_right = [any(r["correct"] for r in rs) for rs in by_problem.values()]
    lengths = [r["length"] for r in records]
    return {
        "n": n,
        "k": k,
        "acc/pass@1": sum(first) / n,
        "acc/pass@1_ci": diagnostics.wilson_ci(sum(first), n),
        "acc/avg@k": sum(per_problem) / n,
        "acc/avg@k_ci": diagnostics.mean_ci(per_problem),
        "acc/pass@k": sum(any_right) / n,
        "acc/pass@k_ci": diagnostics.wilson_ci(sum(any_right), n),
        "boxed_frac": sum(r["pred"] is not None for r in records) / len(records),
        "len/mean": sum(lengths) / len(lengths),
        "len/max": max(lengths),
        "len/truncated_frac": sum(r["truncated"] for r in records) / len(records),
        "rep/ratio": sum(r["rep_ratio"] for r in records) / len(records),
        "hedge/per_1k_words": sum(r["hedge_per_1k"] for r in records) / len(records),
    }


def write_jsonl(path: str, records: list) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def evaluate_run(
    model,
    tokenizer,
    examples: list,
    cfg: dict,
    name: str,
    who: str = "student",
    pi: str = "none",
    rule: Optional[str] = None,
) -> tuple:
    """A held-out evaluation inside a training run, with the run's settings (eval_k, eval_temperature,
    eval_top_p, eval_max_new_tokens, seed): (summary, records), the records written to
    OUT/eval/{name}.jsonl. Under torchrun each process samples every W-th problem with its own
    noise and the records of all processes are summarised together. On the synthetic task the
    summary also holds tiny_world.task.measures (notation, concise share, declines, accuracy on the
    problems that are not flagged); `rule` is the system prompt of pi="system_prompt"."""
    rank, world = distributed.world()
    with distributed.full_weights(model):  # the sampler reads the weights directly
        summary, records = evaluate(
            model,
            tokenizer,
            examples[rank::world],
            k=cfg["eval_k"],
            temperature=cfg["eval_temperature"],
            top_p=cfg["eval_top_p"],
            max_new_tokens=cfg["eval_max_new_tokens"],
            batch_size=max(cfg["micro_batch"], 16),
            seed=cfg["seed"] + 1 + 7919 * rank,
            pi=pi,
            rule=rule,
            bench=who,
            progress=False,
        )
    if world > 1:
        records = distributed.gather(records)
        summary.update(summarize(records, cfg["eval_k"]))
    if examples and all(ex.source == "synthetic" for ex in examples):
        summary.update(task.measures(examples, records))
    if rank == 0:
        write_jsonl(os.path.join(cfg["out"], "eval", f"{name}.jsonl"), records)
    return summary, records


def format_ci(v: tuple) -> str:
    """An interval as text: `[lo, hi]`, three decimals."""
    return f"[{v[0]:.3f}, {v[1]:.3f}]"


def format_table(summaries: list) -> str:
    """A Markdown table of evaluation summaries, one row per benchmark."""
    rows = [
        [
            s["bench"],
            s["n"],
            s["k"],
            f"{s['acc/pass@1']:.3f} {format_ci(s['acc/pass@1_ci'])}",
            f"{s['acc/avg@k']:.3f} {format_ci(s['acc/avg@k_ci'])}" if s["k"] > 1 else "–",
            f"{s['acc/pass@k']:.3f}" if s["k"] > 1 else "–",
            f"{s['boxed_frac']:.2f}",
            f"{s['len/mean']:.1f}",
            s["len/max"],
            f"{s['len/truncated_frac']:.3f}",
            f"{s['rep/ratio']:.3f}",
            f"{s['hedge/per_1k_words']:.1f}",
            s["time_s"],
        ]
        for s in summaries
    ]
    return common.md_table(
        [
            "bench",
            "n",
            "k",
            "pass@1 (95% CI)",
            "avg@k (95% CI)",
            "pass@k",
            "boxed",
            "len mean",
            "len max",
            "trunc",
            "rep",
            "hedge/1k",
            "time s",
        ],
        rows,
    )


# -----------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The command line: the model, the data, sampling and the output, one argument group each."""
    ap = argparse.ArgumentParser(
        description="Evaluate a model on math benchmarks (strict boxed grader). Sampling flags "
        "left unset come from the preset."
    )
    add_model_flags(ap)
    add_data_flags(ap)
    add_sampling_flags(ap)
    add_output_flags(ap)
    return ap


def add_model_flags(ap: argparse.ArgumentParser, role: str = "model to evaluate") -> None:
    """The model (`role` says what it is to the command) and where it runs."""
    g = ap.add_argument_group("model")
    g.add_argument(
        "--model",
        required=True,
        help=f"{role}: any name or path models.load accepts (hub id, local checkpoint, the tiny models)",
    )
    g.add_argument("--device", default=None, help="cuda, cpu, ...; default: models.load's choice")
    g.add_argument("--dtype", default=None, help="float32, bfloat16, ...; default: models.load's")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")


def add_data_flags(ap: argparse.ArgumentParser) -> None:
    """The benchmarks, the synthetic task's generator and the context (`--pi`)."""
    g = ap.add_argument_group("data")
    g.add_argument(
        "--bench",
        default="synthetic",
        help="comma-separated benchmarks: math500, aime24, aime25, synthetic, a named "
        "dataset of data.py, or a .jsonl/.json/.parquet file with problem/answer "
        "(default: %(default)s)",
    )
    g.add_argument(
        "--data-path",
        default=None,
        help="read the (single) named benchmark from this local file instead of the hub",
    )
    g.add_argument("--limit", type=int, default=None, help="evaluate only the first N problems")
    add_synthetic_flags(g)
    g.add_argument(
        "--pi",
        default="none",
        choices=data.PI_MODES,
        help="context: none = the student's prompt; the others add privileged "
        "information as an OPSD teacher sees it (default: %(default)s)",
    )
    g.add_argument(
        "--wrong-hint",
        action="store_true",
        help="with --pi answer_only: show a wrong answer as the hint (gold + 1), to "
        "measure whether a model reads the hint",
    )
    g.add_argument(
        "--rule",
        default=None,
        help="system rule for --pi system_prompt (default: data.py's rule for the task)",
    )


def add_synthetic_flags(g) -> None:
    """The synthetic task's generator, into the data group `g`."""
    g.add_argument(
        "--synthetic-n",
        type=int,
        help="synthetic: number of problems (default: 500; with --synthetic-part, its whole set)",
    )
    g.add_argument(
        "--synthetic-part",
        choices=partition.HELD_OUT,
        help="synthetic: a set of the eval split's partition in place of a seeded draw (docs/protocol.md "
        "§2: E0..E4 a report seed's evaluation, S the selection set); --synthetic-n takes its first",
    )
    g.add_argument(
        "--synthetic-split",
        default="eval",
        choices=("train", "eval"),
        help="synthetic: which split (they never overlap) (default: %(default)s)",
    )
    g.add_argument(
        "--synthetic-seed", type=int, default=0, help="synthetic: generator seed (default: %(default)s)"
    )
    g.add_argument(
        "--hard-frac",
        type=float,
        default=0.0,
        help="synthetic: fraction of hard problems, 2-digit products (default: %(default)s)",
    )
    g.add_argument("--max-ops", type=int, default=3, help="synthetic: most operations (default: %(default)s)")
    g.add_argument(
        "--max-operand", type=int, default=9, help="synthetic: largest operand (default: %(default)s)"
    )


def add_sampling_flags(ap: argparse.ArgumentParser) -> None:
    """The preset and the sampling flags that override it (§2.4)."""
    g = ap.add_argument_group("sampling")
    g.add_argument(
        "--preset",
        default=None,
        choices=sorted(PRESETS),
        help="paper: T=0.6, top-p 0.95, 16384 tokens (§2.4); greedy; tiny: T=1, 80 "
        "tokens. Default: tiny for synthetic, paper otherwise",
    )
    g.add_argument("--k", type=int, default=None, help="samples per problem (avg@k, pass@k)")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature; 0 = greedy")
    g.add_argument("--top-p", type=float, default=None, help="nucleus sampling threshold")
    g.add_argument("--top-k", type=int, default=None, help="top-k sampling (0 = off)")
    g.add_argument("--max-new-tokens", type=int, default=None, help="response length cap")
    g.add_argument(
        "--batch-size", type=int, default=32, help="prompts per generate call (default: %(default)s)"
    )
    g.add_argument(
        "--seed",
        type=config.seed_int,
        default=0,
        help="sampling seed; with the batch size it fixes every sample (default: %(default)s)",
    )


def add_output_flags(
    ap: argparse.ArgumentParser,
    files: str = "<bench>.jsonl (one line per problem and sample) and summary.json",
) -> None:
    """Where the records and summaries go (`files` names them), and the progress line."""
    g = ap.add_argument_group("output")
    g.add_argument("--out", default="runs/eval", help=f"folder for {files} (default: %(default)s)")
    g.add_argument("--quiet", action="store_true", help="no progress line")


def resolve_settings(args, bench: str) -> dict:
    preset = args.preset or ("tiny" if bench == "synthetic" else "paper")
    s = dict(PRESETS[preset])
    for key in ("k", "temperature", "top_p", "top_k", "max_new_tokens"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    s["preset"] = preset
    return s


def load_bench(args, bench: str) -> list:
    if bench == "synthetic" and args.synthetic_part:
        examples = data.load_examples(
            "synthetic",
            limit=args.limit,
            n=args.synthetic_n,
            part=args.synthetic_part,
            hard_frac=args.hard_frac,
        )
    elif bench == "synthetic":
        examples = data.load_examples(
            "synthetic",
            limit=args.limit,
            n=args.synthetic_n or 500,
            split=args.synthetic_split,
            seed=args.synthetic_seed,
            hard_frac=args.hard_frac,
            max_ops=args.max_ops,
            max_operand=args.max_operand,
        )
    else:
        examples = data.load_examples(bench, path=args.data_path, limit=args.limit)
    if args.wrong_hint:
        examples = [dataclasses.replace(e, hint=task.wrong_answer(e.answer)) for e in examples]
    return examples


# The ranges of the numeric flags, in config.py's terms.
EVAL_RULES = {
    **dict.fromkeys(
        ("limit", "k", "max_new_tokens", "batch_size", "synthetic_n", "max_ops", "max_operand"),
        config.AT_LEAST_1,
    ),
    "top_k": config.AT_LEAST_0,
    "threads": config.AT_LEAST_0,
    "hard_frac": config.PROB,
    "temperature": config.TEMPERATURE_OR_GREEDY,
    "top_p": config.TOP_P,
}


def check_args(args, flags: dict) -> list:
    """The benchmarks to run, after every flag of this file's groups is checked (a UserError naming
    the flag); the folder `--out` is check_out's."""
    config.check_ranges(vars(args), flags, EVAL_RULES)
    if args.dtype is not None and not isinstance(getattr(torch, args.dtype, None), torch.dtype):
        raise UserError(f"--dtype {args.dtype}: not a torch dtype; use float32, bfloat16 or float16")
    if args.synthetic_part:
        fixed = {"--synthetic-split": ("synthetic_split", "eval"), "--synthetic-seed": ("synthetic_seed", 0)}
        fixed |= {"--max-ops": ("max_ops", 3), "--max-operand": ("max_operand", 9)}
        given = [
            f"{flag} {getattr(args, key)}"
            for flag, (key, default) in fixed.items()
            if getattr(args, key) != default
        ]
        if given or args.hard_frac not in (0.0, 0.25):
            raise UserError(
                f"--synthetic-part {args.synthetic_part}: a fixed set of the eval split (docs/protocol.md §2), "
                f"ordinary or with a quarter hard products (--hard-frac 0.25); drop "
                f"{', '.join(given) or f'--hard-frac {args.hard_frac}'}"
            )
        try:
            size = len(partition.problems(args.synthetic_part, hard_frac=args.hard_frac))
        except ValueError as e:
            raise UserError(f"--synthetic-part {args.synthetic_part}: {e}") from None
        if args.synthetic_n is not None and args.synthetic_n > size:
            raise UserError(
                f"--synthetic-n {args.synthetic_n}: --synthetic-part {args.synthetic_part} holds {size} problems"
            )
    if args.wrong_hint and args.pi != "answer_only":
        raise UserError("--wrong-hint changes the hint of --pi answer_only; add --pi answer_only")
    if args.rule is not None and args.pi != "system_prompt":
        raise UserError(
            f"--rule {args.rule!r}: the rule is the system prompt of --pi system_prompt, and --pi "
            f"{args.pi} would ignore it; drop --rule, or add --pi system_prompt"
        )
    check_device(args.device)
    benches = [b.strip() for b in args.bench.split(",") if b.strip()]
    if not benches:
        raise UserError(f"--bench {args.bench!r}: names no benchmark; pass e.g. --bench math500")
    if args.data_path and len(benches) != 1:
        raise UserError("--data-path reads one benchmark; pass a single --bench with it")
    if args.data_path and benches[0] not in data.DATASETS:
        bench = benches[0]
        what = (
            "is generated, not read"
            if bench == "synthetic"
            else "is a file, read as itself"
            if os.path.splitext(bench)[1] or "/" in bench or os.sep in bench
            else "is none of them"
        )
        raise UserError(
            f"--data-path {args.data_path}: reads a named benchmark ({', '.join(data.DATASETS)}) from a "
            f"local file, but --bench {bench} {what}, so it would be ignored; drop --data-path"
        )
    names = {}
    for bench in benches:
        name = record_name(bench)
        if name in names and names[name] == bench:
            raise UserError(f"--bench {args.bench}: names {bench} twice; name each benchmark once")
        if name in names:
            raise UserError(
                f"--bench {args.bench}: {names[name]} and {bench} would both write their records to "
                f"{name}.jsonl in --out; evaluate one of them in another run (or rename its file)"
            )
        names[name] = bench
    return benches


def record_name(bench: str) -> str:
    """The name of a benchmark's records and summary row: its file name without the extension."""
    return os.path.splitext(os.path.basename(bench))[0]


def check_device(device: Optional[str]) -> None:
    """A UserError naming --device unless `device` (None: models.load's choice) is a device this
    machine has: a known type, available here, and an index below the number of such devices."""
    if device is None:
        return
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device}: not a device name; use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    backend = getattr(torch, dev.type, None) if dev.type != "mps" else torch.backends.mps
    available = backend is not None and hasattr(backend, "is_available") and backend.is_available()
    if not available:
        raise UserError(f"--device {device}: this machine has no {dev.type} device; use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if dev.index is not None and dev.index >= count:
        raise UserError(
            f"--device {device}: this machine has {count} {dev.type} device(s), numbered from 0; "
            f"use --device {dev.type}:0"
        )


# what an evaluation or a probe writes into its --out (folders.check: anything else is not its own)
WRITES = ("*.jsonl", "*.jsonl.part", "summary.json*", "probe_summary.json*")


def check_out(args, script: str = "eval_math.py") -> None:
    """`--out` must be new, empty, or an unfinished evaluation of `script` (started over): never a
    training run's folder, a model, a finished evaluation or probe, or another script's files
    (folders.check). Reads only; claim_out takes the folder."""
    folders.check(args.out, script, WRITES)


def claim_out(args, script: str = "eval_math.py") -> None:
    """Make, lock and claim `--out` for `script` (folders.claim)."""
    folders.claim(args.out, script, WRITES, {}, say=common.say)


def load_inputs(args, benches: list) -> dict:
    """The examples of each benchmark in `benches`, checked against the context of `--model`: before
    the weights load, so a bad file ends here."""
    loaded = {bench: load_bench(args, bench) for bench in benches}
    tokenizer, context = models.load_tokenizer(args.model)
    for bench, examples in loaded.items():
        common.check_prompt_lengths(
            context,
            [data.context_ids(tokenizer, ex, args.pi, rule=args.rule) for ex in examples],
            resolve_settings(args, bench)["max_new_tokens"],
            f"prompts of {bench}",
            examples,
        )
    return loaded


def load_model(args, name: str) -> tuple:
    """(model in eval mode, tokenizer) of `name` on `--device` in `--dtype`."""
    model, tokenizer = models.load(
        name, device=args.device, dtype=getattr(torch, args.dtype) if args.dtype else None
    )
    model.eval()
    return model, tokenizer


def run_benchmarks(args, model, tokenizer, benches: list, loaded: dict) -> None:
    """Evaluates the model on each benchmark with its settings; writes <bench>.jsonl and
    summary.json and prints the table."""
    summaries = []
    for bench in benches:
        s = resolve_settings(args, bench)
        examples = loaded[bench]
        name = record_name(bench)
        with torch.no_grad():
            summary, _ = evaluate(
                model,
                tokenizer,
                examples,
                k=s["k"],
                temperature=s["temperature"],
                top_p=s["top_p"],
                top_k=s["top_k"],
                max_new_tokens=s["max_new_tokens"],
                batch_size=args.batch_size,
                seed=args.seed,
                pi=args.pi,
                rule=args.rule,
                bench=name,
                out_path=os.path.join(args.out, f"{name}.jsonl"),
                progress=not args.quiet,
            )
        summary.update({"model": args.model, "preset": s["preset"]})
        summaries.append(summary)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summaries, f, indent=2)
    print(f"model {args.model}; context {args.pi}; per-sample records in {args.out}/")
    print(format_table(summaries))


def main(argv=None) -> None:
    """The command line: check every flag and input, load the model, then evaluate each benchmark."""
    parser = build_parser()
    args = parser.parse_args(argv)
    benches = check_args(args, config.flags_of(parser))
    check_out(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_inputs(args, benches)
    claim_out(args)  # the folder's lock, the one a training run takes too
    model, tokenizer = load_model(args, args.model)
    run_benchmarks(args, model, tokenizer, benches, loaded)


if __name__ == "__main__":
    errors.run(main)
