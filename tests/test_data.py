"""Tests of data.py: the student prompt, the synthetic task's Examples from load_examples
(tiny_world/task.py) checked by an independent calculation and pinned, the PI contexts and target
responses; and common.py's resumable prompt stream (CPU, a few seconds). The readers, parsers and
DataErrors of data_files.py are checked in tests/test_data_files.py.

    .venv/bin/python -m pytest -q tests/test_data.py
"""

import hashlib
import json
import re

import pytest

import common
import data
import models
from tiny_world import task

# -----------------------------------------------------------------------------
# The student prompt (§2.3)


def test_student_prompt_is_the_papers():
    assert data.student_prompt("What is 1+1?") == (
        "What is 1+1?\n\nPlease reason step by step, and put your final answer within \\boxed{}."
    )


# -----------------------------------------------------------------------------
# The synthetic task


def _eval_expr(expr):
    assert re.fullmatch(r"-?\d+([+\-*]\d+)*", expr), expr  # only digits and + - *: safe to eval
    return eval(expr)  # Python's own precedence, independent of task.worked_solution


def test_synthetic_answers_recomputed_independently():
    ex = data.load_examples("synthetic", n=400, split="train", seed=1, hard_frac=0.2)
    for e in ex:
        expr = re.fullmatch(r"What is (.+)\?", e.problem).group(1)
        value = _eval_expr(expr)
        assert e.answer == str(value)
        lines = e.solution.split("\n")
        assert lines[-1] == f"\\boxed{{{value}}}"
        for line in lines[:-1]:  # every rewriting step keeps the value
            assert line.startswith("=") and _eval_expr(line[1:]) == value
        assert len(lines) - 1 == e.meta["ops"]  # one line per operation


def test_synthetic_examples_are_pinned():
    # the tiny world's results depend on these exact problems: a change to the generator shows here
    for kw, digest in (
        (dict(n=300, split="train", seed=0, hard_frac=0.2), "dc2c57a394d3b014"),
        (dict(n=100, split="eval", seed=1), "0d658d4b42787415"),
    ):
        examples = data.load_examples("synthetic", **kw)
        text = "\n".join(f"{e.id}|{e.problem}|{e.answer}|{e.solution}" for e in examples)
        assert hashlib.sha256(text.encode()).hexdigest()[:16] == digest, kw


def test_synthetic_difficulty_knobs():
    ex = data.load_examples("synthetic", n=300, split="train", seed=2, min_ops=2, max_ops=4, max_operand=5)
    for e in ex:
        operands = [int(x) for x in re.findall(r"\d+", e.meta["expr"])]
        assert 2 <= len(operands) - 1 <= 4 and max(operands) <= 5
    ops = {e.meta["ops"] for e in ex}
    assert ops == {2, 3, 4}
    hard = data.load_examples("synthetic", n=200, split="train", seed=2, hard_frac=1.0)
    assert all(re.fullmatch(r"\d\d\*\d\d", e.meta["expr"]) and e.meta["hard"] for e in hard)
    assert all(e.solution == f"={e.answer}\n\\boxed{{{e.answer}}}" for e in hard)
    some = data.load_examples("synthetic", n=1000, split="train", seed=2, hard_frac=0.3)
    assert 0.2 < sum(e.meta["hard"] for e in some) / 1000 < 0.4


def test_synthetic_solutions_are_short():
    ex = data.load_examples("synthetic", n=1000, split="train", seed=0)
    assert max(len(e.solution.encode()) for e in ex) <= 40
    assert sum(len(e.solution) for e in ex) / len(ex) < 30


def test_synthetic_splits_never_overlap_and_are_reproducible():
    train = data.load_examples("synthetic", n=3000, split="train", seed=0)
    evals = data.load_examples("synthetic", n=300, split="eval", seed=0)
    evals_other_seed = data.load_examples("synthetic", n=300, split="eval", seed=9)
    train_exprs = {e.meta["expr"] for e in train}
    assert not train_exprs & {e.meta["expr"] for e in evals + evals_other_seed}
    assert len(train_exprs) == 3000  # distinct within a split
    again = data.load_examples("synthetic", n=300, split="eval", seed=0)
    assert [e.problem for e in again] == [e.problem for e in evals]
    assert [e.problem for e in evals_other_seed] != [e.problem for e in evals]
    # the split is a function of the expression alone
    assert all(task.split_of(e.meta["expr"]) == "eval" for e in evals)
    assert all(task.split_of(e.meta["expr"]) == "train" for e in train)


def test_synthetic_too_small_a_space_is_an_error():
    with pytest.raises(ValueError, match="too small"):
        data.load_examples("synthetic", n=500, split="eval", min_ops=1, max_ops=1, max_operand=3)
    with pytest.raises(ValueError, match="split"):
        data.load_examples("synthetic", n=5, split="test")


# -----------------------------------------------------------------------------
# PI contexts (§5)


@pytest.fixture(scope="module")
def tok():
    return models.tiny_tokenizer()


def test_context_none_is_the_students(tok):
    e = data.load_examples("synthetic", n=1, split="train")[0]
    assert data.context_messages(e, "none") == [{"role": "user", "content": e.prompt}]
    assert data.context_ids(tok, e, "none") == tok.chat_prompt(e.prompt)


def test_context_answer_only_full_and_system_prompt(tok):
    e = data.load_examples("synthetic", n=1, split="train", seed=4)[0]
    (msg,) = data.context_messages(e, "answer_only")
    # the tiny world's contexts are short: the bare problem, a one-line hint
    assert e.prompt == e.problem and msg["content"] == f"{e.problem}\nThe answer is {e.answer}."
    wrong = data.Example(**{**e.__dict__, "hint": "12345"})
    assert data.context_messages(wrong, "answer_only")[0]["content"].endswith("is 12345.")
    (msg,) = data.context_messages(e, "full")
    assert msg["content"].startswith(e.problem) and msg["content"].endswith(e.solution)
    # the paper's templates (§5) for every other source
    m = data.Example(id="m", problem="Find x.", answer="7", solution="x = 7, so \\boxed{7}", source="math500")
    assert m.prompt == data.student_prompt("Find x.")
    (msg,) = data.context_messages(m, "answer_only")
    assert msg["content"].startswith(m.prompt) and "answer to this problem is: 7\n" in msg["content"]
    (msg,) = data.context_messages(m, "full")
    assert m.solution in msg["content"] and msg["content"].endswith(data.BOXED_INSTRUCTION)
    sys_msg, user = data.context_messages(e, "system_prompt")
    assert (
        sys_msg == {"role": "system", "content": data.SYSTEM_RULE_SYNTHETIC} and user["content"] == e.prompt
    )
    math_ex = data.Example(id="m", problem="p", answer="1", source="math500")
    assert data.context_messages(math_ex, "system_prompt")[0]["content"] == data.SYSTEM_RULE_MATH
    assert data.context_messages(math_ex, "system_prompt", rule="Be brief.")[0]["content"] == "Be brief."
    with pytest.raises(ValueError, match="no reference solution"):
        data.context_messages(math_ex, "full")
    with pytest.raises(ValueError, match="unknown PI mode"):
        data.context_messages(e, "hidden_think")


def test_every_context_ends_with_the_assistant_header(tok):
    # the student's response tokens must follow every context unchanged: all contexts end with the
    # same assistant header as the student's prompt, and the PI lies before it
    e = data.load_examples("synthetic", n=1, split="train", seed=5)[0]
    student = data.context_ids(tok, e, "none")
    header = tok.chat_prompt("")[-12:]
    assert student[-12:] == header
    for pi in data.PI_MODES:
        ids = data.context_ids(tok, e, pi)
        assert ids[-12:] == header
        assert (ids == student) == (pi == "none")
        if pi == "system_prompt":
            assert data.SYSTEM_RULE_SYNTHETIC in tok.decode(ids)


def test_target_response():
    e = data.load_examples("synthetic", n=1, split="train", seed=6)[0]
    assert data.target_response(e) == e.solution
    assert data.target_response(e, "answer_only") == e.solution
    assert data.target_response(e, "system_prompt") == f"\\boxed{{{e.answer}}}"
    with pytest.raises(ValueError, match="no reference solution"):
        data.target_response(data.Example(id="x", problem="p", answer="1"))


# -----------------------------------------------------------------------------
# Deterministic shuffling and resumable iteration


def _examples(n):
    return [data.Example(id=str(i), problem=f"p{i}", answer=str(i)) for i in range(n)]


def test_epoch_order_is_a_fixed_permutation():
    assert common.epoch_order(6, 0, 0) == common.epoch_order(6, 0, 0)
    assert sorted(common.epoch_order(50, 3, 1)) == list(range(50))
    assert common.epoch_order(50, 3, 1) != common.epoch_order(50, 3, 2) != common.epoch_order(50, 4, 1)
    # pinned: the order must not change between machines or Python versions
    assert common.epoch_order(6, 0, 0) == PINNED_ORDER


PINNED_ORDER = [4, 1, 2, 3, 0, 5]


def test_resumed_stream_equals_uninterrupted():
    ex = _examples(10)
    full = common.PromptStream(ex, batch_size=4, seed=7)
    uninterrupted = [[e.id for e in next(full)] for _ in range(9)]  # 36 prompts: 3.6 epochs
    first = common.PromptStream(ex, batch_size=4, seed=7)
    head = [[e.id for e in next(first)] for _ in range(4)]
    state = json.loads(json.dumps(first.state_dict()))  # it survives a checkpoint file
    resumed = common.PromptStream(ex, batch_size=4, seed=0)  # a wrong seed is overwritten by the state
    resumed.load_state_dict(state)
    tail = [[e.id for e in next(resumed)] for _ in range(5)]
    assert head + tail == uninterrupted


def test_stream_epochs_cover_every_example_once():
    ex = _examples(12)
    s = common.PromptStream(ex, batch_size=4, seed=1)
    epoch0 = [e.id for _ in range(3) for e in next(s)]
    epoch1 = [e.id for _ in range(3) for e in next(s)]
    assert sorted(epoch0) == sorted(epoch1) == sorted(e.id for e in ex)
    assert epoch0 != epoch1  # reshuffled
    plain = common.PromptStream(ex, batch_size=5, shuffle=False)
    assert [e.id for e in next(plain)] == ["0", "1", "2", "3", "4"]


def test_stream_refuses_another_datasets_state():
    s = common.PromptStream(_examples(10), batch_size=2)
    next(s)
    other = common.PromptStream(_examples(11), batch_size=2)
    with pytest.raises(ValueError, match="another dataset"):
        other.load_state_dict(s.state_dict())
    with pytest.raises(ValueError, match="at least one"):
        common.PromptStream([], batch_size=2)
