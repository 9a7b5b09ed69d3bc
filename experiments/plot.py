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
    held-out accuracy, None without one). A folder that is missing or holds no readable log, and a
    line or summary field that is not what a trainer writes, raise a UserError naming the file and
    line: a figure drawn from half a log would mislead."""
    if not os.path.isdir(folder):
        raise errors.UserError(
            f"{folder}: no such run folder; pass folders written by train_opd.py, train_opsd.py, "
            "train_grpo.py or train_sft.py"
        )
    records = read_metrics(os.path.join(folder, "metrics.jsonl"))
    steps = [r for r in records if "loss" in r]
    evals = [
        (r["step"], r["eval"]["student"]["acc/pass@1"]) for r in records if "student" in r.get("eval", {})
    ]
    summary = read_summary(folder)
    teacher = summary.get("teacher", {}).get("acc/pass@1")
    if records and "eval" in records[0]:  # the step-0 record: the teacher's evaluation before summary.json
        teacher = records[0]["eval"].get("teacher", {}).get("acc/pass@1", teacher)
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


# the keys whose values are drawn or averaged: each must be a number where a record holds it
NUMERIC = {"step", *(p.key for p in PANELS if p.key != "eval"), *(k for k, _, _ in TABLE)}


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_metrics(path: str) -> list:
    """The records of a run's metrics.jsonl, checked: each line a JSON object with an integer
    `step`, numbers where NUMERIC names a key, and an evaluation's accuracies numbers. A cut last
    line (a record being written, or a write a kill cut short) is left out with a note; any other
    bad line is a UserError naming the file and line."""
    if not os.path.isfile(path):
        raise errors.UserError(
            f"{path} not found: pass a run folder written by one of the train_*.py scripts"
        )
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    records = []
    for i, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (ValueError, RecursionError):  # not UTF-8, not JSON, or more than Python's reader takes
            if i == len(lines):  # no newline after it: the last record, cut mid-write
                print(f"plot: {path}:{i}: a cut last line, left out", file=sys.stderr)
                continue
            raise errors.UserError(
                f"{path}:{i}: not a JSON record ({raw[:50]!r}); the log is damaged: remove that line"
            ) from None
        problem = record_problem(rec)
        if problem:
            raise errors.UserError(
                f"{path}:{i}: {problem}; not a record a trainer writes: fix or remove that line"
            )
        records.append(rec)
    return records


def record_problem(rec) -> str:
    """What is wrong with one metrics.jsonl record for plotting ('' when nothing is)."""
    if not isinstance(rec, dict):
        return f"a {type(rec).__name__}, not an object"
    if not isinstance(rec.get("step"), int) or isinstance(rec.get("step"), bool):
        return f"'step' is {rec.get('step')!r}, not an integer"
    for key in NUMERIC & set(rec):
        if not is_number(rec[key]):
            return f"{key!r} is {rec[key]!r}, not a number"
    ev = rec.get("eval", {})
    if not isinstance(ev, dict):
        return f"'eval' is {ev!r}, not an object"
    for who in ("student", "teacher"):
        if who in ev and not (isinstance(ev[who], dict) and is_number(ev[who].get("acc/pass@1"))):
            return f"the {who}'s evaluation has no numeric 'acc/pass@1'"
    return ""


def read_summary(folder: str) -> dict:
    """A run's summary.json ({} before the run ends), with the accuracies `load` reads checked."""
    path = os.path.join(folder, "summary.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            summary = json.load(f)
    except (ValueError, RecursionError) as e:
        raise errors.UserError(f"{path}: not readable JSON ({str(e)[:80]}); the file is damaged") from None
    wrong = "" if isinstance(summary, dict) else "not an object"
    if not wrong and "teacher" in summary:
        if not (isinstance(summary["teacher"], dict) and is_number(summary["teacher"].get("acc/pass@1", 0))):
            wrong = "'teacher' holds no numeric 'acc/pass@1'"
    for key in ("eval_before", "eval"):
        if not wrong and key in summary and summary[key] is not None:
            sampled = summary[key].get("sampled") if isinstance(summary[key], dict) else None
            if not (isinstance(sampled, dict) and is_number(sampled.get("acc"))):
                wrong = f"{key!r} holds no sampled accuracy ('sampled': {{'acc': ...}})"
    if wrong:
        raise errors.UserError(f"{path}: {wrong}, which is not what a trainer writes; fix or remove the file")
    return summary


def check_out(out: str) -> None:
    """A UserError naming --out unless `out` is an image file that can be written: an existing
    folder, and an extension matplotlib writes (with none, it would add .png to another name)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    kinds = FigureCanvasAgg.get_supported_filetypes()
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    if ext not in kinds:
        raise errors.UserError(
            f"--out {out}: name the image with the extension of its format: .png, .pdf, .svg "
            f"(or {', '.join('.' + k for k in sorted(kinds) if k not in ('png', 'pdf', 'svg'))})"
        )
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out) or not os.path.isdir(folder):
        what = "is a folder" if os.path.isdir(out) else f"is in {folder}, which does not exist"
        raise errors.UserError(f"--out {out}: {what}; pass a file path in an existing folder")


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
    ap.add_argument(
        "--out",
        help="image path: .png, .pdf, .svg, ... in an existing folder (default: <first run>/curves.png)",
    )
    ap.add_argument("--title", default="", help="figure title")
    ap.add_argument("--smooth", type=int, default=5, help="moving-average window over steps (1 = raw)")
    ap.add_argument(
        "--table", action="store_true", help="also print a Markdown table of the runs' final values"
    )
    args = ap.parse_args(argv)
    if args.smooth < 1:
        raise errors.UserError(f"--smooth {args.smooth}: must be an integer >= 1 (1 = raw)")
    runs = [load(folder) for folder in args.runs]  # every folder checked before anything is written
    if args.out is not None:
        check_out(args.out)
    if not panels(runs):
        raise errors.UserError(f"{', '.join(args.runs)}: no training step or evaluation logged yet")
    if args.table:
        print(table(args.runs))
    print(plot(args.runs, args.out or os.path.join(args.runs[0], "curves.png"), args.title, args.smooth))


if __name__ == "__main__":
    sys.argv[0] = "python -m experiments.plot"  # what errors.run prints before `error:`
    errors.run(main)
