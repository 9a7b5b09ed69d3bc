"""experiments/collapse.py: the collapse protocol's readings (onset, its cumulative learning rate,
the signature) and part 1's choices (the budget, the alarm rule), on run folders written by hand.

    .venv/bin/python -m pytest -q tests/test_collapse.py
"""

import json
import math

import pytest

from experiments import collapse


def write_run(root, name, masses, loss="topk_plain", k=20, lr=3e-4, trunc=None):
    """A finished run folder: one training record per mass (constant `lr`), accuracy 0.5 -> 0.25."""
    run = root / name
    run.mkdir(parents=True)
    trunc = trunc or [0.0] * len(masses)
    lines = [{"step": 0, "eval": {"student": {"acc/pass@1": 0.5}}}]
    lines += [
        {"step": i + 1, "loss": 0.1, "lr": lr, "topk/student_mass": m, "len/truncated_frac": t}
        for i, (m, t) in enumerate(zip(masses, trunc))
    ]
    lines.append({"step": len(masses), "eval": {"student": {"acc/pass@1": 0.25}}})
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (run / "config.json").write_text(json.dumps({"loss": loss, "k": k, "lr": lr}))
    (run / "summary.json").write_text("{}")
    return str(run)


def test_reading_finds_the_onset_and_its_cumulative_lr(tmp_path):
    # mass 0.999 for 30 steps, then 0.5: the 5-step mean is (4 x 0.999 + 0.5) / 5 = 0.8992 at step 31
    r = collapse.reading(write_run(tmp_path, "plain", [0.999] * 30 + [0.5] * 20))
    assert r["onset"] == 31 and r["onset_lr"] == pytest.approx(31 * 3e-4)
    assert r["budget"] == pytest.approx(50 * 3e-4) and r["collapsed"] and r["ever"]
    assert (r["acc_start"], r["acc_end"]) == (0.5, 0.25)
    calm = collapse.reading(write_run(tmp_path, "sg", [0.999] * 50, loss="topk_sg"))
    assert calm["onset"] is None and not calm["collapsed"] and not calm["ever"]
    # truncation alone makes the signature, without an onset of the mass
    long = collapse.reading(write_run(tmp_path, "long", [0.999] * 50, trunc=[0.0] * 30 + [0.5] * 20))
    assert long["onset"] is None and long["collapsed"] and long["ever"]


def test_cumulative_lr_uses_the_rate_each_step_ran_at():
    steps = [{"lr": 2.0}, {"lr": 1.0}, {"lr": 0.5}]  # logged after each step: the next step's rate
    assert collapse.cumulative_lr(steps, 3.0) == [3.0, 5.0, 6.0]


def test_budget_is_twice_the_largest_plain_top20_onset_rounded_up(tmp_path):
    w1 = [collapse.reading(write_run(tmp_path / "a", "p20", [0.999] * 40 + [0.5] * 60))]  # onset 41
    w2 = [collapse.reading(write_run(tmp_path / "b", "p20", [0.999] * 90 + [0.5] * 30))]  # onset 91
    assert collapse.budget({"1": w1, "2": w2}) == pytest.approx(0.06)  # 2 x 0.0273 = 0.0546 -> 0.06
    never = [collapse.reading(write_run(tmp_path / "c", "p20", [0.999] * 100))]  # its whole 0.03
    assert collapse.budget({"1": w1, "3": never}) == pytest.approx(0.06)


def test_the_chosen_rule_has_no_false_alarm_and_the_largest_smallest_lead(tmp_path):
    # a slow leak: the deficit climbs 0.001 a step from step 21, the mass crosses 0.9 near step 120
    leak = [0.999] * 20 + [0.999 - 0.001 * i for i in range(1, 130)]
    # a healthy run whose deficit wobbles to 0.015 without ever collapsing: deficit 0.005 or 0.01 would ring
    wobble = [0.999] * 20 + [0.985, 0.99, 0.985, 0.99, 0.985] * 20
    runs = [
        collapse.reading(write_run(tmp_path, "leak", leak)),
        collapse.reading(write_run(tmp_path, "wobble", wobble, loss="topk_sg")),
    ]
    chosen = collapse.choose_rule(runs)
    assert not chosen["false"] and not chosen["misses"]
    # deficit 0.02 rings earliest among the rules silent on the wobble (0.005, 0.01 and relative 3, 10 ring)
    assert chosen["rule"] == {"deficit": 0.02}
    for s in (collapse.score(rule, runs) for rule in collapse.rules()):
        if not s["false"]:
            assert collapse.smallest_lead(s) <= collapse.smallest_lead(chosen)
    assert collapse.score({"deficit": 0.01}, runs)["false"] == ["wobble"]


def test_onsets_of_both_rates_and_their_plot(tmp_path):
    """The protocol's plain runs give their onsets (K, lr, Σ lr, step); at half the rate and twice
    the steps the fabricated onsets share their Σ lr, which the plot's left panel shows."""
    from test_report import fabricate_collapse

    from experiments import plan, settings

    scale = dict(settings.SCALES["quick"], seeds=(0,))
    for world in ("a", "b"):
        fabricate_collapse(str(tmp_path / world), scale, 0)
    got = collapse.onsets(str(tmp_path / "a" / "collapse"))
    # K = 1 at step 10, K = 20 at step 30 (test_report.fabricate_collapse); at lr2 twice the steps
    lr, lr2 = settings.COLLAPSE_LR, settings.COLLAPSE_LR2
    want = [(1, lr2, 20 * lr2, 20), (1, lr, 10 * lr, 10), (20, lr2, 60 * lr2, 60), (20, lr, 30 * lr, 30)]
    flat = lambda rows: [x for row in sorted(rows) for x in row]  # noqa: E731
    assert flat(got) == pytest.approx(flat(want))
    assert plan.collapse_steps(scale) == 80
    out = collapse.onset_plot(
        {"a": str(tmp_path / "a" / "collapse"), "b": str(tmp_path / "b" / "collapse")},
        str(tmp_path / "o.png"),
    )
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_tail_tokens_match_a_position_by_position_count(tmp_path):
    """experiments.collapse.tail_tokens against the same sums written out position by position on
    the models' own forward; a model against itself gains nothing."""
    import copy

    import torch

    import data
    import models
    import rollout

    tok = models.tiny_tokenizer()
    base = models.build_tiny(seed=1).eval()
    trained = copy.deepcopy(base)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(3)))
    prompts = [data.context_ids(tok, ex) for ex in data.load_examples("synthetic", n=3, split="eval")]
    k, T = 3, 8
    mine, theirs, spread, rows = collapse.tail_tokens(trained, base, tok, prompts, k, T, seed=5, top=4)
    # the same responses (same seed), then each position alone through the models' own forward
    ro = rollout.generate(
        trained,
        prompts,
        T,
        eos_token_ids=tok.eos_token_ids,
        pad_token_id=tok.pad_token_id,
        generator=torch.Generator().manual_seed(5),
    )
    sums, n = {"mine": torch.zeros(tok.vocab_size), "theirs": torch.zeros(tok.vocab_size)}, 0
    with torch.no_grad():
        for prompt, resp in zip(prompts, ro.responses()):
            ids = torch.tensor([prompt + resp])
            lp = trained(ids).logits[0, len(prompt) - 1 : len(prompt) + len(resp) - 1].float().softmax(-1)
            lq = base(ids).logits[0, len(prompt) - 1 : len(prompt) + len(resp) - 1].float().softmax(-1)
            for t in range(len(resp)):
                top = set(torch.argsort(lp[t], descending=True)[:k].tolist())
                for v in range(tok.vocab_size):
                    if v not in top:
                        sums["mine"][v] += lp[t, v]
                        sums["theirs"][v] += lq[t, v]
                n += 1
    assert mine == pytest.approx(float(sums["mine"].sum() / n), rel=1e-4)
    assert theirs == pytest.approx(float(sums["theirs"].sum() / n), rel=1e-4)
    gain = ((sums["mine"] - sums["theirs"]) / n).topk(4).indices.tolist()
    assert [r[:2] for r in rows] == [(v, tok.decode([v], skip_special=False)) for v in gain]
    w = [float(x) / float(sums["mine"].sum()) for x in sums["mine"] if x > 0]
    assert spread == pytest.approx(math.exp(-sum(x * math.log(x) for x in w)), rel=1e-4)
    same = collapse.tail_tokens(base, base, tok, prompts, k, T, seed=5, top=2)
    assert same[0] == pytest.approx(same[1]) and all(a == pytest.approx(b) for _, _, a, b in same[3])


# -----------------------------------------------------------------------------
# The fix-against-plain interval (experiments/mechanism2.paired_interval): a two-level bootstrap


def test_paired_interval_against_closed_forms():
    import math

    from experiments import mechanism2

    ids = [f"p{i}" for i in range(400)]
    # every problem differs by exactly 1 in every seed: no spread at either level
    same = [({i: 1 for i in ids}, {i: 0 for i in ids})] * 3
    assert mechanism2.paired_interval(same, draws=500) == (1.0, (1.0, 1.0))
    # one seed of 400 problems, a wins on 30 %: the interval is the normal one, mean ± 1.96 sd/√n
    a = {i: int(k < 120) for k, i in enumerate(ids)}
    mean, (lo, hi) = mechanism2.paired_interval([(a, {i: 0 for i in ids})], draws=4000)
    se = math.sqrt(0.3 * 0.7 / 400)
    assert mean == 0.3 and abs(lo - (0.3 - 1.96 * se)) < 0.01 and abs(hi - (0.3 + 1.96 * se)) < 0.01
    # two seeds with no spread inside, 0 and 0.2 apart: resampling seeds gives 0, 0.1 or 0.2
    zero, fifth = {i: 0 for i in ids}, {i: int(k < 80) for k, i in enumerate(ids)}
    spread = [(zero, zero), (fifth, zero)]
    mean, (lo, hi) = mechanism2.paired_interval(spread, draws=4000)
    assert abs(mean - 0.1) < 1e-12 and lo < 0.01 and hi > 0.19  # the seeds' spread is in the interval
