"""The command line of `python eval_math.py`: its flag groups (probes.py reuses them), the checks
of every flag and input before any weights load, and the run over the benchmarks.

What this file is
    `build_parser` assembles the groups (`add_model_flags`, `add_data_flags` with
    `add_synthetic_flags`, `add_sampling_flags`, `add_output_flags`); `check_args` refuses a bad
    flag by name, `resolve_settings` fills the sampling flags left unset from eval_math.PRESETS,
    `load_inputs` reads every benchmark, `load_model` loads the weights, and `run_benchmarks` runs
    eval_math.evaluate on each and writes the records and the summary. The evaluation itself is
    eval_math.py's.

Paper (docs/paper.md)
    §2.4 the evaluation presets (eval_math.PRESETS).

Command
    python eval_math.py --model PATH --bench synthetic --k 4
"""

import argparse
import dataclasses
import json
import os
from typing import Optional

import torch

import common
import config
import data
import eval_math
import folders
import models
from errors import UserError
from tiny_world import partition, task


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
        choices=sorted(eval_math.PRESETS),
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
    s = dict(eval_math.PRESETS[preset])
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
            summary, _ = eval_math.evaluate(
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
    print(eval_math.format_table(summaries))


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
