"""The tiny world: a synthetic arithmetic task and two tiny Qwen3 models trained on it, so that
every experiment of the paper runs on a laptop CPU in minutes, offline.

What this file is
    The recipe of the two shipped models and the command that rebuilds them. `MODELS` holds each
    model's shape and training recipe (SFT with train_sft.train, from scratch); `mixed_items` is the
    training mix: worked solutions in the student's context, the shared rule as system prompt
    (target: the bare `\\boxed{N}`), the answer hint, hard 2-digit products that only the hint can
    answer, and the 1-operation problems repeated. `evaluate_tiny` measures what a model can do:
    greedy and sampled accuracy (by number of operations), whether it obeys the rule and at what
    accuracy, and how it uses a correct or a wrong hint on hard problems. `build` trains what is
    missing under runs/tiny-{teacher,student} (an interrupted build resumes), copies the models to
    tiny/ and prints their table. docs/tiny_world.md describes the task and the models' numbers.

Paper (docs/paper.md)
    The tiny world stands in for §2's setting (a stronger teacher, a weaker student of one
    vocabulary and chat format) and teaches both models the two kinds of privileged information
    of §5 (an instance's answer, a shared rule), so that OPSD has something to distil.

Commands
    make tiny                      # reuse tiny/teacher and tiny/student, print their table
    make tiny FORCE=1              # retrain both from scratch (about 20 min on 2 cores)
    python tiny_world.py --model teacher --steps 1300 --out runs/teacher-mid
                                   # one model of the recipe with another schedule (the report's control teacher)

What it simplifies
    * Byte-level tokens (models.tiny_tokenizer): every character is a position, so the problems
      are short (the bare expression as the user message).
    * The models are evaluated as saved (fp16 weights run in float32).
"""
import argparse
import dataclasses
import json
import os
import shutil
import time

import torch

import common
import data
import errors
import eval_math
import models
import run_folder
import train_sft
from errors import UserError

# -----------------------------------------------------------------------------
# The two models: shape, data mix and SFT recipe (train_sft's config keys)

_MIX = dict(n_train=30000, hint_frac=0.15, rule_frac=0.15, hard_frac=0.12, hard_hint_frac=0.75, repeat_1op=6)
_SFT = dict(train_sft.PRESETS["reference"], source="reference", data="synthetic", student=None, epochs=None,
            batch_size=32, warmup_frac=0.05, ckpt_every=250, eval_before=False, seed=0, data_seed=0,
            eval_hard_n=200, resume=False, stop_at=0, threads=0)
MODELS = {
    # The teacher: deeper, trained longer.
    "teacher": dict(_SFT, **_MIX, shape=dict(num_hidden_layers=4, hidden_size=192, intermediate_size=576,
                                             num_attention_heads=6, num_key_value_heads=3, head_dim=32),
                    steps=3000, micro_batch=16, lr=3e-3, min_lr=1e-4, warmup_frac=0.03),
    # The student: the smaller shape, far fewer updates: clearly weaker.
    "student": dict(_SFT, **_MIX, shape=dict(num_hidden_layers=2, hidden_size=128, intermediate_size=384,
                                             num_attention_heads=4, num_key_value_heads=2, head_dim=32),
                    steps=1000, micro_batch=32, lr=3e-3, min_lr=3e-4, warmup_frac=0.05),
}


def mixed_items(cfg: dict, tok) -> list:
    """The training mix of cfg (MODELS): reference solutions of n_train synthetic problems, each in
    the context the mix draws (train_sft.reference_items)."""
    problems = train_sft.load_problems(cfg, hard_frac=cfg["hard_frac"])
    mix = {k: cfg[k] for k in ("hint_frac", "rule_frac", "hard_hint_frac", "repeat_1op")}
    return train_sft.reference_items(tok, problems, mix, seed=cfg["data_seed"])


def train_model(cfg: dict) -> dict:
    """Train one model of MODELS from scratch (or from its checkpoint on --resume) into cfg["out"],
    evaluate it as saved, write summary.json; returns the summary."""
    device = run_folder.start_run(cfg)
    if cfg["resume"]:
        model, tok = models.load(run_folder.ckpt_dir(cfg), device=device, dtype=torch.float32)
    else:
        model, tok = models.build_tiny(0, **cfg["shape"]).to(device=device, dtype=torch.float32), models.tiny_tokenizer()
    items = mixed_items(cfg, tok)
    done = train_sft.train(cfg, model, tok, items)
    if done["steps_done"] < cfg["steps"]:
        return done
    saved, _ = models.load(os.path.join(cfg["out"], "final"), device=device, dtype=torch.float32)
    summary = {"params": sum(p.numel() for p in saved.parameters()), "items": len(items), **done,
               "eval": evaluate_tiny(saved, tok, cfg)}
    run_folder.write_summary(cfg, summary)
    return summary


# -----------------------------------------------------------------------------
# What a model can do: accuracy, the shared rule, the hint on hard problems

@torch.no_grad()
def evaluate_tiny(model, tok, cfg: dict) -> dict:
    """train_sft.evaluate_model's greedy and sampled accuracy, then the two kinds of privileged
    information: the shared rule (accuracy, obeyed = the response is `\\boxed{N}` alone, length) and
    the hint on hard problems (none / correct / wrong, and how often the wrong hint is copied)."""
    t0 = time.time()
    out = train_sft.evaluate_model(model, tok, cfg)
    examples = train_sft.held_out(cfg)
    out["rule"], recs = train_sft.evaluate(model, tok, cfg, examples, pi="system_prompt", label="rule")
    obeyed = round(eval_math.boxed_only_rate([r["response"] for r in recs]) * len(recs))
    out["rule"].update(obeyed=round(obeyed / len(recs), 4),
                       obeyed_ci=[round(x, 4) for x in eval_math.wilson_ci(obeyed, len(recs))])
    hard = data.synthetic_examples(cfg["eval_hard_n"], split="eval", seed=cfg["data_seed"] + 2, hard_frac=1.0)
    wrong = [dataclasses.replace(e, hint=eval_math.wrong_answer(e.answer)) for e in hard]
    for name, exs, pi in (("hard_no_hint", hard, "none"), ("hard_hint", hard, "answer_only"),
                          ("hard_wrong_hint", wrong, "answer_only")):
        out[name], recs = train_sft.evaluate(model, tok, cfg, exs, pi=pi, label=name)
        if name == "hard_wrong_hint":
            out[name]["follows_hint"] = round(sum(r["pred"] == e.hint for r, e in zip(recs, exs)) / len(recs), 4)
    out["eval_time_s"] = round(time.time() - t0, 1)
    return out


def table(rows: list) -> str:
    """The tiny world's two Markdown tables (rows: summaries of train_model with a name)."""
    pct = train_sft.pct
    a = [[r["name"], f"{r['params'] / 1e6:.2f} M", f"{r['steps_done']} steps, {r['train_s'] / 60:.1f} min",
          pct(r["eval"]["greedy"]), pct(r["eval"]["sampled"]),
          "/".join(f"{100 * v:.0f}" for v in r["eval"]["sampled"].get("by_ops", {}).values()),
          f"{r['eval']['sampled']['len']:.1f}", f"{r['eval']['rule']['len']:.1f}",
          f"{100 * r['eval']['rule']['obeyed']:.1f}"] for r in rows]
    b = [[r["name"], pct(r["eval"]["rule"]), pct(r["eval"]["hard_no_hint"]), pct(r["eval"]["hard_hint"]),
          pct(r["eval"]["hard_wrong_hint"]), f"{100 * r['eval']['hard_wrong_hint']['follows_hint']:.1f}"] for r in rows]
    return (common.md_table(["model", "parameters", "training", "greedy acc % [95% CI]", "sampled acc % (T=1) [95% CI]",
                             "sampled acc by ops (1/2/3)", "mean len, no rule", "mean len, shared rule",
                             "rule obeyed %"], a) + "\n\n"
            + common.md_table(["model", "rule: sampled acc %", "hard, no hint: acc %", "hard, correct hint: acc %",
                               "hard, wrong hint: acc %", "wrong hint copied %"], b))


# -----------------------------------------------------------------------------
# Building the tiny world: train what is missing, copy to tiny/, print the table

def build(force: bool = False, folder: str = "tiny", threads: int = 0) -> str:
    t_start = time.time()
    rows = []
    for name in ("teacher", "student"):
        dest, out = os.path.join(folder, name), os.path.join("runs", f"tiny-{name}")
        info = os.path.join(dest, "sft_run.json")
        if force or not os.path.exists(os.path.join(dest, "config.json")):
            if force and os.path.exists(out):
                shutil.rmtree(out)  # from scratch: no stale checkpoint or metrics
            # an interrupted build continues where it stopped (resume is exact)
            resume = os.path.exists(os.path.join(out, "ckpt", "train_state.pt"))
            summary = train_model(dict(MODELS[name], out=out, threads=threads, resume=resume))
            if os.path.exists(dest):
                shutil.rmtree(dest)
            shutil.copytree(os.path.join(out, "final"), dest)
            with open(info, "w") as f:
                json.dump(summary, f, indent=1)
        elif os.path.exists(info):
            common.say(f"reusing {dest} (FORCE=1 / --force retrains it)")
            summary = run_folder.read_json(dest, "sft_run.json")
        else:  # a checkpoint without its record: measure it now
            common.say(f"reusing {dest}; it has no sft_run.json, evaluating it")
            model, tok = models.load(dest, dtype=torch.float32)
            summary = {"params": sum(p.numel() for p in model.parameters()), "train_s": float("nan"),
                       "steps_done": "?", "eval": evaluate_tiny(model, tok, MODELS[name])}
        rows.append({"name": f"tiny/{name}", **summary})
    text = table(rows)
    print(f"\nThe tiny world ({folder}/), evaluated as saved (fp16 weights run in fp32); held-out synthetic problems "
          f"(eval split), hint rows on hard 2-digit products; {torch.get_num_threads()} threads, this command "
          f"{(time.time() - t_start) / 60:.1f} min\n")
    print(text)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--force", action="store_true", help="retrain both models from scratch even if tiny/ has them")
    ap.add_argument("--dir", default="tiny", help="folder of the shipped models (default: %(default)s)")
    ap.add_argument("--model", choices=sorted(MODELS),
                    help="train this one model of the recipe into --out instead of building the world")
    ap.add_argument("--steps", type=int, help="with --model: the schedule's length (default: the recipe's)")
    ap.add_argument("--out", help="with --model: the run folder (default: runs/tiny-MODEL)")
    ap.add_argument("--resume", action="store_true", help="with --model: continue the run in --out from its checkpoint")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    args = ap.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be an integer >= 1")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be >= 0")
    if args.model is None and (args.steps or args.out or args.resume):
        raise UserError("--steps, --out and --resume train one model: add --model teacher or --model student")
    if args.model and args.force:
        raise UserError("--force rebuilds the whole world; with --model, start in a new --out instead")
    if args.model is None:
        build(args.force, args.dir, args.threads)
        return
    cfg = dict(MODELS[args.model], out=args.out or f"runs/tiny-{args.model}", threads=args.threads, resume=args.resume)
    if args.steps:
        cfg["steps"] = args.steps
    summary = train_model(cfg)
    if "eval" in summary:
        print(table([{"name": args.model, **summary}]))


if __name__ == "__main__":
    errors.run(main)
