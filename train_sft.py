"""Supervised fine-tuning (NLL on the assistant's tokens): builds the tiny world's teacher and
student, and trains the SFT-stabilised student of the paper's Fix 3.

What this file is
    One training loop, `train(cfg)`, with three sources of (prompt, response) pairs:
      reference  the reference solutions of a dataset (the synthetic task's worked steps, or
                 OpenThoughts math solutions), optionally mixed with the two kinds of privileged
                 information of data.py (an answer hint, a shared system rule);
      traces     responses a teacher writes (eval_math.sample_responses -> rollout.generate,
                 the batched KV-cache sampler), kept only when the grader
                 accepts them and they do not repeat (PAPER.md §4, Fix 3);
      jsonl      a local file of {"prompt": ..., "response": ...} lines.
    The loss is the token-level NLL of the response (and its end-of-turn token) after the chat
    prompt; prompt tokens are never supervised. Adam(W) with linear warm-up and cosine decay,
    a progress line on stderr, metrics JSONL, a checkpoint every N steps and `--resume` that
    continues the same run bit for bit (same batches, same optimizer state, same RNG),
    evaluation at the end (greedy and T=1 accuracy on held-out problems).

    `--build-tiny` builds the tiny world (DESIGN.md §4): a teacher and a weaker student
    (Qwen3 architecture, byte-level tokenizer) trained from scratch on the synthetic task, saved
    under tiny/teacher and tiny/student (fp16 safetensors, loadable with models.load), and a
    table of what each can do, privileged information included.

Paper
    §4 Fix 3: SFT on teacher-generated traces, filtered for a correct boxed answer and no
    repetition, before OPD. §2.4 (SFT column): lr 5e-6 -> 5e-7, cosine, 10 % warm-up, batch 128,
    1-3 epochs (`--preset paper-sft`). §5: the answer-hint and shared-rule contexts the tiny models
    are taught to obey, so that OPSD (train_opsd.py) has something to distil.

Commands
    python train_sft.py --build-tiny [--force] --threads 2       # make tiny
    python train_sft.py --preset sft-student --threads 2         # make sft-student (Fix 3)
    python train_sft.py --preset tiny-teacher --out runs/t --steps 100 --resume
    python train_sft.py --source jsonl --data-path pairs.jsonl --init tiny/student --steps 50
    pytest -q test_sft.py

What it simplifies
    * The loss is the mean over all supervised tokens of the batch (the usual SFT reduction),
      not the per-sequence mean of the distillation losses.
    * Weight decay (off by default) applies to every parameter, norms and embeddings included.
    * Sequences are right-padded to the longest of the micro-batch; no packing.
    * Teacher traces are generated once, before training, in the student's context (no PI),
      and cached in the run folder (`traces.jsonl`), so a resumed run trains on the same data.
    * On CUDA the weights stay float32 and the forward runs under bf16 autocast.
"""

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time

import torch
import torch.nn.functional as F

import data
import eval_math
import models

# ----------------------------------------------------------------------------------------------
# Configuration: presets named after their purpose; every flag has a help string
# ----------------------------------------------------------------------------------------------

PRESETS = {
    # The tiny world's teacher: deeper, trained long; taught the answer hint and the shared rule.
    "tiny-teacher": dict(init="scratch", layers=4, width=192, ffn=576, heads=6, kv_heads=3,
                         source="reference", dataset="synthetic", n_train=30000, hint_frac=0.15,
                         rule_frac=0.15, hard_frac=0.12, hard_hint_frac=0.75, repeat_1op=6, steps=3000,
                         batch_size=32, micro_batch_size=16, lr=3e-3, min_lr=1e-4, warmup_frac=0.03,
                         eval="tiny", out="runs/tiny-teacher", ckpt_every=250),
    # The tiny world's student: the default tiny shape, far fewer updates: clearly weaker.
    "tiny-student": dict(init="scratch", layers=2, width=128, ffn=384, heads=4, kv_heads=2,
                         source="reference", dataset="synthetic", n_train=30000, hint_frac=0.15,
                         rule_frac=0.15, hard_frac=0.12, hard_hint_frac=0.75, repeat_1op=6, steps=1000,
                         batch_size=32, micro_batch_size=32, lr=3e-3, min_lr=3e-4, warmup_frac=0.05,
                         eval="tiny", out="runs/tiny-student", ckpt_every=250),
    # Fix 3 in the tiny world: the shipped student, SFT on the shipped teacher's filtered traces.
    "sft-student": dict(init="tiny/student", source="traces", teacher="tiny/teacher",
                        dataset="synthetic", n_train=3000, trace_temperature=0.6,
                        trace_top_p=0.95, trace_max_new_tokens=80, epochs=2.0, batch_size=32,
                        lr=1e-3, min_lr=1e-4, warmup_frac=0.1, eval="basic", eval_before=True,
                        out="runs/sft-student", ckpt_every=100),
    # §2.4 SFT column / §4 Fix 3 at the paper's scale (GPU, hub): Qwen2.5-Math-1.5B on validated
    # Qwen2.5-Math-7B-Instruct traces of OpenThoughts math prompts.
    "paper-sft": dict(init="Qwen/Qwen2.5-Math-1.5B", source="traces",
                      teacher="Qwen/Qwen2.5-Math-7B-Instruct", dataset="openthoughts",
                      n_train=17000, trace_temperature=0.6, trace_top_p=0.95,
                      trace_max_new_tokens=1024, epochs=3.0, batch_size=128, micro_batch_size=8,
                      lr=5e-6, min_lr=5e-7, warmup_frac=0.1, eval="basic", eval_bench="math500",
                      eval_max_new_tokens=3072, eval_before=True, out="runs/paper-sft",
                      ckpt_every=50, save_dtype="bfloat16"),
}

SOURCES = ("reference", "traces", "jsonl")
EVAL_MODES = ("none", "basic", "tiny")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description="SFT (NLL on assistant tokens) of a causal LM; builds the tiny world "
                    "(--build-tiny) and the SFT-stabilised student of Fix 3 (--preset sft-student).")
    g = ap.add_argument_group("what to run")
    g.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="defaults for one purpose: tiny-teacher / tiny-student (the tiny world's "
                        "models, from scratch), sft-student (Fix 3 on the tiny models), paper-sft "
                        "(§2.4 SFT column, GPU + hub); explicit flags override it")
    g.add_argument("--build-tiny", action="store_true",
                   help="build the tiny world: train tiny/teacher and tiny/student with the "
                        "tiny-teacher and tiny-student presets (reusing the checkpoints that "
                        "exist) and print their table")
    g.add_argument("--force", action="store_true",
                   help="with --build-tiny: retrain both models from scratch even if "
                        "checkpoints exist (without it, an interrupted build resumes from "
                        "runs/tiny-*/ckpt.pt)")
    g.add_argument("--tiny-dir", default="tiny",
                   help="with --build-tiny: folder of the shipped tiny checkpoints (default: %(default)s)")
    g = ap.add_argument_group("model")
    g.add_argument("--init", default="scratch",
                   help="'scratch' (a new tiny Qwen3 of the shape below) or a checkpoint "
                        "models.load accepts: a local folder or a hub id (default: %(default)s)")
    g.add_argument("--init-seed", type=int, default=0,
                   help="seed of a scratch model's random init (default: %(default)s)")
    g.add_argument("--layers", type=int, default=None, help="scratch only: decoder layers (default 2)")
    g.add_argument("--width", type=int, default=None, help="scratch only: hidden size (default 128)")
    g.add_argument("--ffn", type=int, default=None, help="scratch only: MLP size (default 3 x width)")
    g.add_argument("--heads", type=int, default=None, help="scratch only: query heads (default width/32)")
    g.add_argument("--kv-heads", type=int, default=None, help="scratch only: key/value heads (default heads/2)")
    g = ap.add_argument_group("data")
    g.add_argument("--source", default="reference", choices=SOURCES,
                   help="reference: the dataset's reference solutions; traces: a teacher's "
                        "graded, non-repetitive responses; jsonl: --data-path prompt/response "
                        "pairs (default: %(default)s)")
    g.add_argument("--dataset", default="synthetic",
                   help="problems for reference/traces: synthetic, openthoughts, dapo, or a "
                        ".jsonl/.json/.parquet with problem/answer[/solution] (default: %(default)s)")
    g.add_argument("--data-path", default=None,
                   help="source jsonl: the prompt/response file; otherwise: read --dataset from "
                        "this local file instead of the hub")
    g.add_argument("--n-train", type=int, default=20000,
                   help="problems to use (synthetic: generated from the train split; others: the "
                        "first N) (default: %(default)s)")
    g.add_argument("--data-seed", type=int, default=0,
                   help="seed of the synthetic problems and of the context mix (default: %(default)s)")
    g.add_argument("--max-ops", type=int, default=3, help="synthetic: most operations (default: %(default)s)")
    g.add_argument("--max-operand", type=int, default=9, help="synthetic: largest operand (default: %(default)s)")
    g.add_argument("--hint-frac", type=float, default=0.0,
                   help="fraction of ordinary problems shown with the answer hint (data.py "
                        "answer_only context) (default: %(default)s)")
    g.add_argument("--rule-frac", type=float, default=0.0,
                   help="fraction of ordinary problems shown with the shared system rule; the "
                        "synthetic target is then the boxed result alone (default: %(default)s)")
    g.add_argument("--hard-frac", type=float, default=0.0,
                   help="synthetic: fraction of hard problems (2-digit products), which only the "
                        "hint can answer (default: %(default)s)")
    g.add_argument("--repeat-1op", type=int, default=0,
                   help="synthetic: add this many extra copies of every 1-operation problem (there are "
                        "only ~270 distinct ones, under 1 %% of the mix, and a model never shown them "
                        "cannot answer from the question line) (default: %(default)s)")
    g.add_argument("--hard-hint-frac", type=float, default=0.75,
                   help="fraction of the hard problems shown with the hint; the rest get the plain "
                        "prompt (default: %(default)s)")
    g = ap.add_argument_group("teacher traces (source traces)")
    g.add_argument("--teacher", default=None, help="the teacher that writes the traces (path or hub id)")
    g.add_argument("--trace-samples", type=int, default=1, help="responses per prompt (default: %(default)s)")
    g.add_argument("--trace-temperature", type=float, default=0.6, help="sampling temperature; 0 = greedy (default: %(default)s)")
    g.add_argument("--trace-top-p", type=float, default=0.95, help="nucleus threshold (default: %(default)s)")
    g.add_argument("--trace-max-new-tokens", type=int, default=80, help="response cap; truncated traces are dropped (default: %(default)s)")
    g.add_argument("--max-rep", type=float, default=0.4,
                   help="drop a trace whose 3-gram repetition ratio (eval_math) exceeds this; byte-level "
                        "synthetic reference solutions reach 0.27, a looping response 0.5+ "
                        "(default: %(default)s)")
    g = ap.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps (default: %(default)s)")
    g.add_argument("--epochs", type=float, default=None,
                   help="if set, steps = ceil(epochs x examples / batch size), overriding --steps")
    g.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step (default: %(default)s)")
    g.add_argument("--micro-batch-size", type=int, default=None,
                   help="sequences per forward (gradient accumulation; the batch is sorted by "
                        "length first, so short sequences share a micro-batch); default: the whole batch")
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default: %(default)s)")
    g.add_argument("--min-lr", type=float, default=1e-4, help="learning rate at the end of the cosine (default: %(default)s)")
    g.add_argument("--warmup-frac", type=float, default=0.05, help="linear warm-up, fraction of the steps (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default: %(default)s)")
    g.add_argument("--beta1", type=float, default=0.9, help="Adam beta1 (default: %(default)s)")
    g.add_argument("--beta2", type=float, default=0.98, help="Adam beta2, the paper's 0.98 (default: %(default)s)")
    g.add_argument("--grad-clip", type=float, default=1.0, help="clip the global gradient norm; 0 = off (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="seed of the data order and of torch (default: %(default)s)")
    g = ap.add_argument_group("run, checkpoints, hardware")
    g.add_argument("--out", default="runs/sft", help="run folder: config, metrics, checkpoint, final model (default: %(default)s)")
    g.add_argument("--ckpt-every", type=int, default=200, help="write the resumable checkpoint every N steps; 0 = only at the end (default: %(default)s)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint, exactly")
    g.add_argument("--stop-at", type=int, default=None,
                   help="stop after this step, with a checkpoint, as if interrupted (the schedule "
                        "still spans --steps; continue with --resume)")
    g.add_argument("--log-every", type=int, default=25, help="progress line every N steps (default: %(default)s)")
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when present)")
    g.add_argument("--save-dtype", default="float16", choices=("float16", "bfloat16", "float32"),
                   help="dtype of the saved final weights (default: %(default)s)")
    g = ap.add_argument_group("evaluation at the end")
    g.add_argument("--eval", default="basic", choices=EVAL_MODES,
                   help="none; basic: greedy and T=1 accuracy on held-out problems; tiny: also the "
                        "privileged-information table (synthetic only) (default: %(default)s)")
    g.add_argument("--eval-before", action="store_true", help="also evaluate the initial model (before/after report)")
    g.add_argument("--eval-bench", default="synthetic",
                   help="held-out benchmark: synthetic (eval split) or any data.py name/file (default: %(default)s)")
    g.add_argument("--eval-n", type=int, default=500, help="held-out problems (default: %(default)s)")
    g.add_argument("--eval-hard-n", type=int, default=200, help="hard problems for the hint rows of --eval tiny (default: %(default)s)")
    g.add_argument("--eval-batch-size", type=int, default=100, help="prompts per generate call (default: %(default)s)")
    g.add_argument("--eval-max-new-tokens", type=int, default=80, help="response cap at evaluation (default: %(default)s)")
    return ap


SCRATCH_FLAGS = ("layers", "width", "ffn", "heads", "kv_heads")


def parse_config(argv=None) -> argparse.Namespace:
    """Flags < preset < explicit flags; then checks that every given flag is used."""
    ap = build_parser()
    pre, _ = ap.parse_known_args(argv)
    if pre.preset:
        ap.set_defaults(**PRESETS[pre.preset])
    cfg = ap.parse_args(argv)
    check_config(cfg)
    return cfg


def check_config(cfg) -> None:
    if cfg.init != "scratch" and any(getattr(cfg, k) is not None for k in SCRATCH_FLAGS):
        raise SystemExit(f"--layers/--width/--ffn/--heads/--kv-heads shape a scratch model; "
                         f"--init {cfg.init} is loaded as it is: drop them or use --init scratch")
    if cfg.source == "jsonl" and not cfg.data_path:
        raise SystemExit("--source jsonl needs --data-path FILE.jsonl with prompt/response lines")
    if cfg.source == "traces" and not cfg.teacher:
        raise SystemExit("--source traces needs --teacher (a path or hub id)")
    if cfg.source != "traces" and cfg.teacher:
        raise SystemExit(f"--teacher only writes traces for --source traces (here {cfg.source})")
    if cfg.source == "jsonl" and (cfg.hint_frac or cfg.rule_frac or cfg.hard_frac):
        raise SystemExit("--hint-frac/--rule-frac/--hard-frac build contexts from problems; a "
                         "jsonl of prompt/response pairs already has its prompts")
    if cfg.source == "traces" and (cfg.hint_frac or cfg.rule_frac):
        raise SystemExit("traces are written and trained in the student's context; drop "
                         "--hint-frac/--rule-frac with --source traces")
    if cfg.hard_frac and cfg.dataset != "synthetic":
        raise SystemExit("--hard-frac makes synthetic hard problems; use --dataset synthetic")
    if cfg.hint_frac + cfg.rule_frac > 1 or min(cfg.hint_frac, cfg.rule_frac, cfg.hard_frac) < 0:
        raise SystemExit("need hint-frac, rule-frac, hard-frac >= 0 and hint-frac + rule-frac <= 1")
    if cfg.eval == "tiny" and cfg.eval_bench != "synthetic":
        raise SystemExit("--eval tiny measures the synthetic task's privileged information; "
                         "use --eval basic for other benchmarks")
    if cfg.micro_batch_size is not None and not 1 <= cfg.micro_batch_size <= cfg.batch_size:
        raise SystemExit("--micro-batch-size must lie in 1..--batch-size")
    if cfg.stop_at is not None and cfg.stop_at < 1:
        raise SystemExit("--stop-at must be >= 1")
    if cfg.force and not cfg.build_tiny:
        raise SystemExit("--force retrains the tiny world; it goes with --build-tiny")
    if cfg.build_tiny:  # the presets fix everything else; refuse flags that would be ignored
        defaults = vars(build_parser().parse_args([]))
        extra = [k for k, v in vars(cfg).items()
                 if k not in ("build_tiny", "force", "tiny_dir", "threads") and v != defaults[k]]
        if extra:
            raise SystemExit(f"--build-tiny trains with the tiny-teacher/tiny-student presets and "
                             f"takes only --force, --tiny-dir, --threads; got --{extra[0].replace('_', '-')}")


# ----------------------------------------------------------------------------------------------
# The algorithm, part 1: what is supervised. One example = prompt ids + response ids; the loss
# covers the response and its end-of-turn token, never the prompt.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Item:
    id: str
    prompt: list  # chat prompt ids, ending with the assistant header
    response: list  # response ids, ending with the end-of-turn id
    kind: str  # plain / hint / rule / hard-hint / hard-plain / trace / jsonl


def end_of_turn_id(tok) -> int:
    """The id that closes an assistant turn (<|im_end|> for Qwen/ChatML, <|eot_id|> for Llama 3)."""
    if tok.is_tiny:
        return models.TINY_IDS["<|im_end|>"]
    for name in ("<|im_end|>", "<|eot_id|>", "<|end_of_turn|>"):
        i = tok.hf.convert_tokens_to_ids(name)
        if isinstance(i, int) and i in tok.eos_token_ids:
            return i
    return tok.eos_token_ids[0]


def make_item(tok, id_, prompt_ids, response_text, kind) -> Item:
    return Item(id_, list(prompt_ids), tok.encode(response_text) + [end_of_turn_id(tok)], kind)


def collate(items, pad_id):
    """Right-padded batch: ids (B, L), attention (B, L), labels (B, L) with -100 on prompt and
    padding, so that labels[b, t] is the token that position t-1 must predict."""
    L = max(len(it.prompt) + len(it.response) for it in items)
    ids = torch.full((len(items), L), pad_id, dtype=torch.long)
    attn = torch.zeros(len(items), L, dtype=torch.long)
    labels = torch.full((len(items), L), -100, dtype=torch.long)
    for b, it in enumerate(items):
        P, T = len(it.prompt), len(it.response)
        ids[b, :P + T] = torch.tensor(it.prompt + it.response)
        attn[b, :P + T] = 1
        labels[b, P:P + T] = torch.tensor(it.response)  # the response only
    return ids, attn, labels


def nll_sum(model, ids, attn, labels):
    """(sum of -log p(y_t) over the supervised tokens, their count): the SFT objective."""
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits  # (B, L, V)
    logits = logits[:, :-1].float()  # (B, L-1, V): position t predicts token t+1
    targets = labels[:, 1:]  # (B, L-1)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100, reduction="sum")
    return loss, int((targets != -100).sum())


# ----------------------------------------------------------------------------------------------
# The algorithm, part 2: Fix 3's trace filter (§4): keep a teacher trace only if it finished,
# the grader accepts its answer, and it does not repeat itself.
# ----------------------------------------------------------------------------------------------


def keep_trace(ids, text, gold, finished, max_rep):
    """(keep?, reason) for one teacher response (`ids` without the EOS)."""
    if not finished:
        return False, "truncated"
    if not eval_math.grade(text, gold):
        return False, "wrong" if eval_math.extract_boxed(text) is not None else "no_box"
    if eval_math.repetition_ratio(ids) > max_rep:
        return False, "repetitive"
    return True, "kept"


def teacher_traces(cfg, tok, examples, out_dir):
    """Sample the teacher on the problems (student context), filter, cache to traces.jsonl."""
    path = os.path.join(out_dir, "traces.jsonl")
    teacher, t_tok = models.load(cfg.teacher, device=cfg.device)
    models.check_compatible(tok, t_tok)
    prompts = [data.context_ids(tok, ex, "none") for ex in examples]
    with torch.no_grad():
        samples = eval_math.sample_responses(
            teacher, t_tok, prompts, k=cfg.trace_samples, temperature=cfg.trace_temperature,
            top_p=cfg.trace_top_p, max_new_tokens=cfg.trace_max_new_tokens,
            batch_size=cfg.eval_batch_size, seed=cfg.seed, progress="teacher traces")
    del teacher
    records, counts = [], {}
    for j, per_prompt in enumerate(samples):
        for ex, s in zip(examples, per_prompt):
            text = t_tok.decode(s["ids"], skip_special=True)
            keep, why = keep_trace(s["ids"], text, ex.answer, s["finished"], cfg.max_rep)
            counts[why] = counts.get(why, 0) + 1
            if keep:
                records.append({"id": f"{ex.id}:{j}", "problem": ex.problem, "answer": ex.answer,
                                "source": ex.source, "response": text})
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"teacher traces: {counts} -> {len(records)} kept, cached in {path}", file=sys.stderr)
    return records, counts


# ----------------------------------------------------------------------------------------------
# Plumbing: building the training items of each source
# ----------------------------------------------------------------------------------------------


def load_problems(cfg, n=None, split="train", hard_frac=None):
    n = n or cfg.n_train
    if cfg.dataset == "synthetic":
        return data.synthetic_examples(n, split=split, seed=cfg.data_seed, max_ops=cfg.max_ops,
                                       max_operand=cfg.max_operand,
                                       hard_frac=cfg.hard_frac if hard_frac is None else hard_frac)
    return data.load_examples(cfg.dataset, path=cfg.data_path, limit=n)


def reference_items(cfg, tok, examples):
    """Reference solutions, each problem in one context drawn from the mix (fixed by data_seed):
    hard problems get the hint (hard_hint_frac) or the plain prompt; ordinary ones the shared
    rule (rule_frac), the hint (hint_frac) or the plain prompt. 1-operation problems appear
    1 + repeat_1op times."""
    rng = random.Random(f"mix:{cfg.data_seed}")
    items = []
    easy = [ex for ex in examples if ex.meta.get("ops") == 1 and not ex.meta.get("hard")]
    for r in range(cfg.repeat_1op):  # each copy draws its own context from the mix
        examples = examples + [dataclasses.replace(ex, id=f"{ex.id}~{r + 1}") for ex in easy]
    for ex in examples:
        u = rng.random()
        if ex.meta.get("hard"):
            pi, kind = ("answer_only", "hard-hint") if u < cfg.hard_hint_frac else ("none", "hard-plain")
        elif u < cfg.rule_frac:
            pi, kind = "system_prompt", "rule"
        elif u < cfg.rule_frac + cfg.hint_frac:
            pi, kind = "answer_only", "hint"
        else:
            pi, kind = "none", "plain"
        items.append(make_item(tok, f"{ex.id}:{kind}", data.context_ids(tok, ex, pi),
                               data.target_response(ex, pi), kind))
    return items


def jsonl_items(path, tok):
    """Items from a jsonl of {"prompt": str, "response": str[, "system": str]} lines."""
    items = []
    for line, rec in data.read_records(path):
        for field in ("prompt", "response"):
            v = rec.get(field)
            if not isinstance(v, str) or not v.strip():
                got = "missing" if v is None else f"{type(v).__name__} {str(v)[:30]!r}"
                raise data.DataError(f"{path}:{line}: field '{field}' must be non-empty text, got "
                                     f"{got}; each line needs prompt and response strings")
        system = rec.get("system")
        if system is not None and not isinstance(system, str):
            raise data.DataError(f"{path}:{line}: field 'system' must be text when present")
        items.append(make_item(tok, f"{os.path.basename(path)}:{line}",
                               tok.chat_prompt(rec["prompt"], system=system), rec["response"], "jsonl"))
    if not items:
        raise data.DataError(f"{path}: no prompt/response pairs (the file is empty); SFT needs "
                             "at least one line")
    return items


def build_items(cfg, tok, out_dir, resuming):
    stats = {}
    if cfg.source == "jsonl":
        items = jsonl_items(cfg.data_path, tok)
    elif cfg.source == "reference":
        items = reference_items(cfg, tok, load_problems(cfg))
    else:
        cached = os.path.join(out_dir, "traces.jsonl")
        if resuming and os.path.exists(cached):
            records = [rec for _, rec in data.read_records(cached)]
        else:
            records, stats = teacher_traces(cfg, tok, load_problems(cfg), out_dir)
        if not records:
            raise data.DataError(f"the teacher {cfg.teacher} wrote no trace that passed the filter "
                                 f"({stats}); check the teacher, or raise --trace-max-new-tokens")
        items = [make_item(tok, r["id"], data.context_ids(tok, data.Example(
            "", r["problem"], r["answer"], source=r.get("source", "")), "none"), r["response"], "trace")
            for r in records]
    kinds = {}
    for it in items:
        kinds[it.kind] = kinds.get(it.kind, 0) + 1
    return items, {"items": len(items), "kinds": kinds, "trace_filter": stats}


def next_batch(items, stream, batch_size, seed):
    """The next batch in a reshuffled-every-epoch order; `stream` = {"epoch", "position"} is
    updated in place and saved with the checkpoint (so resume sees the same batches)."""
    batch = []
    order = data.epoch_order(len(items), seed, stream["epoch"])
    while len(batch) < batch_size:
        if stream["position"] == len(items):
            stream["epoch"], stream["position"] = stream["epoch"] + 1, 0
            order = data.epoch_order(len(items), seed, stream["epoch"])
        batch.append(items[order[stream["position"]]])
        stream["position"] += 1
    return batch


def lr_at(step, cfg):
    """Linear warm-up to lr over warmup_frac of the steps, then cosine decay to min_lr."""
    warmup = max(1, round(cfg.warmup_frac * cfg.steps)) if cfg.warmup_frac > 0 else 0
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def init_model(cfg, device):
    if cfg.init == "scratch":
        width = cfg.width or 128
        heads = cfg.heads or max(1, width // 32)
        shape = dict(num_hidden_layers=cfg.layers or 2, hidden_size=width,
                     intermediate_size=cfg.ffn or 3 * width, num_attention_heads=heads,
                     num_key_value_heads=cfg.kv_heads or max(1, heads // 2), head_dim=32)
        model, tok = models.build_tiny(cfg.init_seed, **shape), models.tiny_tokenizer()
    else:
        model, tok = models.load(cfg.init, device=device, dtype=torch.float32)
    return model.to(device=device, dtype=torch.float32), tok


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


RESUME_IGNORES = ("resume", "stop_at", "threads", "log_every", "eval", "eval_before", "eval_n",
                  "eval_hard_n", "eval_batch_size", "eval_max_new_tokens", "eval_bench", "device")


def save_checkpoint(path, model, opt, state, cfg):
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                "config": vars(cfg), "torch_rng": torch.get_rng_state(),
                "python_rng": random.getstate()}, tmp)
    os.replace(tmp, path)  # a crash mid-write leaves the previous checkpoint intact


def load_checkpoint(path, model, opt, cfg):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    old = {k: v for k, v in ck["config"].items() if k not in RESUME_IGNORES}
    new = {k: v for k, v in vars(cfg).items() if k not in RESUME_IGNORES}
    differ = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if differ:
        k = differ[0]
        raise SystemExit(f"--resume: the run in {os.path.dirname(path)} was started with other "
                         f"settings ({', '.join(differ)}; e.g. {k}: {old.get(k)!r} then, "
                         f"{new.get(k)!r} now); resume with the same flags")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    torch.set_rng_state(ck["torch_rng"])
    random.setstate(ck["python_rng"])
    return ck["state"]


# ----------------------------------------------------------------------------------------------
# Evaluation: held-out accuracy, and the tiny world's privileged-information table
# ----------------------------------------------------------------------------------------------



def _run_eval(model, tok, examples, cfg, *, greedy, pi="none", label=""):
    summary, records = eval_math.evaluate(
        model, tok, examples, k=1, temperature=0.0 if greedy else 1.0, top_p=1.0, top_k=0,
        max_new_tokens=cfg.eval_max_new_tokens, batch_size=cfg.eval_batch_size, seed=cfg.seed,
        pi=pi, bench=label, progress=False)
    return summary, records


def _acc(summary):
    lo, hi = summary["acc/pass@1_ci"]
    return {"acc": round(summary["acc/pass@1"], 4), "ci": [round(lo, 4), round(hi, 4)]}


def evaluate_model(model, tok, cfg, mode):
    """Greedy and T=1 accuracy on held-out problems; with mode 'tiny' also the two kinds of
    privileged information: the shared rule (accuracy, obeyed = response is `\\boxed{N}` alone,
    mean length) and the hint on hard problems (none / correct / wrong, and how often the model
    writes the wrong hint)."""
    t0 = time.time()
    model.eval()
    if cfg.eval_bench == "synthetic":
        held_out = data.synthetic_examples(cfg.eval_n, split="eval", seed=cfg.data_seed + 1,
                                           max_ops=cfg.max_ops, max_operand=cfg.max_operand)
    else:
        held_out = data.load_examples(cfg.eval_bench, limit=cfg.eval_n)
    out = {}
    with torch.no_grad():
        for name, greedy in (("greedy", True), ("sampled", False)):
            s, recs = _run_eval(model, tok, held_out, cfg, greedy=greedy, label=name)
            out[name] = {**_acc(s), "len": round(s["len/mean"], 1), "trunc": s["len/truncated_frac"],
                         "rep": round(s["rep/ratio"], 4), "n": s["n"]}
            if cfg.eval_bench == "synthetic":  # accuracy by number of operations
                by_ops = {}
                for ex, r in zip(held_out, recs):
                    by_ops.setdefault(ex.meta["ops"], []).append(r["correct"])
                out[name]["by_ops"] = {str(k): round(sum(v) / len(v), 3) for k, v in sorted(by_ops.items())}
        if mode == "tiny":
            s, recs = _run_eval(model, tok, held_out, cfg, greedy=False, pi="system_prompt", label="rule")
            obeyed = round(eval_math.boxed_only_rate([r["response"] for r in recs]) * len(recs))
            out["rule"] = {**_acc(s), "len": round(s["len/mean"], 1), "obeyed": round(obeyed / len(recs), 4),
                           "obeyed_ci": [round(x, 4) for x in eval_math.wilson_ci(obeyed, len(recs))]}
            hard = data.synthetic_examples(cfg.eval_hard_n, split="eval", seed=cfg.data_seed + 2,
                                           hard_frac=1.0)
            wrong = [dataclasses.replace(e, hint=eval_math.wrong_answer(e.answer)) for e in hard]
            for name, exs, pi in (("hard_no_hint", hard, "none"), ("hard_hint", hard, "answer_only"),
                                  ("hard_wrong_hint", wrong, "answer_only")):
                s, recs = _run_eval(model, tok, exs, cfg, greedy=False, pi=pi, label=name)
                out[name] = {**_acc(s), "len": round(s["len/mean"], 1)}
                if name == "hard_wrong_hint":
                    follows = sum(r["pred"] == e.hint for r, e in zip(recs, exs))
                    out[name]["follows_hint"] = round(follows / len(recs), 4)
    out["eval_time_s"] = round(time.time() - t0, 1)
    return out


def _pct(r):
    return f"{100 * r['acc']:.1f} [{100 * r['ci'][0]:.0f}, {100 * r['ci'][1]:.0f}]"


def format_tables(rows):
    """Markdown tables of the tiny world (rows: dicts with name, params, train_s, eval)."""
    a = ["| model | parameters | training | greedy acc % [95% CI] | sampled acc % (T=1) [95% CI] | "
         "sampled acc by ops (1/2/3) | mean len, no rule | mean len, shared rule | rule obeyed % |",
         "|---|---|---|---|---|---|---|---|---|"]
    b = ["| model | rule: sampled acc % | hard, no hint: acc % | hard, correct hint: acc % | "
         "hard, wrong hint: acc % | wrong hint copied % |",
         "|---|---|---|---|---|---|"]
    for r in rows:
        e = r["eval"]
        ops = "/".join(f"{100 * v:.0f}" for v in e["sampled"].get("by_ops", {}).values())
        a.append(f"| {r['name']} | {r['params'] / 1e6:.2f} M | {r['steps']} steps, "
                 f"{r['train_s'] / 60:.1f} min | {_pct(e['greedy'])} | {_pct(e['sampled'])} | {ops} | "
                 f"{e['sampled']['len']:.1f} | {e['rule']['len']:.1f} | {100 * e['rule']['obeyed']:.1f} |")
        b.append(f"| {r['name']} | {_pct(e['rule'])} | {_pct(e['hard_no_hint'])} | {_pct(e['hard_hint'])} | "
                 f"{_pct(e['hard_wrong_hint'])} | {100 * e['hard_wrong_hint']['follows_hint']:.1f} |")
    return "\n".join(a) + "\n\n" + "\n".join(b)


# ----------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------


def train(cfg) -> dict:
    """Run one SFT job as configured; returns the summary also written to <out>/summary.json."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device(cfg.device) if cfg.device else models.default_device()
    out = cfg.out
    ckpt_path = os.path.join(out, "ckpt.pt")
    if os.path.exists(ckpt_path) and not cfg.resume:
        raise SystemExit(f"{out} holds a run (ckpt.pt): pass --resume to continue it, or choose "
                         f"another --out (or delete the folder) to start over")
    if cfg.resume and not os.path.exists(ckpt_path):
        raise SystemExit(f"--resume: no checkpoint {ckpt_path} to continue from")
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)

    model, tok = init_model(cfg, device)
    items, data_stats = build_items(cfg, tok, out, cfg.resume)
    if cfg.epochs is not None:
        cfg.steps = max(1, math.ceil(cfg.epochs * len(items) / cfg.batch_size))
    report = {"config": vars(cfg).copy(), "params": n_params(model), "data": data_stats,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "device": str(device)}
    if cfg.eval_before and cfg.eval != "none" and not cfg.resume:
        report["eval_before"] = evaluate_model(model, tok, cfg, cfg.eval)
        print(f"before: {json.dumps(report['eval_before'])}", file=sys.stderr)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"{out}: {report['params']:,} parameters, {len(items):,} examples {data_stats['kinds']}, "
          f"{cfg.steps} steps of {cfg.batch_size}, {torch.get_num_threads()} threads", file=sys.stderr)

    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                            weight_decay=cfg.weight_decay)
    state = {"step": 0, "stream": {"epoch": 0, "position": 0}, "train_s": 0.0}
    metrics_path = os.path.join(out, "metrics.jsonl")
    if cfg.resume:
        state = load_checkpoint(ckpt_path, model, opt, cfg)
        kept = []  # drop metrics written after the checkpoint: the resumed run rewrites them
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                kept = [ln for ln in f if json.loads(ln)["step"] <= state["step"]]
        with open(metrics_path, "w") as f:
            f.writelines(kept)
        print(f"resumed at step {state['step']}", file=sys.stderr)
    elif os.path.exists(metrics_path):
        os.remove(metrics_path)

    micro = cfg.micro_batch_size or cfg.batch_size
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    end = cfg.steps if cfg.stop_at is None else min(cfg.steps, cfg.stop_at)
    model.train()
    with open(metrics_path, "a") as mf:
        while state["step"] < end:
            t0 = time.time()
            step = state["step"]
            batch = next_batch(items, state["stream"], cfg.batch_size, cfg.seed)
            lr = lr_at(step, cfg)
            for group in opt.param_groups:
                group["lr"] = lr
            n_tokens = sum(len(it.response) for it in batch)  # supervised tokens of the whole batch
            batch = sorted(batch, key=lambda it: len(it.prompt) + len(it.response))  # less padding per micro-batch
            total = 0.0
            for i in range(0, len(batch), micro):
                ids, attn, labels = (x.to(device) for x in collate(batch[i:i + micro], tok.pad_token_id))
                with autocast:
                    loss_sum, _ = nll_sum(model, ids, attn, labels)
                (loss_sum / n_tokens).backward()  # mean over the batch's supervised tokens
                total += loss_sum.item()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
            opt.step()
            opt.zero_grad(set_to_none=True)
            state["step"] += 1
            dt = time.time() - t0
            state["train_s"] += dt
            rec = {"step": state["step"], "loss/nll": round(total / n_tokens, 5), "lr": lr,
                   "grad_norm": round(float(grad_norm), 4), "tokens/supervised": n_tokens,
                   "epoch": state["stream"]["epoch"], "time/step_s": round(dt, 3)}
            mf.write(json.dumps(rec) + "\n")
            mf.flush()
            if state["step"] % cfg.log_every == 0 or state["step"] == end:
                done = state["step"]
                rate = state["train_s"] / done
                print(f"\r[sft {out}] step {done}/{cfg.steps}  nll {rec['loss/nll']:.4f}  lr {lr:.2e}  "
                      f"{rate:.2f} s/step  eta {rate * (cfg.steps - done) / 60:.1f} min",
                      file=sys.stderr, flush=True)
            if (cfg.ckpt_every and state["step"] % cfg.ckpt_every == 0) or state["step"] == end:
                save_checkpoint(ckpt_path, model, opt, state, cfg)
    model.eval()
    report["train_s"] = round(state["train_s"], 1)
    report["steps_done"] = state["step"]
    if state["step"] < cfg.steps:
        print(f"stopped at step {state['step']} of {cfg.steps} (--stop-at); continue with --resume",
              file=sys.stderr)
        return report

    # the final weights, rounded to the saved dtype; evaluation uses the model as saved
    final = os.path.join(out, "final")
    dtype = getattr(torch, cfg.save_dtype)
    models.save(model.to(dtype), tok, final)
    model.float()
    if cfg.eval != "none":
        saved, saved_tok = models.load(final, device=device, dtype=torch.float32)
        report["eval"] = evaluate_model(saved, saved_tok, cfg, cfg.eval)
        print(f"after: {json.dumps(report['eval'])}", file=sys.stderr)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(report, f, indent=1)
    if "eval_before" in report:
        print(format_before_after(report))
    return report


def format_before_after(report):
    rows = ["| model | greedy acc % [95% CI] | sampled acc % (T=1) [95% CI] | mean len | truncated | 3-gram rep |",
            "|---|---|---|---|---|---|"]
    for name, e in (("before SFT", report["eval_before"]), ("after SFT", report["eval"])):
        s = e["sampled"]
        rows.append(f"| {name} | {_pct(e['greedy'])} | {_pct(s)} | {s['len']:.1f} | {s['trunc']:.3f} | {s['rep']:.3f} |")
    return "\n".join(rows)


# ----------------------------------------------------------------------------------------------
# The tiny world: train (or reuse) tiny/teacher and tiny/student, then print their table
# ----------------------------------------------------------------------------------------------


def build_tiny_world(cfg) -> str:
    t_start = time.time()
    rows = []
    for name in ("teacher", "student"):
        dest = os.path.join(cfg.tiny_dir, name)
        info_path = os.path.join(dest, "sft_run.json")
        argv = ["--preset", f"tiny-{name}", "--out", os.path.join("runs", f"tiny-{name}")]
        if cfg.threads:
            argv += ["--threads", str(cfg.threads)]
        sub = parse_config(argv)
        if cfg.force or not os.path.exists(os.path.join(dest, "config.json")):
            if cfg.force and os.path.exists(sub.out):
                shutil.rmtree(sub.out)  # from scratch: no stale checkpoint, traces or metrics
            # an interrupted build continues where it stopped (resume is exact)
            sub.resume = os.path.exists(os.path.join(sub.out, "ckpt.pt"))
            report = train(sub)
            if os.path.exists(dest):
                shutil.rmtree(dest)
            shutil.copytree(os.path.join(sub.out, "final"), dest)
            with open(info_path, "w") as f:
                json.dump(report, f, indent=1)
        elif os.path.exists(info_path):
            print(f"reusing {dest} (--force retrains it)", file=sys.stderr)
            with open(info_path) as f:
                report = json.load(f)
        else:  # checkpoint without its record: measure it now
            print(f"reusing {dest}; it has no sft_run.json, evaluating it", file=sys.stderr)
            model, tok = models.load(dest, dtype=torch.float32)
            report = {"params": n_params(model), "train_s": float("nan"), "steps_done": "?",
                      "eval": evaluate_model(model, tok, sub, "tiny")}
        rows.append({"name": f"tiny/{name}", "params": report["params"], "train_s": report["train_s"],
                     "steps": report["steps_done"], "eval": report["eval"]})
    table = format_tables(rows)
    print(f"\nThe tiny world ({cfg.tiny_dir}/), evaluated as saved (fp16 weights run in fp32); "
          f"held-out synthetic problems (eval split), hint rows on hard 2-digit products; "
          f"{torch.get_num_threads()} threads, this command {(time.time() - t_start) / 60:.1f} min\n")
    print(table)
    return table


def main(argv=None):
    cfg = parse_config(argv)
    if cfg.build_tiny:
        build_tiny_world(cfg)
    else:
        train(cfg)


if __name__ == "__main__":
    main()
