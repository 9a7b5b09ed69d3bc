"""Curves of one or more training runs in one PNG: accuracy, length, repetition, Top-K overlap, KL.

What this file is
    `plot` draws every run's metrics.jsonl (what train_opd.py / train_opsd.py write) into one
    figure of eight panels; `table` prints one Markdown row per run with its final values. The
    report (experiments/report.py) draws its figures with `plot`; `make sft-opd`, `make collapse`
    and `make recipe` end with both.

Paper (docs/paper.md)
    §2.5's collapse monitors, one panel each: held-out accuracy, mean response length, truncation
    rate, 3-gram repetition ratio, student mass on its own Top-K, student/teacher Top-K overlap, the
    full reverse KL on the training batch, hedging words.

Commands (from the project root)
    make plot RUN=runs/opd                        # -> runs/opd/curves.png
    python -m experiments.plot runs/plain20 runs/sg20 --out collapse.png --title "Top-20: plain vs sg" --table

What it simplifies
    * Training-step curves are smoothed with a centred moving average of --smooth steps (the raw
      values are in the JSONL); the table averages the last 10 steps.
"""

import argparse
import os
import sys

import common
import errors
import run_folder

PANELS = [  # (metric key in metrics.jsonl, title)
    ("eval", "held-out accuracy (pass@1)"),
    ("len/mean", "response length (tokens)"),
    ("len/truncated_frac", "truncated fraction"),
    ("rep/ratio", "3-gram repetition ratio"),
    ("topk/student_mass", "student mass on its Top-K"),
    ("topk/overlap", "student/teacher Top-K overlap"),
    ("kl/full", "reverse KL on the batch"),
    ("hedge/per_1k_words", "hedging words per 1k"),
]


def smooth(xs: list, w: int) -> list:
    if w <= 1:
        return xs
    h = w // 2
    return [sum(xs[max(0, i - h) : i + h + 1]) / len(xs[max(0, i - h) : i + h + 1]) for i in range(len(xs))]


def plot(folders: list, out: str, title: str = "", smooth_w: int = 5) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    for folder in folders:
        steps, evals = run_folder.read_log(folder)
        label = os.path.basename(os.path.normpath(folder))
        for ax, (key, name) in zip(axes.flat, PANELS):
            if key == "eval":
                if evals:
                    ax.plot([s for s, _ in evals], [a for _, a in evals], marker="o", label=label)
            else:
                xs = [r["step"] for r in steps if key in r]
                ys = [r[key] for r in steps if key in r]
                if xs:
                    ax.plot(xs, smooth(ys, smooth_w), label=label)
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
    labelled = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if labelled:  # on the first panel with curves (accuracy, unless the runs logged no evaluation)
        labelled[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def table(folders: list, last: int = 10) -> str:
    """One Markdown row per run: final held-out accuracy, and the training monitors averaged over
    the last `last` steps (the collapse signature of docs/paper.md §2.5)."""
    keys = [
        ("len/mean", "len"),
        ("len/truncated_frac", "trunc"),
        ("rep/ratio", "rep"),
        ("topk/student_mass", "student Top-K mass"),
        ("topk/overlap", "overlap"),
        ("kl/full", "KL"),
    ]
    rows = []
    for folder in folders:
        steps, evals = run_folder.read_log(folder)
        tail = steps[-last:]
        acc = lambda i: f"{evals[i][1]:.3f}" if evals else "-"
        rows.append(
            [
                os.path.basename(os.path.normpath(folder)),
                steps[-1]["step"] if steps else 0,
                acc(0),
                acc(-1),
                *(f"{sum(r[k] for r in tail) / max(len(tail), 1):.3f}" for k, _ in keys),
            ]
        )
    return common.md_table(["run", "steps", "acc start", "acc end", *(name for _, name in keys)], rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Plot training curves of one or more runs into one PNG.")
    ap.add_argument("runs", nargs="+", help="run folders holding metrics.jsonl")
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
