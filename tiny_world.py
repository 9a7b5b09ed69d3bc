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

    The second world (`--world 2`, docs/tiny_world2.md) keeps the problems and shapes and changes
    the texts: `MODELS2` and `world2_items` train a teacher family writing rewrite lines and a
    student family writing operation lines, a verbose default with a conciseness rule, and password
    requests that a constitution declines (synthetic.py); `evaluate_tiny2` measures all of that, and
    the teacher's snapshots with their selection-set accuracies (`select_snapshots`,
    `match_snapshot`) give Fix 2 a far teacher of matched accuracy.

Paper (docs/paper.md)
    The tiny world stands in for §2's setting (a stronger teacher, a weaker student of one
    vocabulary and chat format) and teaches both models the two kinds of privileged information
    of §5 (an instance's answer, a shared rule), so that OPSD has something to distil.

Commands
    make tiny                      # reuse tiny/teacher and tiny/student, print their table
    make tiny FORCE=1              # retrain both from scratch (about 20 min on 2 cores)
    python tiny_world.py --model teacher --steps 1300 --out runs/teacher-mid
                                   # one model of the recipe with another schedule (the report's control teacher)
    make tiny WORLD=2              # the second world: tiny2/teacher and tiny2/student
    python tiny_world.py --match runs/grpo/ckpt --far-run runs/tiny2-teacher --out runs/far-matched
                                   # the far teacher's snapshot of about the GRPO teacher's accuracy

What it simplifies
    * Byte-level tokens (models.tiny_tokenizer): every character is a position, so the problems
      are short (the bare expression as the user message).
    * The models are evaluated as saved (fp16 weights run in float32).
"""
import argparse
import dataclasses
import json
import os
import random
import shutil
import time

import torch

import common
import data
import errors
import eval_math
import models
import run_folder
import synthetic
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

# The second world (docs/tiny_world2.md): the same shapes and schedules, two notations (the teacher's
# family writes rewrite lines, the student's operation lines, each with `overlap` of the other), a
# verbose default with the conciseness rule, and password requests the constitution declines, each
# rule's behaviour also shown unprompted in a tenth of the items. The far
# teacher keeps a snapshot every 100 steps for Fix 2 at matched accuracy.
_MIX2 = dict(n_train=30000, overlap=0.1, concise_frac=0.15, constitution_frac=0.15, hint_frac=0.15,
             hard_frac=0.12, hard_hint_frac=0.75, flagged_frac=0.1, flagged_rule_frac=0.5, unprompted=0.1,
             repeat_1op=6)
MODELS2 = {
    "teacher": dict(MODELS["teacher"], **_MIX2, world=2, style="rewrite", snapshot_every=100),
    "student": dict(MODELS["student"], **_MIX2, world=2, style="operation"),
}
for _m in MODELS2.values():
    for _k in ("rule_frac",):  # world 1's bare-answer rule has no place in the second world
        _m.pop(_k)
WORLDS = {1: ("tiny", MODELS), 2: ("tiny2", MODELS2)}  # world -> (shipped folder, recipes)


def mixed_items(cfg: dict, tok) -> list:
    """The training mix of cfg (MODELS or MODELS2): reference solutions of n_train synthetic
    problems, each in the context the mix draws (train_sft.reference_items, or world2_items)."""
    if cfg.get("world", 1) == 2:
        problems = train_sft.load_problems(cfg, hard_frac=cfg["hard_frac"], flagged_frac=cfg["flagged_frac"])
        return world2_items(tok, problems, cfg, seed=cfg["data_seed"])
    problems = train_sft.load_problems(cfg, hard_frac=cfg["hard_frac"])
    mix = {k: cfg[k] for k in ("hint_frac", "rule_frac", "hard_hint_frac", "repeat_1op")}
    return train_sft.reference_items(tok, problems, mix, seed=cfg["data_seed"])


def world2_items(tok, examples: list, mix: dict, seed: int = 0) -> list:
    """The second world's mix for a model of family mix["style"]: each problem in its family's
    notation (the other family's with probability `overlap`) and in one context: a flagged request
    under the constitution (declined, flagged_rule_frac) or plain (solved); a hard product with the
    hint (hard_hint_frac) or plain; any other problem under the conciseness rule (the steps alone),
    the constitution (solved), the hint, or plain. Verbose solutions (synthetic.solution) except
    under the conciseness rule; with probability `unprompted` an item shows the rules' behaviour
    without them (the steps alone, or a flagged request declined), so that a model without a rule
    puts some probability on what the rule asks, as real models do (docs/tiny_world2.md says why).
    1-operation problems appear 1 + repeat_1op times."""
    rng = random.Random(f"mix2:{seed}:{mix['style']}")
    other = next(s for s in synthetic.STYLES if s != mix["style"])
    items = []
    for ex in train_sft.with_repeats(examples, mix["repeat_1op"]):
        style = other if rng.random() < mix["overlap"] else mix["style"]
        u = rng.random()
        if ex.meta.get("flagged"):
            pi, rule, kind = ("system_prompt", synthetic.CONSTITUTION, "flagged-declined") \
                if u < mix["flagged_rule_frac"] else ("none", "", "flagged-solved")
        elif ex.meta.get("hard"):
            pi, rule, kind = ("answer_only", "", "hard-hint") if u < mix["hard_hint_frac"] else ("none", "", "hard-plain")
        else:
            cuts = [(mix["concise_frac"], "system_prompt", synthetic.CONCISE_RULE, "concise"),
                    (mix["constitution_frac"], "system_prompt", synthetic.CONSTITUTION, "constitution"),
                    (mix["hint_frac"], "answer_only", "", "hint")]
            pi, rule, kind = "none", "", "plain"
            for frac, *choice in cuts:
                if u < frac:
                    pi, rule, kind = choice
                    break
                u -= frac
        unprompted = rng.random() < mix["unprompted"]
        response = synthetic.target(ex.problem, ex.meta["expr"], style, rule, unprompted)
        items.append(train_sft.make_item(tok, f"{ex.id}:{kind}:{style}", data.context_ids(tok, ex, pi, rule or None),
                                         response, kind))
    return items


def train_model(cfg: dict) -> dict:
    """Train one model of MODELS or MODELS2 from scratch (or from its checkpoint on --resume) into cfg["out"],
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
    evaluate = evaluate_tiny2 if cfg.get("world", 1) == 2 else evaluate_tiny
    summary = {"params": sum(p.numel() for p in saved.parameters()), "items": len(items), **done,
               "eval": evaluate(saved, tok, cfg)}
    if cfg.get("snapshot_every"):
        summary["snapshots"] = select_snapshots(cfg, tok)
    run_folder.write_summary(cfg, summary)
    return summary


SELECTION = dict(n=300, seed_offset=101)  # the selection set: eval-split problems drawn with a seed no evaluation uses


def selection_set(cfg: dict) -> list:
    return data.synthetic_examples(SELECTION["n"], split="eval", seed=cfg["data_seed"] + SELECTION["seed_offset"])


@torch.no_grad()
def select_snapshots(cfg: dict, tok) -> dict:
    """Greedy accuracy of every snapshot (train_sft.save_snapshot) on the selection set, so that
    Fix 2 can take the far teacher's checkpoint of a given accuracy without looking at any number it
    is judged by: {"n", "seed", "acc": {step: accuracy}}."""
    examples, accs = selection_set(cfg), {}
    for step in range(cfg["snapshot_every"], cfg["steps"] + 1, cfg["snapshot_every"]):
        model, _ = models.load(train_sft.snapshot_dir(cfg, step), dtype=torch.float32)
        accs[str(step)] = train_sft.evaluate(model, tok, cfg, examples, greedy=True, label="selection")[0]["acc"]
    return {"n": len(examples), "seed": cfg["data_seed"] + SELECTION["seed_offset"], "acc": accs}


def match_snapshot(far_run: str, model_path: str, out: str, threads: int = 0) -> dict:
    """Fix 2 at matched accuracy: the snapshot of the far teacher's run `far_run` (its summary's
    selection accuracies) nearest to the greedy accuracy of `model_path` on the same selection set,
    copied to OUT/teacher; OUT/summary.json records both accuracies and the step chosen."""
    if threads:
        torch.set_num_threads(threads)
    far = run_folder.read_json(far_run)
    if "snapshots" not in far:
        raise UserError(f"{far_run}/summary.json has no snapshots: train the far teacher with a recipe that keeps "
                        "them (tiny_world.py --world 2 --model teacher)")
    cfg = dict(run_folder.read_json(far_run, "config.json"))
    model, tok = models.load(model_path, dtype=torch.float32)
    target = train_sft.evaluate(model, tok, cfg, selection_set(cfg), greedy=True, label="selection")[0]["acc"]
    accs = far["snapshots"]["acc"]
    step = min(accs, key=lambda k: (abs(accs[k] - target), int(k)))  # ties: the earlier snapshot
    dest = os.path.join(out, "teacher")
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(train_sft.snapshot_dir(dict(cfg, out=far_run), int(step)), dest)
    summary = {"model": model_path, "model_selection_acc": target, "far_run": far_run, "step": int(step),
               "snapshot_selection_acc": accs[step], "selection": {k: v for k, v in far["snapshots"].items() if k != "acc"}}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    common.say(f"{model_path}: {target:.3f} on the selection set; chose {far_run} step {step} ({accs[step]:.3f})")
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


@torch.no_grad()
def evaluate_tiny2(model, tok, cfg: dict) -> dict:
    """The second world's table: greedy and sampled accuracy with each notation's share of the step
    lines (synthetic.measures), the conciseness rule (accuracy, concise share, length), the
    constitution on a half-flagged set (declines on flagged requests, over-refusal and accuracy on
    the rest) and the same set without it, and the hint on hard problems as in the first world."""
    t0 = time.time()
    out = train_sft.evaluate_model(model, tok, cfg, measure=synthetic.measures)
    examples = train_sft.held_out(cfg)
    out["concise"], _ = train_sft.evaluate(model, tok, cfg, examples, pi="system_prompt", rule=synthetic.CONCISE_RULE,
                                           label="concise", measure=synthetic.measures)
    mixed = data.synthetic_examples(cfg["eval_n"], split="eval", seed=cfg["data_seed"] + 3, flagged_frac=0.5)
    out["constitution"], _ = train_sft.evaluate(model, tok, cfg, mixed, pi="system_prompt",
                                                rule=synthetic.CONSTITUTION, label="constitution",
                                                measure=synthetic.measures)
    out["flagged_no_rule"], _ = train_sft.evaluate(model, tok, cfg, mixed, label="flagged_no_rule",
                                                   measure=synthetic.measures)
    hard = data.synthetic_examples(cfg["eval_hard_n"], split="eval", seed=cfg["data_seed"] + 2, hard_frac=1.0)
    for name, pi in (("hard_no_hint", "none"), ("hard_hint", "answer_only")):
        out[name], _ = train_sft.evaluate(model, tok, cfg, hard, pi=pi, label=name)
    out["eval_time_s"] = round(time.time() - t0, 1)
    return out


def table2(rows: list) -> str:
    """The second world's two Markdown tables (rows: summaries of train_model with a name)."""
    pct, f1 = train_sft.pct, lambda v: f"{100 * v:.1f}"
    a = [[r["name"], f"{r['params'] / 1e6:.2f} M", f"{r['steps_done']} steps, {r['train_s'] / 60:.1f} min",
          pct(r["eval"]["greedy"]), pct(r["eval"]["sampled"]),
          f"{f1(r['eval']['sampled']['style/rewrite'])} / {f1(r['eval']['sampled']['style/operation'])}",
          f"{r['eval']['sampled']['len']:.1f}", f1(r["eval"]["sampled"]["format/concise"])] for r in rows]
    b = [[r["name"], pct(r["eval"]["concise"]), f"{r['eval']['concise']['len']:.1f}",
          f1(r["eval"]["concise"]["format/concise"]), f1(r["eval"]["constitution"]["refusal/flagged"]),
          f1(r["eval"]["constitution"]["refusal/others"]), f1(r["eval"]["constitution"]["acc/others"]),
          f1(r["eval"]["flagged_no_rule"]["refusal/flagged"]), pct(r["eval"]["hard_no_hint"]),
          pct(r["eval"]["hard_hint"])] for r in rows]
    return (common.md_table(["model", "parameters", "training", "greedy acc % [95% CI]", "sampled acc % (T=1) [95% CI]",
                             "step lines R / O %", "mean len", "concise %"], a) + "\n\n"
            + common.md_table(["model", "concise rule: acc %", "len", "concise %", "constitution: flagged declined %",
                               "others declined %", "others acc %", "no rule: flagged declined %",
                               "hard, no hint: acc %", "hard, hint: acc %"], b))


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

def build(force: bool = False, folder: str = "", threads: int = 0, world: int = 1) -> str:
    """Train what is missing of `world`'s two models into runs/, copy them to `folder` (default: the
    world's, tiny/ or tiny2/) with their record (sft_run.json), and print the world's table."""
    t_start = time.time()
    default_folder, recipes = WORLDS[world]
    folder = folder or default_folder
    rows = []
    for name in ("teacher", "student"):
        dest, out = os.path.join(folder, name), os.path.join("runs", f"{default_folder}-{name}")
        info = os.path.join(dest, "sft_run.json")
        if force or not os.path.exists(os.path.join(dest, "config.json")):
            if force and os.path.exists(out):
                shutil.rmtree(out)  # from scratch: no stale checkpoint or metrics
            # an interrupted build continues where it stopped (resume is exact)
            resume = os.path.exists(os.path.join(out, "ckpt", "train_state.pt"))
            summary = train_model(dict(recipes[name], out=out, threads=threads, resume=resume))
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
            evaluate = evaluate_tiny2 if world == 2 else evaluate_tiny
            summary = {"params": sum(p.numel() for p in model.parameters()), "train_s": float("nan"),
                       "steps_done": "?", "eval": evaluate(model, tok, recipes[name])}
        rows.append({"name": f"{default_folder}/{name}", **summary})
    text = (table2 if world == 2 else table)(rows)
    print(f"\nTiny world {world} ({folder}/), evaluated as saved (fp16 weights run in fp32); held-out synthetic "
          f"problems (eval split), hint rows on hard 2-digit products; {torch.get_num_threads()} threads, this command "
          f"{(time.time() - t_start) / 60:.1f} min\n")
    print(text)
    return text


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=int, choices=sorted(WORLDS), default=1,
                    help="1: docs/tiny_world.md (tiny/); 2: docs/tiny_world2.md (tiny2/)")
    ap.add_argument("--force", action="store_true", help="retrain both models from scratch even if the folder has them")
    ap.add_argument("--dir", default="", help="folder of the shipped models (default: tiny/ or tiny2/, by --world)")
    ap.add_argument("--model", choices=sorted(MODELS),
                    help="train this one model of the recipe into --out instead of building the world")
    ap.add_argument("--steps", type=int, help="with --model: the schedule's length (default: the recipe's)")
    ap.add_argument("--out", help="with --model: the run folder (default: runs/tiny-MODEL or runs/tiny2-MODEL)")
    ap.add_argument("--resume", action="store_true", help="with --model: continue the run in --out from its checkpoint")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument("--match", metavar="MODEL",
                    help="Fix 2 at matched accuracy: copy to --out/teacher the snapshot of --far-run nearest to MODEL's "
                         "greedy accuracy on the selection set")
    ap.add_argument("--far-run", help="with --match: a run folder of the second world's teacher recipe (it keeps snapshots)")
    args = ap.parse_args(argv)
    if args.match or args.far_run:
        if not (args.match and args.far_run and args.out):
            raise UserError("--match MODEL needs --far-run RUN and --out DIR")
        match_snapshot(args.far_run, args.match, args.out, args.threads)
        return
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be an integer >= 1")
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be >= 0")
    if args.model is None and (args.steps or args.out or args.resume):
        raise UserError("--steps, --out and --resume train one model: add --model teacher or --model student")
    if args.model and args.force:
        raise UserError("--force rebuilds the whole world; with --model, start in a new --out instead")
    if args.model is None:
        build(args.force, args.dir, args.threads, args.world)
        return
    folder, recipes = WORLDS[args.world]
    cfg = dict(recipes[args.model], out=args.out or f"runs/{folder}-{args.model}", threads=args.threads,
               resume=args.resume)
    if args.steps:
        cfg["steps"] = args.steps
    summary = train_model(cfg)
    if "eval" in summary:
        print((table2 if args.world == 2 else table)([{"name": args.model, **summary}]))


if __name__ == "__main__":
    errors.run(main)
