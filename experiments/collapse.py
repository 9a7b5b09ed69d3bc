"""Readings of the collapse protocol (docs/collapse.md): onsets against the cumulative learning
rate, and the collapse alarm's candidates, lead times, misses and false alarms.

    make collapse-pilot && make collapse-pilot WORLD=2
    python -m experiments.collapse runs/collapse-pilot runs/collapse-pilot2    # the pilot's choices
    python -m experiments.collapse runs/report/collapse runs/report2/collapse --onset-plot onsets.png

What this file is
    `reading` reads one finished OPD run, up to a given step: its collapse onset (the first step
    whose 5-step mean student Top-K mass is below 0.9), the cumulative learning rate Σ lr up to it,
    whether its last steps carry the collapse signature, whether any 10-step window ever did, its
    held-out accuracy at the start and the end, and whether it collapsed by part 2's definition
    (the signature and an accuracy 5 points below the start). `score` scores an alarm rule
    (diagnostics.alarm_rings) on a set of runs: on the runs that collapse, the lead of the alarm
    over the onset (steps and Σ lr), and the runs it misses; on the runs that never show the
    signature, its false alarms. `choose_rule` applies part 1's choice (no false alarm, then the
    largest smallest lead, a miss counting as −∞, then the fewest conditions), and `budget` part
    1's rule for the protocol's budget. `onset_plot` draws the onsets of both worlds at both rates;
    `tail_tokens` shows where a run's mass off its Top-K goes. RESULTS.md's section from these
    readings is experiments/mechanism2.py.

What it simplifies
    * Σ lr sums the learning rate each optimizer step used: the run's --lr for the first step, then
      the rate logged after each step (the scheduler has already moved to the next one).
"""

import argparse
import itertools
import math
import os
import statistics
import sys

import torch

import common
import diagnostics
import errors
import run_folder
from experiments import settings

# part 1's candidates (docs/collapse.md): each alone, and each pair of kinds as "either"
DEFICITS = (0.005, 0.01, 0.02, 0.05)
RELATIVES = (3, 10, 30)
TRUNCATED = (0.05,)
STEP_BUDGET = 0.012  # the budget's rounding: 40 steps at the pilot's lr 3e-4


def cumulative_lr(steps: list, lr0: float) -> list:
    """Σ lr after each of `steps` (training records in order), the first step at `lr0`."""
    used = [lr0] + [r["lr"] for r in steps[:-1]]
    return list(itertools.accumulate(used))


DROP = 0.05  # the accuracy drop that, with the signature, makes a collapse (docs/collapse.md, part 2)


def reading(folder: str, upto: int = None) -> dict:
    """What the protocol reads from one finished run folder (see the module's docstring), over its
    steps up to `upto` (default: all) and its evaluation at that step."""
    steps, evals = run_folder.read_log(folder)
    if upto is not None:
        steps, evals = [r for r in steps if r["step"] <= upto], [e for e in evals if e[0] <= upto]
        if not steps or steps[-1]["step"] != upto or evals[-1][0] != upto:
            raise errors.UserError(f"{folder}: no training record and evaluation at step {upto}")
    cfg = run_folder.read_json(folder, "config.json")
    onset = next((r["step"] for i, r in enumerate(steps) if below(steps, i)), None)
    sums = cumulative_lr(steps, cfg["lr"])
    at = {r["step"]: s for r, s in zip(steps, sums)}
    ever = any(diagnostics.collapse_signature(steps[: i + 1])["collapsed"] for i in range(9, len(steps)))
    name = os.path.basename(os.path.normpath(folder))
    acc_start, acc_end = (evals[0][1], evals[-1][1]) if evals else (math.nan, math.nan)
    signature = diagnostics.collapse_signature(steps)
    return {
        "name": name,
        "folder": folder,
        "loss": cfg["loss"],
        "k": cfg["k"],
        "lr": cfg["lr"],
        "steps": steps,
        "onset": onset,
        "onset_lr": at[onset] if onset is not None else None,
        "budget": sums[-1] if sums else 0.0,
        "signature": signature,
        "collapsed": signature["collapsed"] and acc_end <= acc_start - DROP,
        "ever": ever,
        "acc_start": acc_start,
        "acc_end": acc_end,
        "evals": evals,
        "end": steps[-1]["step"] if steps else 0,
        "sum_lr": at,
    }


def below(steps: list, i: int, key: str = "topk/student_mass", under: float = 0.9, w: int = 5) -> bool:
    """Whether the mean of `key` over the w steps up to steps[i] (fewer at the start) is below
    `under`: the onset's test, whose first step is the onset."""
    window = steps[max(0, i - w + 1) : i + 1]
    return sum(r[key] for r in window) / len(window) < under


def rules() -> list:
    """Part 1's candidate rules: every single condition, then every pair of different kinds."""
    single = [{"deficit": t} for t in DEFICITS] + [{"relative": r} for r in RELATIVES]
    single += [{"truncated": s} for s in TRUNCATED]
    pairs = [{**a, **b} for a, b in itertools.combinations(single, 2) if set(a) != set(b)]
    return single + pairs


def score(rule: dict, runs: list) -> dict:
    """A rule on `runs` (readings): leads (onset − alarm, steps) on the runs with an onset, misses
    (no alarm before the onset), false alarms (an alarm on a run that never shows the signature)."""
    leads, misses, false = [], [], []
    for r in runs:
        alarm = diagnostics.first_alarm(r["steps"], rule)
        if r["onset"] is not None:
            if alarm is None or alarm > r["onset"]:
                misses.append(r["name"])
            else:
                leads.append((r["onset"] - alarm, r["onset_lr"] - r["sum_lr"][alarm]))
        elif not r["ever"] and alarm is not None:
            false.append(r["name"])
    return {"rule": rule, "leads": leads, "misses": misses, "false": false}


def smallest_lead(s: dict) -> float:
    """A scored rule's smallest lead in steps over the runs that collapse; a miss counts as −∞."""
    return -math.inf if s["misses"] else min((lead for lead, _ in s["leads"]), default=-math.inf)


def choose_rule(runs: list) -> dict:
    """Part 1's choice on the pilot: among the rules with no false alarm, the largest smallest lead
    before the onset (a miss counts as −∞); ties to the fewest conditions, then the first in
    rules()'s order. None when every rule raises a false alarm."""
    ok = [s for s in (score(rule, runs) for rule in rules()) if not s["false"]]
    return max(ok, key=lambda s: (smallest_lead(s), -len(s["rule"])), default=None)


def budget(runs_by_world: dict) -> float:
    """Part 1's budget: twice the largest plain Top-20 onset budget over the worlds, rounded up to a
    multiple of STEP_BUDGET; a world whose plain Top-20 never collapses counts its whole budget."""
    onsets = []
    for runs in runs_by_world.values():
        (plain,) = [r for r in runs if r["loss"] == "topk_plain" and r["k"] == 20]
        onsets.append(plain["onset_lr"] if plain["onset_lr"] is not None else plain["budget"])
    return math.ceil(2 * max(onsets) / STEP_BUDGET - 1e-9) * STEP_BUDGET


def rule_text(rule: dict) -> str:
    names = {
        "deficit": "5-step deficit >",
        "relative": "deficit > x start median",
        "truncated": "truncated >",
    }
    return " or ".join(f"{names[k]} {v}" for k, v in rule.items())


def runs_table(runs: list) -> str:
    rows = [
        [
            r["name"],
            r["onset"] if r["onset"] is not None else "never",
            f"{r['onset_lr']:.4f}" if r["onset_lr"] is not None else "-",
            f"{r['budget']:.3f}",
            "yes" if r["collapsed"] else "no",
            "yes" if r["ever"] else "no",
            f"{r['acc_start']:.3f} → {r['acc_end']:.3f}",
        ]
        for r in runs
    ]
    header = ["run", "onset step", "Σ lr at onset", "Σ lr of the run", "signature at the end"]
    return common.md_table(header + ["signature ever", "accuracy start → end"], rows)


def alarm_rows(scored: list) -> str:
    rows = []
    for s in scored:
        leads = [lead for lead, _ in s["leads"]]
        rows.append(
            [
                rule_text(s["rule"]),
                min(leads) if leads else "-",
                f"{statistics.median(leads):.0f}" if leads else "-",
                len(s["misses"]),
                len(s["false"]),
            ]
        )
    return common.md_table(["rule", "smallest lead (steps)", "median lead", "misses", "false alarms"], rows)


def tail_tokens(trained, base, tok, prompts: list, k: int, max_new_tokens: int, seed: int = 0, top: int = 10):
    """Where a trained student's mass outside its own Top-K goes: it writes one response per prompt
    (T = 1), and at every position of them the mass off its Top-K is summed per token, beside the
    base model's mass on the same tokens at the same positions. Returns (the mean tail mass of the
    trained model and of the base on those tails; the spread of the trained model's tail, as the
    number of equally weighted tokens with its entropy, exp(−Σ w log w) with w the tail normalised
    to 1; and the `top` tokens that gain the most: (id, text, trained mass, base mass), means per
    position)."""
    import rollout

    with torch.no_grad():
        ro = rollout.generate(
            trained,
            prompts,
            max_new_tokens,
            eos_token_ids=tok.eos_token_ids,
            pad_token_id=tok.pad_token_id,
            generator=torch.Generator().manual_seed(seed),
        )
        responses = ro.responses()
        p = torch.softmax(rollout.score(trained, prompts, responses)[0].float(), -1)  # (B, T, V)
        logits_b, mask = rollout.score(base, prompts, responses)
        q = torch.softmax(logits_b.float(), -1)
    off = torch.ones_like(p, dtype=torch.bool).scatter(-1, p.topk(k, -1).indices, False)  # outside Top-K
    n = mask.sum()
    mine = (p * off)[mask].sum(0) / n  # (V,) mean tail mass per token
    theirs = (q * off)[mask].sum(0) / n
    w = mine / mine.sum()
    spread = float(torch.exp(-(w * torch.log(w.clamp_min(1e-30))).sum()))
    gain = (mine - theirs).topk(top).indices.tolist()
    rows = [(v, tok.decode([v], skip_special=False), float(mine[v]), float(theirs[v])) for v in gain]
    return float(mine.sum()), float(theirs.sum()), spread, rows


def tail_report(run: str, n: int = 64) -> str:
    """tail_tokens of a finished OPD run (its ckpt/ against its --student) on n held-out prompts, as a
    table."""
    import data
    import models

    cfg = run_folder.read_json(run, "config.json")
    trained, tok = models.load(os.path.join(run, "ckpt"), dtype=torch.float32)
    base, _ = models.load(cfg["student"], dtype=torch.float32)
    examples = data.load_examples(cfg["eval_data"], n=n, split="eval", seed=cfg["seed"])
    prompts = [data.context_ids(tok, ex) for ex in examples]
    mine, theirs, spread, rows = tail_tokens(
        trained, base, tok, prompts, cfg["k"], cfg["max_new_tokens"], cfg["seed"]
    )
    table = common.md_table(
        ["token id", "text", "trained: mass off its Top-K", "initial: mass there"],
        [[v, repr(t), f"{a:.4f}", f"{b:.4f}"] for v, t, a, b in rows],
    )
    return (
        f"{os.path.basename(os.path.normpath(run))} ({cfg['loss']}, K = {cfg['k']}): mass off the trained "
        f"student's Top-{cfg['k']} per position {mine:.4f} (the initial student's on the same tokens "
        f"{theirs:.4f}), spread like {spread:.0f} equally weighted tokens of {trained.config.vocab_size}; "
        f"the tokens that gained most:\n\n{table}"
    )


def onsets(collapse_dir: str) -> list:
    """(K, lr, Σ lr at the onset, steps at the onset) of every finished plain Top-K run of the
    protocol in `collapse_dir` (a report's collapse/ folder) that has an onset."""
    out = []
    for name in sorted(os.listdir(collapse_dir)):
        folder = os.path.join(collapse_dir, name)
        if name.startswith("topk_plain-") and os.path.exists(os.path.join(folder, "summary.json")):
            r = reading(folder)
            if r["onset"] is not None:
                out.append((r["k"], r["lr"], r["onset_lr"], r["onset"]))
    return out


def onset_plot(worlds: dict, out: str) -> str:
    """Plain Top-K's onsets, both worlds and both rates: Σ lr at the onset (left) and the step of the
    onset (right) against K. `worlds` maps a label to a report's collapse/ folder. If the cumulative
    learning rate sets the onset, the two rates' points coincide on the left and differ by 2x on
    the right. Returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    markers, colors = {settings.COLLAPSE_LR: "o", settings.COLLAPSE_LR2: "^"}, ["C0", "C3", "C2"]
    for i, (label, folder) in enumerate(worlds.items()):
        points = onsets(folder)
        for lr, marker in markers.items():
            mine = [p for p in points if p[1] == lr]
            if not mine:
                continue
            jitter = [p[0] * (1 + 0.06 * (i - 0.5)) for p in mine]  # the worlds side by side on the K axis
            for ax, j in ((axes[0], 2), (axes[1], 3)):
                ax.scatter(
                    jitter,
                    [p[j] for p in mine],
                    marker=marker,
                    color=colors[i % 3],
                    label=f"{label}, lr {lr:g}",
                )
    for ax, what in ((axes[0], "Σ lr at the onset"), (axes[1], "step of the onset")):
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel(what)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Plain Top-K: when the student's Top-K mass falls below 0.9 (docs/collapse.md)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="The collapse pilot's readings and choices (docs/collapse.md).")
    ap.add_argument("roots", nargs="+", help="pilot folders, one per world (make collapse-pilot [WORLD=2])")
    ap.add_argument(
        "--onset-plot",
        metavar="PNG",
        help="instead: plot plain Top-K's onsets of the protocol's runs (the roots: each world's "
        "collapse/ folder, e.g. runs/report/collapse runs/report2/collapse) into PNG",
    )
    ap.add_argument(
        "--tail",
        action="store_true",
        help="instead: for each run folder given, where the mass off the student's Top-K goes (tail_tokens: "
        "its checkpoint against the run's initial student, 64 held-out prompts)",
    )
    args = ap.parse_args(argv)
    if args.tail:
        for run in args.roots:
            print(tail_report(run))
        return
    if args.onset_plot:
        print(onset_plot({os.path.dirname(os.path.normpath(r)): r for r in args.roots}, args.onset_plot))
        return
    by_world = {}
    for root in args.roots:
        if not os.path.isdir(root):
            raise errors.UserError(f"{root}: no such folder; run make collapse-pilot first")
        names = sorted(d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "summary.json")))
        by_world[root] = [reading(os.path.join(root, d)) for d in names]
        print(f"\n{root}\n\n{runs_table(by_world[root])}")
    everything = [r for runs in by_world.values() for r in runs]
    print(f"\nbudget (twice the largest plain Top-20 onset, rounded up): Σ lr = {budget(by_world):.3f}")
    print("\n" + alarm_rows([score(rule, everything) for rule in rules()]))
    chosen = choose_rule(everything)
    print("\nchosen alarm rule: " + (rule_text(chosen["rule"]) if chosen else "none qualifies"))


if __name__ == "__main__":
    sys.argv[0] = "python -m experiments.collapse"  # what errors.run prints before `error:`
    errors.run(main)
