"""The README's quickstart results: what `make opd` gives in each tiny world, beside its baseline at
the same teacher cost, written from the runs.

    make readme-opd       # both worlds' make opd and its baseline, then this (about 12 min on 2 cores)
    python -m experiments.quickstart runs/readme-opd runs/readme-opd2 runs/readme-opd-kd runs/readme-opd2-kd

What this file is
    `save` keeps what the README shows of a finished `train_opd.py` run (its config, summary and
    collapse signature) in results/quickstart/ (`RESULTS_DIR`), one small JSON per world, with its
    baseline: a finished `train_sft.py --preset kd --tokens-of RUN` run (SFT on the teacher's samples
    at the OPD run's teacher tokens), evaluated here on the OPD run's held-out problems with its
    settings (`baseline`). `body` renders the README's quickstart block from those files with
    train_opd.final_table, the table the run printed at its end, plus the baseline's row; `main`
    saves the runs given and writes the block between the QUICKSTART markers of README.md
    (experiments.results.write_between). tests/test_docs.py renders the block again from the
    committed files and compares it with the README, so that the README's numbers are the runs',
    never copied by hand.
"""

import argparse
import json
import os
import sys

import torch

import common
import diagnostics
import errors
import eval_math
import folders
import models
import run_folder
import train_opd
from errors import UserError
from experiments import results

RESULTS_DIR = os.path.join("results", "quickstart")
QUICKSTART = (
    "<!-- quickstart: written by make readme-opd (experiments/quickstart.py) from results/quickstart/ -->",
    "<!-- /quickstart -->",
)
PRESETS = {"world1": "tiny", "world2": "tiny2"}  # train_opd.py's preset of each world's make opd
# what each world's make opd shows, in one line, before its table
WORLDS = {
    "world1": (
        "`make opd`, the first world: tiny/teacher writes the student's own notation, and OPD lifts the "
        "student toward it:"
    ),
    "world2": (
        "`make opd WORLD=2`, the second world: tiny2/teacher writes the other notation, far from the "
        "student's, and OPD from it lowers the student's accuracy instead of lifting it (over three "
        "seeds in RESULTS.md, `raw-big-tail`), the paper's teacher-choice pitfall (Mechanism 1; Fix 2's "
        "close teacher is `make grpo WORLD=2`, then `make recipe WORLD=2`):"
    ),
}


def baseline(run: str, config: dict, kd: str) -> dict:
    """The kd run `kd` (train_sft.py --preset kd) made from the OPD run `run`: its teacher tokens,
    and its final model evaluated on the OPD run's held-out problems with the OPD run's evaluation
    settings and seed (eval_math.evaluate_run; the records go to KD/eval/opd-held-out.jsonl)."""
    if not os.path.exists(os.path.join(kd, "summary.json")):
        raise UserError(f"{kd}: no summary.json, so no finished train_sft.py run; run make readme-opd")
    kd_config, kd_summary = run_folder.read_json(kd, "config.json"), run_folder.read_json(kd)
    made = os.path.normpath(kd_config.get("tokens_of") or "")
    if kd_config.get("source") != "samples" or made != os.path.normpath(run):
        raise UserError(
            f"{kd}: not SFT on the teacher's samples at {run}'s teacher tokens; run "
            f"train_sft.py --preset kd --tokens-of {run}"
        )
    model, tok = models.load(os.path.join(kd, "final"), dtype=torch.float32)
    held_out = common.load_examples(config, "eval")
    summary, _ = eval_math.evaluate_run(model, tok, held_out, dict(config, out=kd), "opd-held-out")
    filtered = kd_summary["data"]["trace_filter"]
    return {
        "summary": summary,
        "teacher_tokens": filtered["teacher_tokens"],
        "items": kd_summary["data"]["items"],
    }


def save(run: str, world: str, kd: str) -> str:
    """Keep a finished run's config, summary and collapse signature, and its baseline (`kd`), as
    results/quickstart/WORLD.json."""
    if not os.path.exists(os.path.join(run, "summary.json")):
        raise UserError(f"{run}: no summary.json, so no finished train_opd.py run; run make readme-opd")
    config = run_folder.read_json(run, "config.json")
    if config.get("preset") != PRESETS[world]:
        raise UserError(
            f"{run}: a run of --preset {config.get('preset')}, but the README's {world} is make opd's "
            f"--preset {PRESETS[world]}"
        )
    kept = {
        "config": config,
        "summary": run_folder.read_json(run),
        "collapse": diagnostics.collapse_signature(run_folder.read_log(run)[0]),
        "kd": baseline(run, config, kd),
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{world}.json")
    folders.write_json(path, kept)
    return path


def body(results_dir: str = RESULTS_DIR) -> str:
    """The README's quickstart block between its markers, from the files `save` wrote."""
    parts = []
    for world, line in WORLDS.items():
        with open(os.path.join(results_dir, f"{world}.json")) as f:
            kept = json.load(f)
        kd = kept["kd"]
        row = ("student after SFT on the teacher's samples", kd["summary"])
        table = train_opd.final_table(kept["config"], kept["summary"], kept["collapse"], (row,))
        opd, base = kept["summary"]["student_after"]["acc/pass@1"], kd["summary"]["acc/pass@1"]
        cost = (
            f"The last row is OPD's baseline at the same teacher cost: SFT of the student on {kd['items']:,} "
            f"responses the teacher sampled, {kd['teacher_tokens']:,} tokens, as many as OPD's rollouts "
            "held (sequence-level distillation, `train_sft.py --preset kd --tokens-of RUN`). On this seed "
            f"it ends {'above' if base > opd else 'below' if base < opd else 'level with'} OPD "
            f"({base:.3f} against {opd:.3f})."
        )
        parts += [line, "", "```", table, "```", "", cost, ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the README's quickstart results from two make opd runs.")
    ap.add_argument("world1", help="a finished make opd run folder of the first world")
    ap.add_argument("world2", help="a finished make opd WORLD=2 run folder")
    ap.add_argument("world1_kd", help="a finished train_sft.py --preset kd --tokens-of WORLD1 run")
    ap.add_argument("world2_kd", help="the same for WORLD2")
    ap.add_argument("--readme", default="README.md", help="the README to write (default README.md)")
    args = ap.parse_args(argv)
    for world in WORLDS:
        print(f"kept {save(getattr(args, world), world, getattr(args, world + '_kd'))}", file=sys.stderr)
    results.write_between(args.readme, QUICKSTART, body(RESULTS_DIR))
    print(f"wrote the quickstart block of {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    sys.argv[0] = "python -m experiments.quickstart"  # what errors.run prints before `error:`
    errors.run(main)
