"""The README's quickstart results: what `make opd` gives in each tiny world, written from the runs.

    make readme-opd       # both worlds' make opd, then this (about 6 min on 2 cores)
    python -m experiments.quickstart runs/readme-opd runs/readme-opd2

What this file is
    `save` keeps what the README shows of a finished `train_opd.py` run (its config, summary and
    collapse signature) in results/quickstart/ (`RESULTS_DIR`), one small JSON per world; `body`
    renders the README's quickstart block from those files with train_opd.final_table, the table the
    run printed at its end; `main` saves the runs given and writes the block between the QUICKSTART
    markers of README.md (experiments.results.write_between). tests/test_docs.py renders the block
    again from the committed files and compares it with the README, so that the README's numbers
    are the runs', never copied by hand.
"""

import argparse
import json
import os
import sys

import diagnostics
import errors
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


def save(run: str, world: str) -> str:
    """Keep a finished run's config, summary and collapse signature as results/quickstart/WORLD.json."""
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
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{world}.json")
    run_folder.write_json(path, kept)
    return path


def body(results_dir: str = RESULTS_DIR) -> str:
    """The README's quickstart block between its markers, from the files `save` wrote."""
    parts = []
    for world, line in WORLDS.items():
        with open(os.path.join(results_dir, f"{world}.json")) as f:
            kept = json.load(f)
        table = train_opd.final_table(kept["config"], kept["summary"], kept["collapse"])
        parts += [line, "", "```", table, "```", ""]
    return "\n".join(parts)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write the README's quickstart results from two make opd runs.")
    ap.add_argument("world1", help="a finished make opd run folder of the first world")
    ap.add_argument("world2", help="a finished make opd WORLD=2 run folder")
    ap.add_argument("--readme", default="README.md", help="the README to write (default README.md)")
    args = ap.parse_args(argv)
    for world in WORLDS:
        print(f"kept {save(getattr(args, world), world)}", file=sys.stderr)
    results.write_between(args.readme, QUICKSTART, body())
    print(f"wrote the quickstart block of {args.readme}", file=sys.stderr)


if __name__ == "__main__":
    sys.argv[0] = "python -m experiments.quickstart"  # what errors.run prints before `error:`
    errors.run(main)
