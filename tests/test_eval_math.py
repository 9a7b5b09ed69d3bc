"""Tests of eval_math.py: the evaluation loop on tiny models and the command line (CPU, seconds).
The collapse diagnostics and confidence intervals (diagnostics.py) are checked in
tests/test_diagnostics.py, the grader in tests/test_grader.py, probes.py (the prefix probe, the
teacher's fit) in tests/test_probes.py.

    .venv/bin/python -m pytest -q tests/test_eval_math.py
"""

import json
from types import SimpleNamespace

import pytest
import torch

import data
import eval_cli
import eval_math as E
import grader
import models
import probes
from tiny_world import task

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
# Evaluation with tiny random models through the real rollout.generate


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


# -----------------------------------------------------------------------------
# The command line


@pytest.mark.parametrize("module", [eval_cli, probes], ids=["eval_math", "probes"])
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
    parser = eval_cli.build_parser()
    s = eval_cli.resolve_settings(parser.parse_args(["--model", "x", "--bench", "math500"]), "math500")
    assert (s["temperature"], s["top_p"], s["preset"]) == (0.6, 0.95, "paper")
    s = eval_cli.resolve_settings(parser.parse_args(["--model", "x", "--temperature", "0.2"]), "synthetic")
    assert (s["temperature"], s["preset"], s["max_new_tokens"]) == (0.2, "tiny", 80)


def test_wrong_hint_is_never_equivalent_to_the_gold():
    for gold in ("5", "-3", "\\frac{1}{2}", "x+1", "(1,2)"):
        assert not grader.is_equiv(task.wrong_answer(gold), gold)
    assert task.wrong_answer("41") == "42"
    args = eval_cli.build_parser().parse_args(
        ["--model", "x", "--pi", "answer_only", "--wrong-hint", "--synthetic-n", "5"]
    )
    for e in eval_cli.load_bench(args, "synthetic"):
        (msg,) = data.context_messages(e, "answer_only")
        assert msg["content"].endswith(f"The answer is {int(e.answer) + 1}.")
    with pytest.raises(eval_cli.UserError, match="answer_only"):
        eval_cli.main(["--model", "x", "--wrong-hint"])


def test_cli_end_to_end_on_a_saved_tiny_model(tiny, tmp_path, capsys):
    student, _, tok = tiny
    models.save(student, tok, str(tmp_path / "m"))
    out = tmp_path / "out"
    eval_cli.main(
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
