"""Tests of probes.py on tiny random models through the real rollout.generate (CPU, seconds): the
prefix probe, whose f = 0 rows must be eval_math.evaluate's teacher alone and whose prefixes are
the student's own responses cut at floor(f * L); the teacher's fit (reverse KL, Top-k overlap)
against each (prompt + response) recomputed alone through the models' own transformers forward
with plain float64 formulas; and the command line writing probe_summary.json.

    .venv/bin/python -m pytest -q tests/test_probes.py
"""

import json
import math

import pytest
import torch

import data
import eval_math as E
import models
import probes
import rollout

# -----------------------------------------------------------------------------
# The prefix probe and the teacher's fit


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return models.build_tiny(seed=0), models.build_tiny(seed=1), models.tiny_tokenizer()


def test_prefix_probe_f0_is_the_teacher_alone(tiny):
    student, teacher, tok = tiny
    ex = data.load_examples("synthetic", n=5, split="eval", seed=1)
    kw = dict(temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=10, batch_size=5, seed=2)
    rows, recs = probes.prefix_probe(student, teacher, tok, ex, (0.0, 0.5, 1.0), progress=False, **kw)
    _, alone = E.evaluate(teacher, tok, ex, k=1, progress=False, **kw)
    f0 = [r for r in recs if r["f"] == 0.0]
    assert [r["response"] for r in f0] == [r["response"] for r in alone]
    assert rows[1]["who"] == "teacher alone" and rows[1]["acc"] == sum(r["correct"] for r in alone) / 5
    # the prefix is the student's response cut at floor(f * L), and the text starts with it
    student_out = E.sample_responses(student, tok, [data.context_ids(tok, e) for e in ex], k=1, **kw)[0]
    for f in (0.5, 1.0):
        for r, s in zip([r for r in recs if r["f"] == f], student_out):
            cut = int(math.floor(f * len(s["ids"])))
            assert r["prefix_tokens"] == cut
            assert r["response"].startswith(tok.decode(s["ids"][:cut]))
    assert len(rows) == 1 + 3 and rows[0]["who"] == "student alone"
    assert "teacher alone" in probes.format_probe_table(rows)


def test_teacher_fit_against_transformers_forward_one_row_at_a_time(tiny):
    """teacher_fit's KL and overlap, recomputed from each (prompt + response) alone through the
    models' own transformers forward and plain float64 formulas; zero distance to itself."""
    student, teacher, tok = tiny
    ex = data.load_examples("synthetic", n=5, split="eval", seed=3)
    fit, records = probes.teacher_fit(student, teacher, tok, ex, k=5, max_new_tokens=9, batch_size=3, seed=4)
    prompts = [data.context_ids(tok, e) for e in ex]
    kl, overlap, n, per_problem = 0.0, 0.0, 0, []
    for b, start in enumerate(range(0, 5, 3)):  # the same draws: teacher_fit's generator per batch
        gen = torch.Generator().manual_seed(4 * 1_000_003 + b)
        ro = rollout.generate(
            student,
            prompts[start : start + 3],
            9,
            eos_token_ids=tok.eos_token_ids,
            pad_token_id=tok.pad_token_id,
            generator=gen,
        )
        for p, r in zip(prompts[start : start + 3], ro.responses()):
            ids = torch.tensor([p + r])
            with torch.no_grad():
                zs = student(ids).logits[0, len(p) - 1 : -1].double()  # (T, V): the positions predicting r
                zt = teacher(ids).logits[0, len(p) - 1 : -1].double()
            lp, lq = zs.log_softmax(-1), zt.log_softmax(-1)
            kl += float((lp.exp() * (lp - lq)).sum())
            per_problem.append((float((lp.exp() * (lp - lq)).sum()) / len(r), len(r)))
            for a, t in zip(zs.topk(5).indices, zt.topk(5).indices):
                overlap += len(set(a.tolist()) & set(t.tolist())) / 5
            n += len(r)
    assert fit["tokens"] == n and fit["kl/full"] == pytest.approx(kl / n, rel=1e-4)
    assert fit["topk/overlap"] == pytest.approx(overlap / n, abs=1e-6)
    # one record per problem, in order: its own tokens' mean
    assert [r["id"] for r in records] == [e.id for e in ex]
    assert [r["tokens"] for r in records] == [t for _, t in per_problem]
    assert [r["kl/full"] for r in records] == pytest.approx([x for x, _ in per_problem], rel=1e-4)
    itself, _ = probes.teacher_fit(student, student, tok, ex, k=5, max_new_tokens=9, batch_size=3, seed=4)
    assert abs(itself["kl/full"]) < 1e-6 and itself["topk/overlap"] == 1.0 and itself["kl/reverse_est"] == 0.0


def test_prefix_probe_rejects_fractions_outside_unit_interval(tiny):
    student, teacher, tok = tiny
    ex = data.load_examples("synthetic", n=2, split="train")
    with pytest.raises(ValueError, match="fractions"):
        probes.prefix_probe(student, teacher, tok, ex, (1.5,), progress=False)


# -----------------------------------------------------------------------------
# The command line


def test_cli_probe_writes_the_probe_and_the_teacher_fit(tiny, tmp_path, capsys):
    student, teacher, tok = tiny
    models.save(student, tok, str(tmp_path / "s"))
    models.save(teacher, tok, str(tmp_path / "t"))
    probes.main(
        [
            "--model",
            str(tmp_path / "s"),
            "--probe-teacher",
            str(tmp_path / "t"),
            "--synthetic-n",
            "4",
            "--max-new-tokens",
            "6",
            "--probe-fractions",
            "0,0.5",
            "--probe-cut",
            "lines",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "o" / "probe_summary.json").read_text())
    assert [r["f"] for r in saved["probe"]] == [None, 0.0, 0.5] and saved["fit"]["problems"] == 4
    assert [r.get("cut") for r in saved["probe"]] == [None, "lines", "lines"]
    fit = [json.loads(l) for l in (tmp_path / "o" / "fit.jsonl").read_text().splitlines()]
    assert len(fit) == 4 and sum(r["tokens"] for r in fit) == saved["fit"]["tokens"]
    mean = sum(r["kl/full"] * r["tokens"] for r in fit) / saved["fit"]["tokens"]
    assert mean == pytest.approx(saved["fit"]["kl/full"], rel=1e-5)
    assert f"{saved['fit']['kl/full']:.4f}" in printed and "teacher fit" in printed


def test_a_cut_at_lines_ends_where_the_line_of_the_token_cut_ends():
    """cut_at against the same cut found in the text: with byte tokens, character i is token i."""
    tok = models.tiny_tokenizer()
    text = "=3+8-5\n=11-5\n=6\n\\boxed{6}"
    ids = tok.encode(text)
    assert tok.decode(ids) == text and len(ids) == len(text)
    for f in (0.0, 0.1, 0.3, 0.5, 0.62, 0.7, 0.9, 1.0):
        c = int(math.floor(f * len(text)))
        assert probes.cut_at(ids, f, "tokens", tok) == c
        want = 0 if c == 0 else (text.index("\n", c - 1) + 1 if "\n" in text[c - 1 :] else len(text))
        got = probes.cut_at(ids, f, "lines", tok)
        assert got == want, (f, got, want)
        assert got == 0 or text[:got].endswith("\n") or got == len(text)
    with pytest.raises(ValueError, match="cut must be one of"):
        probes.prefix_probe(None, None, tok, [], (0.5,), cut="words", progress=False)
