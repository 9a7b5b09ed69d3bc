"""Tests of eval_math.py, grader.py and probes.py: the grader against a hand-written table,
`extract_boxed` edge cases, the sympy time limit, the collapse diagnostics, and the evaluation loop,
the prefix probe and the teacher's fit on tiny models (CPU, seconds).

    .venv/bin/python -m pytest -q tests/test_eval_math.py
"""

import json
import math
import threading
from types import SimpleNamespace

import pytest
import torch

import data
import eval_math as E
import grader
import latex_sympy
import models
import probes
import rollout
from tiny_world import task

# -----------------------------------------------------------------------------
# The grader table: (prediction, gold, verdict), every normalisation rule in both directions.

T, F = True, False
GRADER_CASES = [
    # plain numbers
    ("5", "5", T),
    ("5", "6", F),
    ("-3", "-3", T),
    ("-3", "3", F),
    ("0", "-0", T),
    ("1000000", "1000000", T),
    ("+5", "5", T),
    ("-5", "- 5", T),
    ("-(-5)", "5", T),
    ("5", "-5", F),
    # trailing zeros, leading zeros, exact decimals
    ("5.0", "5", T),
    ("5.00", "5", T),
    ("2.50", "2.5", T),
    ("2.5", "2.05", F),
    ("0.5", ".5", T),
    ("5.01", "5.1", F),
    ("10", "1.0", F),
    ("100", "1", F),
    ("3.140", "3.14", T),
    ("0.10", "0.01", F),
    # thousands separators
    ("1,000", "1000", T),
    ("1{,}000", "1000", T),
    ("1\\,000", "1000", T),
    ("12,345,678", "12345678", T),
    ("1,000", "100", F),
    ("1,000.5", "1000.5", T),
    ("1,00", "100", F),
    # fractions: \frac, \dfrac, \tfrac, brace-less, a/b, decimals
    ("\\frac{1}{2}", "0.5", T),
    ("\\dfrac{1}{2}", "\\frac{1}{2}", T),
    ("\\tfrac{1}{2}", "\\frac12", T),
    ("\\frac12", "1/2", T),
    ("\\frac{1}{2}", "\\frac{1}{3}", F),
    ("\\dfrac{3}{4}", "0.75", T),
    ("\\frac{2}{4}", "\\frac{1}{2}", T),
    ("-\\frac{1}{2}", "\\frac{-1}{2}", T),
    ("\\frac{1}{2}", "-\\frac{1}{2}", F),
    ("\\frac{3}{2}", "1.5", T),
    ("\\frac{1}{3}", "0.333", F),
    ("\\frac{10}{4}", "\\frac52", T),
    ("\\frac{a}{b}", "a/b", T),
    ("\\frac{1}{2}", "\\frac{2}{1}", F),
    ("\\dfrac{7}{8}", "\\dfrac{8}{7}", F),
    # mixed numbers
    ("2\\frac{1}{2}", "\\frac{5}{2}", T),
    ("2\\frac{1}{2}", "2.5", T),
    ("2\\frac{1}{2}", "1", F),
    ("-1\\frac{1}{4}", "-1.25", T),
    # spacing
    ("1 + 2\\sqrt{3}", "1+2\\sqrt{3}", T),
    ("x^2 + 1", "x^2+1", T),
    ("\\frac{1}{ 2}", "\\frac{1}{2}", T),
    ("2\\!\\cdot\\!3", "6", T),
    ("3\\quad", "3", T),
    ("1 + 2\\sqrt{3}", "1+3\\sqrt{2}", F),
    ("x^2 + 1", "x^2 - 1", F),
    # \left / \right
    ("\\left(1,2\\right)", "(1,2)", T),
    ("\\left[0,1\\right]", "[0,1]", T),
    ("\\left|x\\right|", "|x|", T),
    ("\\left\\{1,2\\right\\}", "\\{1,2\\}", T),
    ("\\left(1,2\\right)", "(2,1)", F),
    ("\\left[0,1\\right]", "(0,1)", F),
    # \text{} and units
    ("5\\text{ cm}", "5", T),
    ("5 \\text{cm}", "5", T),
    ("5\\text{ cm}^2", "5", T),
    ("5\\text{ cm}", "6", F),
    ("\\text{Monday}", "Monday", T),
    ("\\text{Monday}", "Tuesday", F),
    ("10 inches", "10", T),
    ("10 inches", "12", F),
    ("20\\mbox{ dollars}", "20", T),
    ("3 \\text{ units}", "3", T),
    ("\\textbf{(C)}", "C", T),
    ("4 square units", "4", T),
    ("2 meters", "3", F),
    ("7\\text{ hours}", "7", T),
    ("2m", "2", F),  # no space: algebra, not a unit
    # degrees
    ("90^\\circ", "90", T),
    ("90^{\\circ}", "90", T),
    ("90°", "90", T),
    ("90 degrees", "90", T),
    ("90^\\circ", "45", F),
    ("45^\\circ", "90^\\circ", F),
    ("30^\\circ", "\\frac{\\pi}{6}", F),
    # percent (not converted to a fraction)
    ("50\\%", "50", T),
    ("50%", "50", T),
    ("50 percent", "50", T),
    ("50\\%", "5", F),
    ("12.5\\%", "12.5", T),
    ("50\\%", "0.5", F),
    # dollars
    ("\\$5", "5", T),
    ("\\$5.00", "5", T),
    ("\\$5", "6", F),
    ("5 dollars", "5", T),
    ("\\$1,000", "1000", T),
    # x= prefixes and equations
    ("x=5", "5", T),
    ("x = 5", "5", T),
    ("y=-2", "-2", T),
    ("x=5", "6", F),
    ("k=\\frac{1}{2}", "0.5", T),
    ("\\theta=30", "30", T),
    ("x_1=3", "3", T),
    ("x+y=5", "5", F),
    ("x=5", "x=6", F),
    ("y=2x+3", "y=3+2x", T),
    ("y=2x+3", "2x+3", T),
    ("x \\in [1,2]", "[1,2]", T),
    ("x\\in(0,1)", "[0,1]", F),
    ("x+y=5", "y+x=5", T),
    ("x+y=5", "x-y=5", F),
    # intervals (bracket types matter) and unions
    ("(1,2)", "(1, 2)", T),
    ("[1,2]", "[1,2]", T),
    ("[1,2)", "(1,2)", F),
    ("(1,2]", "(1,2)", F),
    ("(-\\infty,3)", "(-\\infty, 3)", T),
    ("(-\\infty,3)", "(-\\infty,4)", F),
    ("[0,\\frac{1}{2}]", "[0,0.5]", T),
    ("[0,\\frac{1}{2}]", "[0,\\frac{1}{3}]", F),
    ("(-\\infty,1)\\cup(2,\\infty)", "(-\\infty, 1) \\cup (2, \\infty)", T),
    ("(-\\infty,1)\\cup(2,\\infty)", "(-\\infty,1)\\cup[2,\\infty)", F),
    ("(0,\\infty)", "[0,\\infty)", F),
    # tuples (ordered)
    ("(1,2,3)", "(1,2,3)", T),
    ("(1,2,3)", "(3,2,1)", F),
    ("(\\frac{1}{2},3)", "(0.5,3)", T),
    ("(1,2)", "(1,2,3)", F),
    ("(1,2)", "1,2", F),
    ("(3, -4)", "(3,-4)", T),
    ("(2\\sqrt{2}, 1)", "(\\sqrt{8},1)", T),
    ("(2\\sqrt{2}, 1)", "(\\sqrt{2},1)", F),
    # bare lists and sets (unordered)
    ("1, 2", "2, 1", T),
    ("1,2,3", "3,1,2", T),
    ("1,2", "1,3", F),
    ("1,2", "1,2,2", F),
    ("\\{1,2\\}", "\\{2,1\\}", T),
    ("\\{1,2\\}", "\\{1,3\\}", F),
    ("-1, \\frac{1}{2}", "0.5, -1", T),
    ("2 and 3", "2, 3", T),
    ("2 and 3", "2, 4", F),
    # choice letters
    ("A", "A", T),
    ("(A)", "A", T),
    ("A)", "A", T),
    ("\\text{(B)}", "B", T),
    ("(B)", "(C)", F),
    ("B", "A", F),
    ("\\textbf{(D)}", "D", T),
    ("(E)", "E", T),
    ("A", "5", F),
    ("(A)", "\\text{(A)}", T),
    # roots
    ("\\sqrt{2}", "\\sqrt2", T),
    ("2\\sqrt{3}", "\\sqrt{12}", T),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", T),
    ("\\sqrt{2}", "2", F),
    ("\\sqrt[3]{8}", "2", T),
    ("3\\sqrt{2}", "2\\sqrt{3}", F),
    ("\\sqrt{8}", "2\\sqrt{2}", T),
    ("\\sqrt{2}/2", "\\frac{\\sqrt2}{2}", T),
    ("\\sqrt{2}", "1.41421356", F),
    # pi, powers, products
    ("\\frac{\\pi}{2}", "\\pi/2", T),
    ("2\\pi", "\\pi\\cdot 2", T),
    ("\\pi", "3.14", F),
    ("\\pi r^2", "r^2\\pi", T),
    ("2^{10}", "1024", T),
    ("2^{10}", "1000", F),
    ("3\\cdot 4", "12", T),
    ("3\\times 4", "12", T),
    ("2^{-1}", "\\frac12", T),
    ("10^{3}", "1000", T),
    ("4\\pi", "4\\pi r", F),
    # symbolic equivalence
    ("x^2+2x+1", "(x+1)^2", T),
    ("x^2-1", "(x-1)(x+1)", T),
    ("x^2+1", "(x+1)^2", F),
    ("2x+3y", "3y+2x", T),
    ("2x+3y", "2y+3x", F),
    ("\\frac{x}{2}", "0.5x", T),
    ("ab", "ba", T),
    ("\\sin^2 x+\\cos^2 x", "1", T),
    ("\\sin x", "\\cos x", F),
    ("\\log 8", "3\\log 2", T),
    ("\\binom{5}{2}", "10", T),
    ("5!", "120", T),
    ("5!", "24", F),
    ("3+2i", "2i+3", T),
    ("3+2i", "3-2i", F),
    # words, case
    ("\\text{yes}", "Yes", T),
    ("yes", "no", F),
    ("\\text{even}", "odd", F),
    ("\\text{Monday}", "\\text{Mondya}", F),
    # math delimiters, a boxed gold, a trailing period
    ("$5$", "5", T),
    ("\\(5\\)", "5", T),
    ("\\[5\\]", "5", T),
    ("$\\frac{1}{2}$", "0.5", T),
    ("$5$", "$6$", F),
    ("5", "\\boxed{5}", T),
    ("5.", "5", T),
    ("5.", "6", F),
    # matrices, cell by cell
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", T),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "\\begin{pmatrix}2\\\\1\\end{pmatrix}", F),
    ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1 & 2\\\\3 & 4\\end{pmatrix}", T),
    ("\\begin{pmatrix}\\frac12\\\\2\\end{pmatrix}", "\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", T),
    ("\\begin{pmatrix}1\\\\2\\end{pmatrix}", "(1,2)", F),
    # missing, empty, hostile or pathological input: False, never a crash or a hang
    (None, "5", F),
    ("", "5", F),
    ("5", "", F),
    ("\\frac{1}{0}", "1", F),
    ("9^{9^{9}}", "1", F),
    ("__import__('os')", "1", F),
    ("\\unknowncommand{3}", "3", F),
    ("((1", "1", F),
]


def test_grader_table_is_large_and_balanced():
    assert len(GRADER_CASES) >= 150
    verdicts = [v for _, _, v in GRADER_CASES]
    assert verdicts.count(True) >= 60 and verdicts.count(False) >= 60


@pytest.mark.parametrize(
    "pred,gold,verdict", GRADER_CASES, ids=[f"{i}:{p!r}~{g!r}" for i, (p, g, _) in enumerate(GRADER_CASES)]
)
def test_is_equiv_table(pred, gold, verdict):
    assert grader.is_equiv(pred, gold) is verdict


def test_is_equiv_is_symmetric_on_the_table():
    for pred, gold, verdict in GRADER_CASES:
        if pred is not None and not pred.startswith("\\boxed") and not gold.startswith("\\boxed"):
            assert grader.is_equiv(gold, pred) is verdict, (gold, pred)


# -----------------------------------------------------------------------------
# extract_boxed and grade


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so \\boxed{5}", "5"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{{a}{b}{\\sqrt{c}}}", "{a}{b}{\\sqrt{c}}"),  # deeper nesting
        ("first \\boxed{1} then \\boxed{2}", "2"),  # several boxes: the last
        ("\\fbox{7}", "7"),
        ("\\boxed{3} and finally \\fbox{4}", "4"),
        ("no box here, the answer is 5", None),
        ("", None),
        ("\\boxed{12", None),  # unbalanced last box
        ("\\boxed{1} then \\boxed{2", None),  # an earlier box does not count
        ("\\boxed 5", "5"),
        ("the answer is $\\boxed 42$.", "42"),
        ("\\boxed {7}", "7"),
        ("\\boxed{}", ""),
        ("\\boxed{ 8 }", "8"),
        ("\\boxedx{3}", None),  # another command
    ],
)
def test_extract_boxed(text, expected):
    assert grader.extract_boxed(text) == expected


def test_grade_uses_the_last_box_and_the_equivalence():
    assert grader.grade("=3+8\n=11\n\\boxed{11}", "11")
    assert grader.grade("I think \\boxed{7}, no wait: \\boxed{\\frac{22}{2}}", "11")
    assert not grader.grade("\\boxed{11} wait, \\boxed{12}", "11")
    assert not grader.grade("the answer is 11", "11")  # strict: no box, no credit
    assert not grader.grade("\\boxed{11", "11")


def test_sympy_time_limit_returns_false_and_recovers():
    # a trigonometric simplify() takes far more than 0.1 ms: it times out, the worker process is
    # killed and replaced, and the next call, with a normal limit, works again
    assert latex_sympy.sympy_equal("\\sin(2x)", "2\\sin(x)\\cos(x)", timeout=30.0)
    pid = latex_sympy._worker.pid
    assert latex_sympy.sympy_equal("\\tan(2x)", "\\frac{2\\tan(x)}{1-\\tan(x)^2}", timeout=1e-4) is False
    assert latex_sympy._worker is None
    assert latex_sympy.sympy_equal("x^2-1", "(x-1)(x+1)", timeout=30.0)
    assert latex_sympy._worker.pid != pid


def test_grading_from_several_threads_agrees_with_serial():
    cases = [c for c in GRADER_CASES if c[0] is not None][:60]
    results = {}

    def work(lo):
        for i in range(lo, len(cases), 4):
            results[i] = grader.is_equiv(cases[i][0], cases[i][1])

    threads = [threading.Thread(target=work, args=(lo,)) for lo in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(len(cases))] == [c[2] for c in cases]


# -----------------------------------------------------------------------------
# Collapse diagnostics


def test_repetition_ratio_by_hand():
    assert E.repetition_ratio([]) == 0.0
    assert E.repetition_ratio([1, 2, 3, 4, 5]) == 0.0
    # 1 2 3 1 2 3: the 3-grams ending at positions 5 (1,2,3) repeats -> 1 of 6 tokens
    assert E.repetition_ratio([1, 2, 3, 1, 2, 3]) == pytest.approx(1 / 6)
    # 7 7 7 7 7: grams end at 2, 3, 4; the last two repeat (7,7,7) -> 2 of 5
    assert E.repetition_ratio([7, 7, 7, 7, 7]) == pytest.approx(2 / 5)
    # a long loop: 298 grams, the first 3 new, the other 295 repeats
    assert E.repetition_ratio([1, 2, 3] * 100) == pytest.approx(295 / 300)
    assert E.repetition_ratio(torch.tensor([4, 5, 6, 4, 5, 6, 4])) == pytest.approx(2 / 7)


def test_hedging_rate_counts_the_words_per_thousand():
    assert E.hedging_rate("") == 0.0
    assert E.hedging_rate("Wait, maybe it is 5. But alternatively 6.") == pytest.approx(1000 * 4 / 8)
    assert E.hedging_rate("the answer is five") == 0.0
    assert E.hedging_rate("waiting maybes butter") == 0.0  # whole words only
    assert E.hedging_rate("wait " * 3 + "x " * 997) == pytest.approx(3.0)


def test_response_stats_names_and_values():
    s = E.response_stats([[1, 2, 3], [1, 1, 1, 1]], ["wait", "ok"], [False, True])
    assert s["len/mean"] == 3.5 and s["len/max"] == 4
    assert s["len/truncated_frac"] == 0.5
    assert s["rep/ratio"] == pytest.approx((0 + 1 / 4) / 2)
    assert s["hedge/per_1k_words"] == pytest.approx(500.0)


def test_confidence_intervals():
    lo, hi = E.wilson_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    lo, hi = E.wilson_ci(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = E.mean_ci([0.0, 1.0, 0.5, 0.5])
    half = 1.96 * math.sqrt(1 / 6) / 2
    assert (lo, hi) == (pytest.approx(0.5 - half), pytest.approx(0.5 + half))


# -----------------------------------------------------------------------------
# Evaluation bookkeeping with a scripted generate (answers known in advance)


def _scripted_generate(tok, examples, p_right=0.5):
    """A stand-in for rollout.generate that writes the reference solution or a wrong answer,
    chosen with the generator: the evaluation's bookkeeping is checked against known outputs."""
    by_prompt = {tuple(data.context_ids(tok, ex)): ex for ex in examples}

    def generate(model, prompts, max_new_tokens, *, generator=None, eos_token_ids, **kw):
        rows = []
        for p in prompts:
            ex = by_prompt[tuple(p)]
            right = torch.rand((), generator=generator).item() < p_right
            text = ex.solution if right else f"=0\n\\boxed{{{int(ex.answer) + 1}}}"
            rows.append(tok.encode(text)[:max_new_tokens] + [eos_token_ids[0]])
        T = max(len(r) for r in rows)
        resp = torch.full((len(rows), T), tok.pad_token_id)
        for i, r in enumerate(rows):
            resp[i, : len(r)] = torch.tensor(r)
        lengths = torch.tensor([len(r) for r in rows])
        done = torch.ones(len(rows), dtype=torch.bool)
        return SimpleNamespace(
            responses=lambda: [r for r in rows], finished=done, truncated=~done, lengths=lengths
        )

    return generate


def test_evaluate_records_metrics_and_regrading(tmp_path, monkeypatch):
    import rollout

    tok = models.tiny_tokenizer()
    examples = data.load_examples("synthetic", n=20, split="eval", seed=3)
    monkeypatch.setattr(rollout, "generate", _scripted_generate(tok, examples))
    model = torch.nn.Linear(1, 1)  # only its device is read
    out = tmp_path / "ev.jsonl"
    summary, records = E.evaluate(
        model,
        tok,
        examples,
        k=3,
        temperature=1.0,
        top_p=1.0,
        max_new_tokens=64,
        batch_size=8,
        seed=1,
        bench="synth",
        out_path=str(out),
        progress=False,
    )
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(lines) == 20 * 3 == len(records)
    assert sorted((r["id"], r["sample"]) for r in lines) == sorted(
        (ex.id, j) for ex in examples for j in range(3)
    )
    # regrade the JSONL independently of the evaluation loop
    gold = {ex.id: ex.answer for ex in examples}
    regraded = [grader.grade(r["response"], gold[r["id"]]) for r in lines]
    assert regraded == [r["correct"] for r in lines]
    assert 0 < sum(regraded) < len(regraded)  # the script makes both kinds
    per = {}
    for r in lines:
        per.setdefault(r["id"], []).append(r["correct"])
    assert summary["acc/avg@k"] == pytest.approx(sum(sum(v) / 3 for v in per.values()) / 20)
    assert summary["acc/pass@k"] == pytest.approx(sum(any(v) for v in per.values()) / 20)
    first = {r["id"]: r["correct"] for r in lines if r["sample"] == 0}
    assert summary["acc/pass@1"] == pytest.approx(sum(first.values()) / 20)
    assert summary["acc/pass@1_ci"][0] <= summary["acc/pass@1"] <= summary["acc/pass@1_ci"][1]
    assert summary["boxed_frac"] == 1.0 and summary["len/truncated_frac"] == 0.0
    assert summary["n"] == 20 and summary["k"] == 3
    table = E.format_table([summary])
    assert "| synth | 20 | 3 |" in table and f"{summary['acc/pass@1']:.3f}" in table


# -----------------------------------------------------------------------------
# Evaluation and the prefix probe with tiny random models through the real rollout.generate


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return models.build_tiny(seed=0), models.build_tiny(seed=1), models.tiny_tokenizer()


def test_evaluate_is_reproducible_with_fixed_seeds(tiny):
    student, _, tok = tiny
    ex = data.load_examples("synthetic", n=6, split="eval")
    kw = dict(k=2, temperature=1.0, top_p=1.0, max_new_tokens=12, batch_size=4, progress=False)
    _, a = E.evaluate(student, tok, ex, seed=5, **kw)
    _, b = E.evaluate(student, tok, ex, seed=5, **kw)
    _, c = E.evaluate(student, tok, ex, seed=6, **kw)
    assert [r["response"] for r in a] == [r["response"] for r in b]
    assert [r["response"] for r in a] != [r["response"] for r in c]
    # the two samples of one problem differ (they are drawn from different streams)
    assert [r["response"] for r in a if r["sample"] == 0] != [r["response"] for r in a if r["sample"] == 1]
    assert all(r["length"] <= 12 for r in a)
    assert sum(r["truncated"] for r in a) == sum(r["length"] == 12 and not r["finished"] for r in a)


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
    fit = probes.teacher_fit(student, teacher, tok, ex, k=5, max_new_tokens=9, batch_size=3, seed=4)
    prompts = [data.context_ids(tok, e) for e in ex]
    kl, overlap, n = 0.0, 0.0, 0
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
            for a, t in zip(zs.topk(5).indices, zt.topk(5).indices):
                overlap += len(set(a.tolist()) & set(t.tolist())) / 5
            n += len(r)
    assert fit["tokens"] == n and fit["kl/full"] == pytest.approx(kl / n, rel=1e-4)
    assert fit["topk/overlap"] == pytest.approx(overlap / n, abs=1e-6)
    itself = probes.teacher_fit(student, student, tok, ex, k=5, max_new_tokens=9, batch_size=3, seed=4)
    assert abs(itself["kl/full"]) < 1e-6 and itself["topk/overlap"] == 1.0 and itself["kl/reverse_est"] == 0.0


def test_prefix_probe_rejects_fractions_outside_unit_interval(tiny):
    student, teacher, tok = tiny
    ex = data.load_examples("synthetic", n=2, split="train")
    with pytest.raises(ValueError, match="fractions"):
        probes.prefix_probe(student, teacher, tok, ex, (1.5,), progress=False)


# -----------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("module", [E, probes], ids=["eval_math", "probes"])
def test_help_documents_every_flag(module):
    parser = module.build_parser()
    for action in parser._actions:
        if action.dest != "help":
            assert action.help and len(action.help) > 8, action.dest
    text = parser.format_help()
    for flag in ("--model", "--bench", "--preset", "--k", "--out", "--pi"):
        assert flag in text
    assert ("--probe-teacher" in text) == (module is probes)


def test_presets_and_overrides():
    parser = E.build_parser()
    s = E.resolve_settings(parser.parse_args(["--model", "x", "--bench", "math500"]), "math500")
    assert (s["temperature"], s["top_p"], s["preset"]) == (0.6, 0.95, "paper")
    s = E.resolve_settings(parser.parse_args(["--model", "x", "--temperature", "0.2"]), "synthetic")
    assert (s["temperature"], s["preset"], s["max_new_tokens"]) == (0.2, "tiny", 80)


def test_wrong_hint_is_never_equivalent_to_the_gold():
    for gold in ("5", "-3", "\\frac{1}{2}", "x+1", "(1,2)"):
        assert not grader.is_equiv(task.wrong_answer(gold), gold)
    assert task.wrong_answer("41") == "42"
    args = E.build_parser().parse_args(
        ["--model", "x", "--pi", "answer_only", "--wrong-hint", "--synthetic-n", "5"]
    )
    for e in E.load_bench(args, "synthetic"):
        (msg,) = data.context_messages(e, "answer_only")
        assert msg["content"].endswith(f"The answer is {int(e.answer) + 1}.")
    with pytest.raises(E.UserError, match="answer_only"):
        E.main(["--model", "x", "--wrong-hint"])


def test_cli_end_to_end_on_a_saved_tiny_model(tiny, tmp_path, capsys):
    student, _, tok = tiny
    models.save(student, tok, str(tmp_path / "m"))
    out = tmp_path / "out"
    E.main(
        [
            "--model",
            str(tmp_path / "m"),
            "--bench",
            "synthetic",
            "--synthetic-n",
            "6",
            "--max-new-tokens",
            "8",
            "--k",
            "2",
            "--batch-size",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    assert "| synthetic | 6 | 2 |" in printed
    assert len((out / "synthetic.jsonl").read_text().splitlines()) == 12
    summary = json.loads((out / "summary.json").read_text())[0]
    assert summary["settings"]["max_new_tokens"] == 8 and summary["preset"] == "tiny"


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
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ]
    )
    printed = capsys.readouterr().out
    saved = json.loads((tmp_path / "o" / "probe_summary.json").read_text())
    assert [r["f"] for r in saved["probe"]] == [None, 0.0, 0.5] and saved["fit"]["problems"] == 4
    assert f"{saved['fit']['kl/full']:.4f}" in printed and "teacher fit" in printed
