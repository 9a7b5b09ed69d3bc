"""Curves of one or more training runs (OPD, OPSD, GRPO, SFT) in one PNG, and a table of their ends.

What this file is
    `plot` draws the metrics.jsonl of every run it is given into one figure. Each trainer logs its
    own monitors, so the panels are picked from what the runs hold (`panels`): a panel is drawn
    when at least one run logged its key, and several runs of different trainers get the union.
        OPD, OPSD   held-out accuracy, length, truncation, repetition, student mass on its Top-K,
                    Top-K overlap, full reverse KL, hedging (8 panels)
        GRPO        held-out accuracy, reward, length, truncation, repetition, entropy, groups
                    with equal rewards, hedging (8 panels)
        SFT         held-out accuracy before and after, loss, gradient norm, learning rate
    The teacher's held-out accuracy (the step-0 evaluation of OPD and OPSD, also in summary.json)
    is a dashed horizontal line on the accuracy panel. `table` prints one Markdown row per run
    with its final values, in columns that some run has. The report (experiments/report.py) draws
    its figures with `plot`; `make sft-opd`, `make collapse` and `make recipe` end with both.

Paper (docs/paper.md)
    §2.5's collapse monitors, one panel each. The y-axis of a fraction (accuracy, reward, mass,
    overlap, truncation, repetition) is [0, 1], so that a healthy run's wiggle of a tenth of a
    percent in its Top-K mass stays a flat line near the top and a collapse is a fall across the
    panel; every other panel starts at 0.

Commands (from the project root)
    make plot RUN=runs/opd                        # -> runs/opd/curves.png
    python -m experiments.plot runs/plain20 runs/sg20 --out collapse.png --title "Top-20: plain vs sg" --table

What it simplifies
    * Training-step curves are smoothed with a centred moving average of --smooth steps (the raw
      values are in the JSONL; the learning rate is drawn raw); the table averages the last 10 steps.
    * SFT logs no evaluation during training: its accuracy is the two sampled (T = 1) evaluations
      of summary.json, before training and after, joined by a line.
"""

import argparse
import collections
import json
import math
import os
import sys

import common
import diagnostics
import errors
import run_folder

# One panel: the metric's key in metrics.jsonl ("eval": the held-out accuracy), its title, its
# y-range ("unit": [0, 1]; "floor": from 0), a key the record must also hold (SFT's "loss" is a
# negative log-likelihood, the distillers' is their loss: only the first gets a panel), and whether
# the curve is drawn unsmoothed (a schedule: smoothing would shift its peak).
Panel = collections.namedtuple("Panel", "key title scale only_with raw", defaults=("", False))
SFT = "tokens/supervised"  # logged by train_sft.py alone

PANELS = [  # in the order drawn; an OPD or OPSD run's eight keep the order of §2.5's monitors
    Panel("eval", "held-out accuracy (pass@1)", "unit"),
    Panel("reward/mean", "reward on the training batch", "unit"),
    Panel("loss", "SFT loss (NLL per supervised token)", "floor", SFT),
    Panel("len/mean", "response length (tokens)", "floor"),
    Panel("len/truncated_frac", "truncated fraction", "unit"),
    Panel("rep/ratio", "3-gram repetition ratio", "unit"),
    Panel("topk/student_mass", "student mass on its Top-K", "unit"),
    Panel("topk/overlap", "student/teacher Top-K overlap", "unit"),
    Panel("kl/full", "reverse KL on the batch", "floor"),
    Panel("entropy", "policy entropy (nats per token)", "floor"),
    Panel("grpo/zero_adv_frac", "groups with equal rewards (no signal)", "unit"),
    Panel("hedge/per_1k_words", "hedging words per 1k", "floor"),
    Panel("grad_norm", "gradient norm (before clipping)", "floor", SFT),
    Panel("lr", "learning rate", "floor", SFT, raw=True),
]

TABLE = [  # (key, column, only_with) of `table`, after run, steps, acc start, acc end
    ("reward/mean", "reward", ""),
    ("loss", "SFT loss", SFT),
    ("len/mean", "len", ""),
    ("len/truncated_frac", "trunc", ""),
    ("rep/ratio", "rep", ""),
    ("topk/student_mass", "student Top-K mass", ""),
    ("topk/overlap", "overlap", ""),
    ("kl/full", "KL", ""),
]

COLUMNS = 4  # panels per row


def smooth(xs: list, w: int) -> list:
    if w <= 1:
        return xs
    h = w // 2
    return [sum(xs[max(0, i - h) : i + h + 1]) / len(xs[max(0, i - h) : i + h + 1]) for i in range(len(xs))]


def load(folder: str) -> dict:
    """What `plot` and `table` read from a run folder: `label`, `steps` (the training-step records
    of metrics.jsonl), `evals` ([(step, held-out student accuracy)]) and `teacher` (the teacher's
    held-out accuracy, None without one)."""
    steps, evals = run_folder.read_log(folder)
    summary = {}
    if os.path.exists(os.path.join(folder, "summary.json")):
        summary = run_folder.read_json(folder)
    teacher = summary.get("teacher", {}).get("acc/pass@1")
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        first = f.readline().strip()
    if first:  # the step-0 record: the teacher's evaluation before summary.json exists
        teacher = json.loads(first).get("eval", {}).get("teacher", {}).get("acc/pass@1", teacher)
    if not evals and "eval" in summary:  # train_sft.py: evaluations before and after, sampled
        before = summary.get("eval_before", {}).get("sampled")
        evals = ([(0, before["acc"])] if before else []) + [
            (summary.get("steps_done", summary.get("steps", 0)), summary["eval"]["sampled"]["acc"])
        ]
    return {
        "label": os.path.basename(os.path.normpath(folder)),
        "steps": steps,
        "evals": evals,
        "teacher": teacher,
    }


def has(run: dict, key: str, only_with: str = "") -> bool:
    """Whether `run` (a `load`) holds data for the metric `key`."""
    if key == "eval":
        return bool(run["evals"])
    return any(key in r and (not only_with or only_with in r) for r in run["steps"])


def panels(runs: list) -> list:
    """The Panels that at least one of `runs` (`load`s) has data for, in PANELS' order."""
    return [p for p in PANELS if any(has(run, p.key, p.only_with) for run in runs)]


def figure(folders: list, title: str = "", smooth_w: int = 5):
    """The matplotlib Figure of the runs in `folders`: one axes per picked panel, titled as in
    PANELS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [load(folder) for folder in folders]
    picked = panels(runs)
    if not picked:
        raise errors.UserError(f"{', '.join(folders)}: no training step or evaluation logged yet")
    cols = min(COLUMNS, len(picked))
    rows = math.ceil(len(picked) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[len(picked) :]:
        ax.remove()
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, panel in zip(axes.flat, picked):
        for i, run in enumerate(runs):
            color = colors[i % len(colors)]
            if panel.key == "eval":
                if run["evals"]:
                    xs, ys = zip(*run["evals"])
                    ax.plot(xs, ys, marker="o", color=color, label=run["label"])
                continue
            recs = [
                r for r in run["steps"] if panel.key in r and (not panel.only_with or panel.only_with in r)
            ]
            if recs:
                ys = smooth([r[panel.key] for r in recs], 1 if panel.raw else smooth_w)
                ax.plot([r["step"] for r in recs], ys, color=color, label=run["label"])
        if panel.key == "eval":
            teacher_lines(ax, runs, colors)
        if panel.scale == "unit":
            ax.set_ylim(-0.02, 1.02)
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    labelled = [ax for ax in fig.axes if ax.get_legend_handles_labels()[0]]
    if labelled:  # on the first panel with curves (accuracy, unless the runs logged no evaluation)
        labelled[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def teacher_lines(ax, runs: list, colors: list) -> None:
    """The teachers' held-out accuracy as dashed lines: one grey line when the runs that have a
    teacher share its accuracy (named after them when some runs have none), else one per run in
    its colour."""
    accs = [(i, run["teacher"]) for i, run in enumerate(runs) if run["teacher"] is not None]
    if len({round(a, 9) for _, a in accs}) == 1:
        who = "" if len(accs) == len(runs) else " of " + ", ".join(runs[i]["label"] for i, _ in accs)
        ax.axhline(accs[0][1], color="0.4", linestyle="--", linewidth=1, label="teacher" + who)
        return
    for i, acc in accs:
        color = colors[i % len(colors)]
        ax.axhline(acc, color=color, linestyle="--", linewidth=1, label=f"teacher of {runs[i]['label']}")


def plot(folders: list, out: str, title: str = "", smooth_w: int = 5) -> str:
    """Draw `figure` into the PNG `out`; returns `out`."""
    import matplotlib.pyplot as plt

    fig = figure(folders, title, smooth_w)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def table(folders: list, last: int = 10) -> str:
    """One Markdown row per run: first and last held-out accuracy, COLLAPSED where the run's last
    `last` steps carry the collapse signature (diagnostics.collapse_signature), and the training
    monitors averaged over those steps, in the columns of TABLE that some run logs; `-` where a run
    has no value."""
    runs = [load(folder) for folder in folders]
    cols = [(k, name, w) for k, name, w in TABLE if any(has(run, k, w) for run in runs)]
    rows = []
    for run in runs:
        tail, evals = run["steps"][-last:], run["evals"]
        acc = lambda i: f"{evals[i][1]:.3f}" if evals else "-"
        cells = []
        for key, _, with_key in cols:
            vals = [r[key] for r in tail if key in r and (not with_key or with_key in r)]
            cells.append(f"{sum(vals) / len(vals):.3f}" if vals else "-")
        topk = run["steps"] and all("topk/student_mass" in r for r in run["steps"][-last:])
        sig = "COLLAPSED" if topk and diagnostics.collapse_signature(run["steps"], last)["collapsed"] else ""
        rows.append(
            [run["label"], run["steps"][-1]["step"] if run["steps"] else 0, acc(0), acc(-1), sig, *cells]
        )
    return common.md_table(
        ["run", "steps", "acc start", "acc end", "collapse (§2.5)", *(name for _, name, _ in cols)], rows
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Plot training curves of one or more runs into one PNG.")
    ap.add_argument("runs", nargs="+", help="run folders holding metrics.jsonl (OPD, OPSD, GRPO or SFT)")
    ap.add_argument("--out", help="PNG path (default: <first run>/curves.png)")
    ap.add_argument("--title", default="", help="figure title")
    ap.add_argument("--smooth", type=int, default=5, help="moving-average window over steps (1 = raw)")
    ap.add_argument(
        "--table", action="store_true", help="also print a Markdown table of the runs' final values"
    )
    args = ap.parse_args(argv)
    if args.smooth < 1:
        raise errors.UserError(f"--smooth {args.smooth}: must be an integer >= 1 (1 = raw)")
    if args.table:
        print(table(args.runs))
    print(plot(args.runs, args.out or os.path.join(args.runs[0], "curves.png"), args.title, args.smooth))


if __name__ == "__main__":
    sys.argv[0] = "python -m experiments.plot"  # what errors.run prints before `error:`
    errors.run(main)
