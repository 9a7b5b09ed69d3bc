"""Math evaluation for on-policy distillation: benchmark evaluation with the strict grader of
grader.py, each sample's collapse diagnostics recorded with diagnostics.py's monitors.

Paper sections (docs/paper.md):
  §2.4  the in-training evaluation setting: temperature 0.6, top-p 0.95, one sample (`--preset paper`)
  §2.5  metrics: pass@1 under the strict boxed grader; response length; truncation; the 3-gram
        repetition ratio; the hedging-word rate (the monitors and intervals are diagnostics.py's)

    python eval_math.py --model Qwen/Qwen3-1.7B --bench math500 --preset paper
    python eval_math.py --model PATH --bench synthetic --k 4          # the tiny world (T=1)

The command line (its flag groups, the checks of every flag, the run over the benchmarks) is
eval_cli.py's; `python eval_math.py` runs it. probes.py (the prefix probe of Mechanism 1 and the
teacher's fit of Fix 2) builds on this file's sampler and eval_cli.py's flag groups. The grader
(extract_boxed, is_equiv, grade) is grader.py's.

Deliberate simplification: the evaluation's random stream depends on the batch size (same seed
and batch size, same samples).
"""

import json
import os
import time
from typing import Optional

import torch

import common
import data
import diagnostics
import distributed
import errors
import grader
import rollout
from tiny_world import task

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


if __name__ == "__main__":
    import eval_cli  # the command line lives in its own file

    errors.run(eval_cli.main)
