"""RESULTS.md's section on Mechanism 2 and Fix 1, read from the collapse protocol's runs
(docs/collapse.md, part 2; the runs are experiments/plan.py's collapse/*).

What this file is
    `mechanism2` writes the section into a claims.Report: the table at the budget (`budget_table`),
    part 2's verdicts (`plain_claims`: plain Top-K collapses, sooner for smaller K; `fix_claims`: each
    fix where plain collapses in every seed; `long_claim`: the stop-gradient loss past the budget),
    the onsets at two rates and the collapse alarm's scores (`alarm_section`). The paired interval of
    a fix against plain is a bootstrap over seeds and problems (`paired_interval`, on `correct_at`'s
    per-problem records). The readings of one run are experiments/collapse.py's.

Paper (docs/paper.md)
    §3.3–3.6, §3.9 the Top-K losses and Mechanism 2; §2.5 the collapse monitors.
"""

import json
import math
import os
import statistics

import numpy as np

import common
import diagnostics
from experiments import claims, settings
from experiments.collapse import DROP, onset_plot, reading, rule_text, score, tail_report

# the first words of the claims this section makes (results.write_section finds its rows so)
CLAIMS = ("Mechanism 2", "Fix 1", "Top-K with a tail bucket")


def correct_at(folder: str, step: int) -> dict:
    """{problem id: 1.0 or 0.0} of a run's held-out evaluation at `step` (eval/stepN.jsonl, sample 0)."""
    out = {}
    with open(os.path.join(folder, "eval", f"step{step}.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("sample", 0) == 0:
                out[rec["id"]] = float(rec["correct"])
    return out


def paired_interval(pairs: list, draws: int = 10_000, seed: int = 0) -> tuple:
    """The mean over seeds of (a − b) accuracy and its 95 % percentile bootstrap interval, resampling
    seeds and, within each seed, problems (the same problems for a and b: `pairs` holds one
    ({id: correct} of a, {id: correct} of b) per seed, on the seed's shared evaluation set)."""
    diffs = [np.array([a[i] - b[i] for i in sorted(a)]) for a, b in pairs]
    rng = np.random.default_rng(seed)
    stats = np.empty(draws)
    for d in range(draws):
        chosen = rng.integers(len(diffs), size=len(diffs))
        stats[d] = np.mean([diffs[c][rng.integers(len(diffs[c]), size=len(diffs[c]))].mean() for c in chosen])
    mean = float(np.mean([x.mean() for x in diffs]))
    return mean, (float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5)))


def mean_range(values: list, digits: int = 3) -> str:
    """mean [min, max] over seeds."""
    return f"{statistics.mean(values):.{digits}f} [{min(values):.{digits}f}, {max(values):.{digits}f}]"


# Student's t, 97.5 % quantile, by degrees of freedom (seeds − 1)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def seed_interval(values: list) -> tuple:
    """The mean over seeds and its 95 % Student's t interval, mean ± t · s / √n (the docs/collapse.md
    protocol reports accuracies so); one seed gives the value as both ends."""
    m = statistics.mean(values)
    if len(values) == 1:
        return m, (m, m)
    half = T_975[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    return m, (m - half, m + half)


def mean_ci(values: list, digits: int = 3) -> str:
    """mean [95 % interval] over seeds (seed_interval)."""
    m, (lo, hi) = seed_interval(values)
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def mechanism2(R) -> None:
    """Mechanism 2 and Fix 1 under docs/collapse.md's protocol (collapse/*): the table at the budget,
    the verdicts by part 2's rules, the onsets at two rates, the long horizon and the alarm."""
    sc, K = R.scale, max(R.scale["collapse_ks"])
    n = round(sc["collapse_budget"] / settings.COLLAPSE_LR)
    at_b = {
        (loss, k): [reading(os.path.join(R.root, x), n) for x in R.names(f"collapse/{loss}-k{k}-s{{s}}")]
        for loss in settings.COLLAPSE_LOSSES
        for k in sc["collapse_ks"]
    }
    half = {
        k: [reading(os.path.join(R.root, x)) for x in R.names(f"collapse/topk_plain-k{k}-lr2-s{{s}}")]
        for k in sc["collapse_ks"]
    }
    long = {
        loss: [reading(os.path.join(R.root, x)) for x in R.names(f"collapse/{loss}-k{K}-s{{s}}")]
        for loss in settings.LONG_LOSSES
    }
    R.body += [
        "## Mechanism 2 and Fix 1: biased and unbiased Top-K losses (docs/paper.md §3.3–3.6, §3.9)",
        "",
        f"The protocol of docs/collapse.md: `train_opd.py{R.preset_flag} --loss L --k K --lr 3e-4 "
        f"--min-lr 3e-4 --batch-size 32 --steps {n} --seed S`, a constant rate over the budget Σ lr = "
        f"{sc['collapse_budget']}; {R.student} ← {R.teacher}; accuracy on {sc['eval_n']} held-out "
        f"problems at T = 1; monitors averaged over the last 10 steps before step {n}; over {R.N} "
        "seed(s), accuracies as the mean [95 % t-interval], monitors and onsets as the mean [min, max]. "
        "A run has collapsed when those steps carry the signature of §2.5 (student Top-K mass below "
        "0.9, or over 10 % of responses truncated) and its accuracy has fallen 5 points or more below "
        "its start.",
        "",
        budget_table(at_b, R.N),
        "",
        R.figure(
            [os.path.relpath(at_b[loss, K][0]["folder"], R.root) for loss in settings.COLLAPSE_LOSSES],
            "report_collapse.png",
            f"{R.W['name']}: Top-{K} losses at a constant lr 3e-4, seed {R.seeds[0]}; "
            f"{', '.join(settings.LONG_LOSSES)} to {sc['collapse_long']}x the budget "
            f"(step {sc['collapse_long'] * n})",
        ),
        "",
    ]
    plain_claims(R, at_b, half, K)
    R.body += [onset_figure(R), ""]
    fix_claims(R, at_b, n, K)
    long_claim(R, long, n, K)
    R.body += ["", alarm_section(at_b, half, long)]


def budget_table(at_b: dict, N: int) -> str:
    rows = []
    for (loss, k), rs in at_b.items():
        sig = [r["signature"] for r in rs]
        onsets = [r["onset_lr"] for r in rs if r["onset_lr"] is not None]
        rows.append(
            [
                loss,
                k,
                mean_ci([r["acc_start"] for r in rs]),
                mean_ci([r["acc_end"] for r in rs]),
                mean_range([s["mass"] for s in sig]),
                mean_range([s["truncated"] for s in sig]),
                mean_range(onsets, 4) + f" ({len(onsets)}/{N})" if onsets else "never",
                f"{sum(s['collapsed'] for s in sig)}/{N}",
                f"{sum(r['collapsed'] for r in rs)}/{N}",
            ]
        )
    header = ["loss", "K", "acc start", "acc at B", "student Top-K mass", "truncated", "Σ lr at onset"]
    return common.md_table(header + ["signature", "collapsed"], rows)


def plain_claims(R, at_b: dict, half: dict, K: int) -> None:
    """Mechanism 2: plain Top-K collapses; the smaller K, the sooner (Σ lr at onset, in every seed)."""
    plain = at_b["topk_plain", K]
    c = sum(r["collapsed"] for r in plain)
    R.claim(
        f"Mechanism 2: plain Top-{K} reverse KL collapses",
        "plain Top-20 degrades from about step 700 of 1000: longer rollouts, filler tokens, falling overlap",
        f"collapsed in {c}/{R.N} seeds at the budget; accuracy {mean_ci([r['acc_start'] for r in plain])} → "
        f"{mean_ci([r['acc_end'] for r in plain])}; student Top-K mass "
        f"{mean_range([r['signature']['mass'] for r in plain])}",
        "reproduced if every seed collapses (the signature and 5 points of accuracy lost), partly if some",
        claims.verdict(c == R.N, c > 0),
    )
    ks = sorted(R.scale["collapse_ks"])
    order = []
    for i in range(R.N):
        t = [at_b["topk_plain", k][i]["onset_lr"] for k in ks]
        t = [math.inf if x is None else x for x in t]
        order.append(all(a < b for a, b in zip(t, t[1:])))
    shown = "; ".join(
        f"K = {k}: "
        + ", ".join(
            "never" if r["onset_lr"] is None else f"{r['onset_lr']:.4f}" for r in at_b["topk_plain", k]
        )
        for k in ks
    )
    R.claim(
        "Mechanism 2: the smaller K, the sooner plain Top-K collapses",
        "the bias ∇M_K grows as the Top-K mass M_K shrinks (§3.9); the paper's code runs K = 1, 5, 20",
        f"Σ lr at the onset (mass below 0.9), seed by seed: {shown}",
        "reproduced if, in every seed, the onset comes strictly sooner for each smaller K (no onset "
        "counts as later than any), partly if in some",
        claims.verdict(all(order), any(order)),
    )
    per_k = []
    for k in ks:
        ratios = [
            slow["onset_lr"] / full["onset_lr"]
            for full, slow in zip(at_b["topk_plain", k], half[k])
            if full["onset_lr"] is not None and slow["onset_lr"] is not None
        ]
        per_k.append(
            f"K = {k}: "
            + (
                mean_range(ratios, 2) + f" ({len(ratios)}/{R.N} seeds)"
                if ratios
                else "no seed has two onsets"
            )
        )
    R.body += [
        "Reading (not a claim): plain Top-K's Σ lr at the onset at half the rate (1.5e-4, the same "
        "budget) over its Σ lr at 3e-4, seed by seed where both runs have an onset, mean [min, max]: "
        + "; ".join(per_k)
        + ". A ratio near 1 says the cumulative learning rate sets the onset; near 2, the number of steps.",
        "",
    ]


def onset_figure(R) -> str:
    """collapse.onset_plot of this world's runs and, when its report folder sits beside this one
    (runs/report and runs/report2), the other world's."""
    worlds = {}
    for w, W in settings.WORLDS.items():
        root = R.root if w == R.world else os.path.join(os.path.dirname(R.root), os.path.basename(W["root"]))
        if os.path.isdir(os.path.join(root, "collapse")):
            worlds[W["name"]] = os.path.join(root, "collapse")
    title = "Plain Top-K: Σ lr and step at the onset, " + " and ".join(worlds) + ", lr 3e-4 and 1.5e-4"
    onset_plot(worlds, os.path.join(R.figs, "collapse_onsets.png"))
    return f"![{title}]({R.figs_rel}/collapse_onsets.png)"


def fix_claims(R, at_b: dict, n: int, K: int) -> None:
    """Each fix, judged only at a K where plain collapses in every seed: it does not collapse and ends
    above plain, in every seed, with the paired interval of the difference above 0."""
    labels = {
        "topk_sg": ("Fix 1: stop-gradient", "the biased +1 term disappears and training stays stable"),
        "topk_renorm_intersect_sg": (
            "Fix 1 (alternative): renormalised intersection",
            "renormalizing within the Top-K set is a comparable alternative",
        ),
        "topk_tail": (
            "Top-K with a tail bucket (§3.6)",
            "the tail bucket keeps the mass outside K in the loss",
        ),
    }
    lines = []
    for loss, (label, quote) in labels.items():
        for k in R.scale["collapse_ks"]:
            plain, fix = at_b["topk_plain", k], at_b[loss, k]
            tested = all(r["collapsed"] for r in plain)
            if not tested:
                shows, v = (
                    f"plain Top-{k} collapses in {sum(r['collapsed'] for r in plain)}/{R.N} seeds",
                    "not tested",
                )
            else:
                pairs = [(correct_at(f["folder"], n), correct_at(p["folder"], n)) for f, p in zip(fix, plain)]
                mean, (lo, hi) = paired_interval(pairs)
                held = [not f["collapsed"] for f in fix]
                above = [f["acc_end"] > p["acc_end"] for f, p in zip(fix, plain)]
                both = all(held) and all(above) and lo > 0
                v = claims.verdict(both, all(held) or (all(above) and lo > 0))
                accs = mean_ci([f["acc_end"] for f in fix])
                shows = (
                    f"collapsed in {R.N - sum(held)}/{R.N} seeds; accuracy at B {accs} "
                    f"against plain's {mean_ci([p['acc_end'] for p in plain])}; difference {mean:+.3f} "
                    f"[{lo:+.3f}, {hi:+.3f}]"
                )
            lines.append([label, k, shows, v])
            if k == K:
                R.claim(
                    f"{label} Top-{K} prevents the collapse",
                    f'"{quote}"',
                    shows,
                    f"judged only where plain Top-{K} collapses in every seed: reproduced if the fix "
                    "collapses in no seed and ends above plain in every seed, with the paired 95 % interval "
                    "of the difference above 0; partly if one of the two",
                    v,
                )
    R.body += [common.md_table(["fix", "K", "at the budget", "verdict"], lines), ""]


def long_claim(R, long: dict, n: int, K: int) -> None:
    """The stop-gradient and tail-bucket losses past the budget: their state at B and at the end."""
    rows = []
    for loss, rs in long.items():
        for r in rs:
            at_b = reading(r["folder"], n)
            rows.append(
                [
                    loss,
                    r["name"],
                    f"{r['acc_start']:.3f}",
                    f"{at_b['acc_end']:.3f}",
                    f"{r['acc_end']:.3f}",
                    f"{r['signature']['mass']:.3f}",
                    f"{r['signature']['truncated']:.3f}",
                    f"{statistics.mean(x['len/mean'] for x in r['steps'][-10:]):.1f}",
                    f"{statistics.mean(x['topk/teacher_rank'] for x in r['steps'][-10:]):.2f}",
                    "yes" if r["collapsed"] else "no",
                ]
            )
    end = R.scale["collapse_long"] * n
    header = ["loss", "run", "acc start", f"acc at B (step {n})", f"acc at step {end}", "mass at the end"]
    R.body += [
        f"### Past the budget: K = {K} to {R.scale['collapse_long']}B (step {end})",
        "",
        common.md_table(header + ["truncated", "len", "teacher rank", "collapsed"], rows),
        "",
    ]
    first = [rs[0] for rs in long.values()]
    if all(os.path.isdir(os.path.join(r["folder"], "ckpt")) for r in first):
        R.body += [
            f"Where the mass off the Top-K goes at step {end} (seed {R.seeds[0]}; `python -m "
            "experiments.collapse --tail RUN`, 64 held-out prompts, one response each): the mass outside "
            "the trained student's Top-K per position, how evenly it is spread, and the tokens that "
            "gained the most of it against the initial student's mass on them at the same positions.",
            "",
        ]
        R.body += [tail_report(r["folder"]) + "\n" for r in first]
    else:
        R.body += ["(No tail reading: a seed-0 run's ckpt/ is gone.)", ""]
    marked = [r for r in long["topk_sg"] if r["signature"]["collapsed"]]
    R.body += [
        f"Reading (not a claim): at step {end}, {len(marked)}/{R.N} stop-gradient runs still carry the "
        "signature (the table's mass and truncated columns); a collapse also needs accuracy 5 points "
        "below the start (docs/collapse.md), which the verdict below reads.",
        "",
    ]
    c = sum(r["collapsed"] for r in long["topk_sg"])
    R.claim(
        f"Fix 1: stop-gradient Top-{K} stays stable over {R.scale['collapse_long']}x the budget",
        '"training stays stable"',
        f"collapsed in {c}/{R.N} seeds by step {end}; accuracy "
        f"{mean_ci([r['acc_end'] for r in long['topk_sg']])}, tail bucket "
        f"{mean_ci([r['acc_end'] for r in long['topk_tail']])}",
        "reproduced if no seed collapses by the end, partly if some",
        claims.verdict(c == 0, c < R.N),
    )


def alarm_section(at_b: dict, half: dict, long: dict) -> str:
    """The alarm (diagnostics.ALARM_RULE) on every protocol run: leads, misses, false alarms."""
    runs = [r for rs in at_b.values() for r in rs] + [r for rs in half.values() for r in rs]
    runs += [r for rs in long.values() for r in rs]
    s = score(diagnostics.ALARM_RULE, runs)
    drops = []
    for r in runs:
        alarm = diagnostics.first_alarm(r["steps"], diagnostics.ALARM_RULE)
        drop = next((st for st, a in r["evals"] if a <= r["acc_start"] - DROP), None)
        if alarm is not None and drop is not None:
            drops.append(drop - alarm)
    collapsing = [r for r in runs if r["onset"] is not None]
    leads = [lead for lead, _ in s["leads"]]
    return "\n".join(
        [
            f"### The collapse alarm ({rule_text(diagnostics.ALARM_RULE)}; chosen on the pilot, docs/collapse.md)",
            "",
            common.md_table(
                [
                    "runs with an onset",
                    "alarm before the onset",
                    "lead (steps)",
                    "lead (Σ lr)",
                    "misses",
                    "runs never showing the signature",
                    "false alarms",
                    "alarm before a 5-point drop (steps)",
                ],
                [
                    [
                        len(collapsing),
                        len(s["leads"]),
                        mean_range(leads, 0) if leads else "-",
                        mean_range([x for _, x in s["leads"]], 4) if leads else "-",
                        len(s["misses"]),
                        sum(not r["ever"] for r in runs),
                        len(s["false"]),
                        mean_range(drops, 0) if drops else "-",
                    ]
                ],
            ),
            "",
            f"False alarms on: {', '.join(s['false']) or 'none'}. Misses: {', '.join(s['misses']) or 'none'}.",
            "",
        ]
    )
