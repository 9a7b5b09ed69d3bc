"""experiments/plot.py: each trainer's run gets the panels of what it logs, fractions keep the y-range
[0, 1], the teacher is a line on the accuracy panel, the run table reports what the metrics file
holds and the moving average is centred; common.progress prints plain lines off a terminal."""

import json

import pytest

import common
from experiments import plot

DISTILL = [  # what train_opd.py and train_opsd.py log every step, among others
    "len/mean",
    "len/truncated_frac",
    "rep/ratio",
    "topk/student_mass",
    "topk/overlap",
    "kl/full",
    "hedge/per_1k_words",
]
GRPO = ["reward/mean", "entropy", "grpo/zero_adv_frac", "ppo/clip_frac", "len/mean", "len/truncated_frac"]
GRPO += ["rep/ratio", "hedge/per_1k_words", "grad_norm", "lr"]
SFT = ["lr", "grad_norm", "tokens/supervised", "epoch", "time/step_s"]


def write_run(root, name, keys, steps=12, evals=True, teacher=None, summary=None):
    """A run folder with metrics.jsonl: `steps` records of `keys` (and loss), with held-out
    evaluations at the first and last step when `evals`, a teacher's at step 0 when `teacher`."""
    run = root / name
    run.mkdir()
    lines = []
    if evals:
        first = {"student": {"acc/pass@1": 0.25}}
        if teacher is not None:
            first["teacher"] = {"acc/pass@1": teacher}
        lines.append({"step": 0, "eval": first})
    for s in range(1, steps + 1):
        lines.append({"step": s, "loss": 0.1, **{k: float(s + i) for i, k in enumerate(keys)}})
    if evals:
        lines.append({"step": steps, "eval": {"student": {"acc/pass@1": 0.75}}})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    return str(run)


def titles(fig) -> list:
    return [ax.get_title() for ax in fig.axes]


def test_table_and_smoothing(tmp_path):
    keys = ["len/mean", "len/truncated_frac", "rep/ratio", "topk/student_mass", "topk/overlap", "kl/full"]
    run = write_run(tmp_path, "sg20", keys)
    lines = plot.table([run], last=4).splitlines()
    assert lines[0] == (
        "| run | steps | acc start | acc end | collapse (§2.5) | len | trunc | rep | student Top-K mass "
        "| overlap | KL |"
    )
    cells = [c.strip() for c in lines[-1].split("|")[1:-1]]
    assert cells[:4] == ["sg20", "12", "0.250", "0.750"]
    # steps 9..12: mean of s + i is 10.5 + i
    assert [float(c) for c in cells[5:]] == [10.5 + i for i in range(len(keys))]
    assert plot.smooth([0, 0, 3, 0, 0], 3) == [0, 1, 1, 1, 0]
    out = plot.plot([run], str(tmp_path / "c.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_panels_follow_each_trainers_keys(tmp_path):
    opd = write_run(tmp_path, "opd", DISTILL, teacher=0.9)
    grpo = write_run(tmp_path, "grpo", GRPO)
    sft_summary = {
        "steps": 12,
        "steps_done": 12,
        "eval_before": {"greedy": {"acc": 0.5}, "sampled": {"acc": 0.4}},
        "eval": {"greedy": {"acc": 0.6}, "sampled": {"acc": 0.55}},
    }
    sft = write_run(tmp_path, "sft", SFT, evals=False, summary=sft_summary)
    title = {p.key: p.title for p in plot.PANELS}
    # OPD: the paper's eight monitors, in their order; not its loss, gradient norm or learning rate
    opd_keys = ["eval", *DISTILL[:6], "hedge/per_1k_words"]
    assert [p.key for p in plot.panels([plot.load(opd)])] == opd_keys
    fig = plot.figure([opd])
    assert titles(fig) == [title[k] for k in opd_keys]
    # GRPO: its reward, entropy and equal-reward groups instead of Top-K and KL
    grpo_keys = ["eval", "reward/mean", "len/mean", "len/truncated_frac", "rep/ratio", "entropy"]
    grpo_keys += ["grpo/zero_adv_frac", "hedge/per_1k_words"]
    assert titles(plot.figure([grpo])) == [title[k] for k in grpo_keys]
    # SFT: its loss, gradient norm, learning rate, and the accuracy before and after from summary.json
    fig = plot.figure([sft])
    assert titles(fig) == [title[k] for k in ["eval", "loss", "grad_norm", "lr"]]
    (acc,) = fig.axes[0].get_lines()
    assert list(acc.get_xdata()) == [0, 12] and list(acc.get_ydata()) == [0.4, 0.55]
    # several trainers: the union, each panel once, in PANELS' order
    mixed = plot.figure([opd, grpo, sft])
    union = [p.key for p in plot.PANELS if p.key in set(opd_keys + grpo_keys + ["loss", "grad_norm", "lr"])]
    assert titles(mixed) == [title[k] for k in union]
    assert len(mixed.axes) == 14
    # and a table whose columns some run has, `-` where a run has none
    header, _, *rows = plot.table([opd, grpo, sft]).splitlines()
    assert "reward" in header and "SFT loss" in header and "KL" in header
    sft_row = [c.strip() for c in rows[2].split("|")[1:-1]]
    assert sft_row[:6] == ["sft", "12", "0.400", "0.550", "", "-"]
    assert "entropy" not in header


@pytest.mark.parametrize(
    "mass, truncated, collapsed",
    [(0.95, 0.0, False), (0.85, 0.0, True), (0.95, 0.2, True), (0.91, 0.09, False)],
)
def test_table_marks_the_collapse_signature(tmp_path, mass, truncated, collapsed):
    # the last 10 steps decide: earlier steps of the other kind do not
    run = tmp_path / "run"
    run.mkdir()
    early = {"topk/student_mass": 1.0 if collapsed else 0.1, "len/truncated_frac": 0.0}
    recs = [{"step": s, "loss": 0.1, **early} for s in range(1, 6)]
    recs += [
        {"step": s, "loss": 0.1, "topk/student_mass": mass, "len/truncated_frac": truncated}
        for s in range(6, 16)
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    cells = [c.strip() for c in plot.table([str(run)]).splitlines()[-1].split("|")[1:-1]]
    assert cells[4] == ("COLLAPSED" if collapsed else "")


def test_fractions_keep_zero_and_one_in_view(tmp_path):
    run = tmp_path / "healthy"
    run.mkdir()
    recs = [
        {"step": s, "loss": 0.1, "topk/student_mass": 0.999 + 0.001 * (s % 2), "kl/full": 0.3}
        for s in range(20)
    ]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    fig = plot.figure([str(run)])
    axes = {ax.get_title(): ax for ax in fig.axes}
    lo, hi = axes["student mass on its Top-K"].get_ylim()
    assert lo <= 0 and hi >= 1  # the 0.1 % wiggle is a flat line near the top, not a collapse
    assert axes["reverse KL on the batch"].get_ylim()[0] == 0


@pytest.mark.parametrize("where", ["summary", "metrics"])
def test_teacher_line_on_the_accuracy_panel(tmp_path, where):
    teacher = {"acc/pass@1": 0.875}
    in_metrics = teacher["acc/pass@1"] if where == "metrics" else None
    summary = {"teacher": teacher} if where == "summary" else None
    run = write_run(tmp_path, "opd", DISTILL, teacher=in_metrics, summary=summary)
    lines = {l.get_label(): l for l in plot.figure([run]).axes[0].get_lines()}
    assert list(lines["teacher"].get_ydata()) == [0.875, 0.875]
    lo, hi = plot.figure([run]).axes[0].get_ylim()
    assert lo <= 0 and hi >= 1
    # a run without a teacher (GRPO) gets none
    grpo = write_run(tmp_path, "grpo", GRPO)
    assert [l.get_label() for l in plot.figure([grpo]).axes[0].get_lines()] == ["grpo"]


def test_progress_prints_plain_lines_off_a_terminal(monkeypatch, capsys):
    bar = common.progress(total=3, desc="OPD")  # pytest's stderr is not a terminal
    bar.update()
    bar.close()
    assert capsys.readouterr().err == ""  # a run shorter than PROGRESS_LINE_S prints nothing
    monkeypatch.setattr(common, "PROGRESS_LINE_S", 0.0)
    bar = common.progress(total=3, desc="OPD")
    for step in range(3):
        bar.update()
        bar.set_postfix_str(f"loss {step}")
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[-1].startswith("OPD: 3/3 (100%) [") and lines[-1].endswith(", loss 2]")
    assert [l.split(" (")[0] for l in lines[-3:]] == ["OPD: 1/3", "OPD: 2/3", "OPD: 3/3"]  # one a line
    bar = common.progress(total=3, desc="OPD", disable=True)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""
