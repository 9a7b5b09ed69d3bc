"""Building the tiny worlds: train a model of the recipe, keep its snapshots, measure what it can
do, copy both models to tiny/ (tiny2/) and print their table.

What this file is
    `train_model` trains one recipe of mix.py from scratch with train_sft.train (an interrupted run
    resumes from its checkpoint) and evaluates the saved model with tiny_world/measure.py. `build`
    trains what is missing under runs/tiny-{teacher,student} (runs/tiny2-...), copies the models to
    tiny/ (tiny2/) with their record (sft_run.json) and prints the world's table. The second world's
    teacher keeps a snapshot every 100 steps; the build scores each on a selection set
    (`select_snapshots`), and `match_snapshot` copies the one nearest a given model's accuracy: Fix
    2's far teacher of matched accuracy.

Paper (docs/paper.md)
    §4 Fix 2 at similar accuracy: a far teacher chosen by its accuracy on problems no evaluation
    uses, before any comparison. The models themselves stand in for §2's teacher and student.

Commands
    make tiny                      # reuse tiny/teacher and tiny/student, print their table
    make tiny FORCE=1              # retrain both from scratch (about 20 min on 2 cores)
    python -m tiny_world --model teacher --steps 1300 --out runs/teacher-mid
                                   # one model, another schedule (the report's control teacher)
    python -m tiny_world --out runs/teacher-mid --resume
                                   # that run, killed, continues with the recipe of its config.json
    make tiny WORLD=2              # the second world: tiny2/teacher and tiny2/student
    python -m tiny_world --match runs/grpo/ckpt --far-run runs/tiny2-teacher --out runs/far-matched
                                   # the far teacher's snapshot of about the GRPO teacher's accuracy
    python -m tiny_world --world 2 --model teacher --style O --out runs/tiny2-teacher-o
                                   # the far teacher in the student's notation (docs/protocol.md §6)

What it simplifies
    * The models are evaluated as saved (fp16 weights run in float32).
    * A snapshot is the weights alone (no optimizer state): it is a teacher to read, not a run to
      continue.
"""

import argparse
import copy
import json
import os
import shutil
import time

import torch

import common
import config
import data
import folders
import models
import run_folder
import train_sft
from errors import UserError
from tiny_world import measure, mix

# -----------------------------------------------------------------------------
# Training one model of the recipe


def train_model(cfg: dict) -> dict:
    """Train one model of MODELS or MODELS2 from scratch (or from its checkpoint on --resume) into
    cfg["out"], evaluate it as saved, write summary.json; returns the summary."""
    device = run_folder.start_run(cfg, "tiny_world.build", {}, {}, before_in_log=False)
    if cfg["resume"]:
        model, tok = models.load(run_folder.ckpt_dir(cfg), device=device, dtype=torch.float32)
    else:
        model = models.build_tiny(0, **cfg["shape"]).to(device=device, dtype=torch.float32)
        tok = models.tiny_tokenizer()
    items = mix.mixed_items(cfg, tok)
    done = train_sft.train(cfg, model, tok, items, on_step=snapshot_hook(cfg, model, tok))
    if done["steps_done"] < cfg["steps"]:
        return done
    saved, _ = models.load(os.path.join(cfg["out"], "final"), device=device, dtype=torch.float32)
    evaluate = measure.evaluate_tiny2 if cfg.get("world", 1) == 2 else measure.evaluate_tiny
    summary = {
        "params": sum(p.numel() for p in saved.parameters()),
        "items": len(items),
        **done,
        "eval": evaluate(saved, tok, cfg),
    }
    if cfg.get("snapshot_every"):
        summary["snapshots"] = select_snapshots(cfg, tok)
    run_folder.write_summary(cfg, summary)
    return summary


# -----------------------------------------------------------------------------
# Snapshots of the far teacher and the matched choice among them (Fix 2 at similar accuracy)

# The selection set: the first n problems of the eval split's part S, which no evaluation reads
# (tiny_world/partition.py, docs/protocol.md §2).
SELECTION = dict(n=300, part="S")


def snapshot_dir(cfg: dict, step: int) -> str:
    return os.path.join(cfg["out"], "snapshots", f"step{step:05d}")


def save_snapshot(cfg: dict, model, tok, step: int) -> None:
    """The weights after `step` in save_dtype under OUT/snapshots/ (the model itself untouched):
    the far teacher's checkpoints that Fix 2 chooses from at matched accuracy."""
    snapshot = copy.deepcopy(model).to(getattr(torch, cfg["save_dtype"])).eval()
    models.save(snapshot, tok, snapshot_dir(cfg, step))


def snapshot_hook(cfg: dict, model, tok):
    """train_sft.train's `on_step` for a recipe with `snapshot_every` (None without): a snapshot
    after every snapshot_every-th step."""
    every = cfg.get("snapshot_every")
    if not every:
        return None

    def on_step(step: int) -> None:
        if step % every == 0:
            save_snapshot(cfg, model, tok, step)

    return on_step


def selection_set() -> list:
    return data.load_examples("synthetic", n=SELECTION["n"], part=SELECTION["part"])


@torch.no_grad()
def select_snapshots(cfg: dict, tok) -> dict:
    """Greedy accuracy of every snapshot (save_snapshot) on the selection set, so that Fix 2 can
    take the far teacher's checkpoint of a given accuracy without looking at any number it is
    judged by: {"n", "part", "acc": {step: accuracy}}."""
    examples, accs = selection_set(), {}
    for step in range(cfg["snapshot_every"], cfg["steps"] + 1, cfg["snapshot_every"]):
        model, _ = models.load(snapshot_dir(cfg, step), dtype=torch.float32)
        cell, _ = train_sft.evaluate(model, tok, cfg, examples, greedy=True, label="selection")
        accs[str(step)] = cell["acc"]
    return {"n": len(examples), "part": SELECTION["part"], "acc": accs}


MATCH = "python -m tiny_world --match"  # the owner of a match's folder (folders.py)
MATCH_WRITES = ("teacher", "summary.json*")


def match_snapshot(far_run: str, model_path: str, out: str, threads: int = 0) -> dict:
    """Fix 2 at matched accuracy: the snapshot of the far teacher's run `far_run` (its summary's
    selection accuracies) nearest to the greedy accuracy of `model_path` on the same selection set,
    copied to OUT/teacher; OUT/summary.json records both accuracies and the step chosen."""
    if threads:
        torch.set_num_threads(threads)
    far, cfg = far_run_record(far_run)
    folders.check(out, MATCH, MATCH_WRITES)  # a new folder, or a match of its own cut short
    model, tok = models.load(model_path, dtype=torch.float32)
    target = train_sft.evaluate(model, tok, cfg, selection_set(), greedy=True, label="selection")[0]["acc"]
    accs = far["snapshots"]["acc"]
    step = min(accs, key=lambda k: (abs(accs[k] - target), int(k)))  # ties: the earlier snapshot
    folders.claim(out, MATCH, MATCH_WRITES, {}, say=common.say)
    shutil.copytree(snapshot_dir(dict(cfg, out=far_run), int(step)), os.path.join(out, "teacher"))
    summary = {
        "model": model_path,
        "model_selection_acc": target,
        "far_run": far_run,
        "step": int(step),
        "snapshot_selection_acc": accs[step],
        "selection": {k: v for k, v in far["snapshots"].items() if k != "acc"},
    }
    folders.write_json(os.path.join(out, "summary.json"), summary)  # written last: the match is done
    common.say(
        f"{model_path}: {target:.3f} on the selection set; chose {far_run} step {step} ({accs[step]:.3f})"
    )
    return summary


def read_run_json(folder: str, name: str, flag: str):
    """The JSON of `name` in a run folder given to `flag`, or a UserError naming the flag, the
    folder and the file: missing, unfinished (no summary.json yet) or damaged."""
    path = os.path.join(folder, name)
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {folder}: no such run folder")
    if not os.path.isfile(path):
        raise UserError(f"{flag} {folder}: {path} not found; pass a finished run of python -m tiny_world")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (ValueError, RecursionError) as e:  # not JSON or not UTF-8: a damaged file
        raise UserError(
            f"{flag} {folder}: {path} is not readable JSON ({str(e)[:80]}); the file is damaged"
        ) from None


def far_run_record(far_run: str) -> tuple:
    """(summary, config) of --far-run, checked to be a finished run of a recipe that keeps
    snapshots, with a selection accuracy for each snapshot and each snapshot's folder present:
    all before any model loads."""
    far, cfg = (
        read_run_json(far_run, "summary.json", "--far-run"),
        read_run_json(far_run, "config.json", "--far-run"),
    )
    keys = ("shape", "snapshot_every", "data_seed", "seed", "eval_max_new_tokens", "eval_batch_size")
    if not isinstance(cfg, dict) or any(k not in cfg for k in keys) or not cfg["snapshot_every"]:
        raise UserError(
            f"--far-run {far_run}: its config.json is not that of a tiny-world recipe that keeps snapshots; "
            "pass the far teacher's run (python -m tiny_world --world 2 --model teacher)"
        )
    acc = far.get("snapshots", {}).get("acc") if isinstance(far, dict) else None
    if not isinstance(acc, dict) or not acc:
        raise UserError(
            f"--far-run {far_run}: {far_run}/summary.json has no snapshots: train the far teacher with a "
            "recipe that keeps them (python -m tiny_world --world 2 --model teacher)"
        )
    for step, value in acc.items():
        if not step.isdigit() or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(
                f"--far-run {far_run}: {far_run}/summary.json lists snapshot {step!r} with accuracy "
                f"{value!r}; the file is damaged: rerun the far teacher"
            )
        if not os.path.isdir(snapshot_dir(dict(cfg, out=far_run), int(step))):
            raise UserError(
                f"--far-run {far_run}: {snapshot_dir(dict(cfg, out=far_run), int(step))} is missing; "
                "the run's snapshots were moved or deleted: rerun the far teacher"
            )
    return far, dict(cfg)


# -----------------------------------------------------------------------------
# Building a world: train what is missing, copy to tiny/, print the table


def reusable_model(dest: str, world: int, folder: str) -> tuple:
    """(model, tokenizer) of the shipped model in `dest`, loaded whole (config, tokenizer, every
    weight), or a UserError naming it: a model folder cut short (a copy or download that stopped) is
    not reused and described as if it were whole."""
    try:
        return models.load(dest, device="cpu", dtype=torch.float32)
    except UserError as e:
        again = "python -m tiny_world --force" + (" --world 2" if world == 2 else "")
        again += f" --dir {folder}" if folder != mix.WORLDS[world][0] else ""
        raise UserError(f"{e}; so {dest} cannot be reused: rebuild it with {again}") from None


def read_record(dest: str, world: int):
    """The record (sft_run.json) of a shipped model, or None when it is missing, cannot be read or
    lacks what the world's table shows (the model is then measured again)."""
    try:
        with open(os.path.join(dest, "sft_run.json"), encoding="utf-8") as f:
            record = json.load(f)
        (measure.table2 if world == 2 else measure.table)([{"name": dest, **record}])
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError, IndexError):
        return None
    return record


def build(force: bool = False, folder: str = "", threads: int = 0, world: int = 1) -> str:
    """Train what is missing of `world`'s two models into runs/, copy them to `folder` (default: the
    world's, tiny/ or tiny2/) with their record (sft_run.json), and print the world's table."""
    t_start = time.time()
    default_folder, recipes = mix.WORLDS[world]
    folder = folder or default_folder
    rows = []
    # every model to reuse is loaded first: a damaged one is refused before anything trains
    reused = {
        name: reusable_model(os.path.join(folder, name), world, folder)
        for name in ("teacher", "student")
        if not force and os.path.exists(os.path.join(folder, name, "config.json"))
    }
    for name in ("teacher", "student"):
        dest, out = os.path.join(folder, name), os.path.join("runs", f"{default_folder}-{name}")
        info = os.path.join(dest, "sft_run.json")
        if name not in reused:
            if force and os.path.exists(out):
                if folders.is_locked(out):
                    raise UserError(
                        f"{out}: a live process is training this model; let it end or stop it first"
                    )
                shutil.rmtree(out)  # from scratch: no stale checkpoint or metrics
            # an interrupted build continues where it stopped (resume is exact)
            resume = folders.resumable(out)
            summary = train_model(dict(recipes[name], out=out, threads=threads, resume=resume))
            if os.path.exists(dest):
                shutil.rmtree(dest)
            shutil.copytree(os.path.join(out, "final"), dest)
            with open(info, "w") as f:
                json.dump(summary, f, indent=1)
        else:
            model, tok = reused[name]
            summary = read_record(dest, world)
            if summary is not None:
                common.say(f"reusing {dest} (FORCE=1 / --force retrains it)")
            else:  # a model without a readable record: measure it now
                said = "has no sft_run.json" if not os.path.exists(info) else "has an unreadable sft_run.json"
                common.say(f"reusing {dest}; it {said}, evaluating it")
                evaluate = measure.evaluate_tiny2 if world == 2 else measure.evaluate_tiny
                summary = {
                    "params": sum(p.numel() for p in model.parameters()),
                    "train_s": float("nan"),
                    "steps_done": "?",
                    "eval": evaluate(model, tok, recipes[name]),
                }
        rows.append({"name": f"{default_folder}/{name}", **summary})
    text = (measure.table2 if world == 2 else measure.table)(rows)
    print(
        f"\nTiny world {world} ({folder}/), evaluated as saved (fp16 weights run in fp32); held-out "
        f"synthetic problems (eval split), hint rows on hard 2-digit products; "
        f"{torch.get_num_threads()} threads, this command {(time.time() - t_start) / 60:.1f} min\n"
    )
    print(text)
    return text


STYLE_LETTERS = {"R": "rewrite", "O": "operation"}  # --style: tiny_world/task.py's two families


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tiny_world", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--world",
        type=int,
        choices=sorted(mix.WORLDS),
        default=1,
        help="1: docs/tiny_world.md (tiny/); 2: docs/tiny_world2.md (tiny2/)",
    )
    ap.add_argument(
        "--force", action="store_true", help="retrain both models from scratch even if the folder has them"
    )
    ap.add_argument(
        "--dir", default="", help="folder of the shipped models (default: tiny/ or tiny2/, by --world)"
    )
    ap.add_argument(
        "--model",
        choices=sorted(mix.MODELS),
        help="train this one model of the recipe into --out instead of building the world",
    )
    ap.add_argument("--steps", type=int, help="with --model: the schedule's length (default: the recipe's)")
    ap.add_argument(
        "--style",
        choices=sorted(STYLE_LETTERS),
        help="with --model in the second world: the notation the model writes most (R rewrite lines, "
        "O operation lines; the other with the recipe's overlap), in place of its recipe's; e.g. the "
        "far teacher in the student's notation (docs/protocol.md §6)",
    )
    ap.add_argument(
        "--out", help="with --model: the run folder (default: runs/tiny-MODEL or runs/tiny2-MODEL)"
    )
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (with --model alone: its default folder) from its checkpoint, "
        "with the recipe of its config.json",
    )
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0 = torch's default)")
    ap.add_argument(
        "--match",
        metavar="MODEL",
        help="Fix 2 at matched accuracy: copy to --out/teacher the snapshot of --far-run "
        "nearest to MODEL's greedy accuracy on the selection set",
    )
    ap.add_argument(
        "--far-run",
        help="with --match: a run folder of the second world's teacher recipe (it keeps snapshots)",
    )
    return ap


def restyled(recipe: dict, args) -> dict:
    """The recipe with --style's notation in place of its own."""
    return dict(recipe, style=STYLE_LETTERS[args.style]) if args.style else recipe


def resumed_recipe(parser, args, argv) -> dict:
    """The config of `--out OUT --resume` (with --model alone, OUT is the model's default run
    folder): the run's OUT/config.json, with --threads as given (the run's when not given). A
    --steps given must be the run's, and a --model (with --world) must name the recipe the run
    was trained from; both are checked before anything loads."""
    folder, recipes = mix.WORLDS[args.world]
    out = args.out or f"runs/{folder}-{args.model}"
    saved = config.saved_config(out)
    if "shape" not in saved:
        raise UserError(
            f"--resume: {os.path.join(out, 'config.json')} sets no model shape: it is not a run of "
            "python -m tiny_world; resume it with the script that started it"
        )
    given = config.typed_args(parser, argv)
    world = saved.get("world", 1)
    if "world" in given and args.world != world:
        raise UserError(
            f"--world {args.world}: the run in {out} trains a model of world {world}; leave out --world "
            "to continue it"
        )
    if args.model:
        skip = ("steps", "out", *config.RESUME_MAY_CHANGE)
        recipe = json.loads(json.dumps(restyled(recipes[args.model], args)))  # as config.json holds it
        differ = [k for k, v in recipe.items() if k not in skip and not config.same_setting(saved.get(k), v)]
        if differ:
            raise UserError(
                f"--model {args.model} (--world {args.world}): the run in {out} was trained from another "
                f"recipe ({', '.join(differ[:3])} differ); leave out --model and --world to continue it "
                "from its config.json"
            )
    changed = config.changed_settings(
        saved, {"out": out, **({"steps": args.steps} if "steps" in given else {})}
    )
    if changed:
        raise UserError(config.resume_refusal(out, changed, config.flags_of(parser)))
    cfg = dict(saved, resume=True, stop_at=0)
    if "threads" in given:
        cfg["threads"] = args.threads
    return cfg


def main(argv=None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.match or args.far_run:
        if not (args.match and args.far_run and args.out):
            raise UserError("--match MODEL needs --far-run RUN and --out DIR")
        unused = [
            k for k in config.typed_args(parser, argv) if k not in ("match", "far_run", "out", "threads")
        ]
        if unused:
            flag = "--" + unused[0].replace("_", "-")
            raise UserError(
                f"{flag}: --match copies a snapshot of --far-run and trains nothing, so it would ignore "
                f"{flag}; drop it"
            )
        if args.threads < 0:
            raise UserError(f"--threads {args.threads}: must be >= 0")
        match_snapshot(args.far_run, args.match, args.out, args.threads)
        return
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps}: must be an integer >= 1")
    if args.style and (args.world != 2 or not args.model):
        raise UserError(
            f"--style {args.style}: the notation of one model of the second world; add --world 2 and "
            "--model teacher or --model student"
        )
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: must be >= 0")
    if args.resume:
        if args.force:
            raise UserError(
                "--force rebuilds the whole world and --resume continues one run: pass one of them"
            )
        if not (args.model or args.out):
            raise UserError(
                "--resume continues one model's run: pass its --out DIR (or --model, whose run folder is "
                "runs/tiny-MODEL or runs/tiny2-MODEL)"
            )
        cfg = resumed_recipe(parser, args, argv)
    else:
        if args.model is None and (args.steps or args.out):
            raise UserError(
                "--steps and --out train one model: add --model teacher or --model student (--out DIR "
                "--resume alone continues a run)"
            )
        if args.model and args.force:
            raise UserError("--force rebuilds the whole world; with --model, start in a new --out instead")
        if args.model is None:
            build(args.force, args.dir, args.threads, args.world)
            return
        folder, recipes = mix.WORLDS[args.world]
        cfg = dict(
            restyled(recipes[args.model], args),
            out=args.out or f"runs/{folder}-{args.model}",
            threads=args.threads,
            resume=False,
        )
        if args.steps:
            cfg["steps"] = args.steps
    summary = train_model(cfg)
    if "eval" in summary:
        name = args.model or os.path.basename(os.path.normpath(cfg["out"]))
        print((measure.table2 if cfg.get("world", 1) == 2 else measure.table)([{"name": name, **summary}]))
