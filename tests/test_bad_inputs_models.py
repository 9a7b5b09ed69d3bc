"""Bad model folders, tiny temperatures and out-of-range seeds across the entry points.

The contract is tests/test_bad_inputs.py's (errors.py): a bad input ends in exit code 2 and a one- or
two-line message on stderr that names the culprit (the flag and its value, or the file and the
key or tensor) and says what to do, without a traceback, before --out is made. This file holds
the rows about models, in the same form as that file's CASES and run the same way:

    CASES   weights that hold NaN or inf (full weights and LoRA adapters, student and teacher),
            tokenizer files cut short or missing keys, config.json without the fields a model
            needs, seeds outside [0, 2**32)
    a tiny temperature is not refused: it samples as greedy does (test_tiny_temperature_*), and
            the sampler refuses logits that are not finite by name instead of indexing past the
            vocabulary (test_sampler_*)

    .venv/bin/python -m pytest -q tests/test_bad_inputs_models.py
"""

import json
import os
import pathlib
import shutil

import pytest
import safetensors.torch
import torch
from test_bad_inputs import (
    EVAL,
    GRPO,
    OPD,
    OPSD,
    PROBE,
    SFT,
    Case,
    assert_refused,
    case_placeholders,
    expand,
    files,
    flag,
    forbid_model_loads,
    make_shared,
)
from test_models import hf_byte_tokenizer

import errors
import eval_cli
import lora
import model_files
import models
import rollout

TENSOR = "model.layers.0.mlp.up_proj.weight"  # the weight the non-finite setups spoil
ADAPTER = lora.peft_key("model.layers.0.mlp.up_proj", "B")  # the adapter matrix they spoil
TOO_BIG = str(2**64)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """test_bad_inputs.py's tiny models and data files, and {hf_student}: the student's weights with
    a transformers tokenizer (tokenizer.json, tokenizer_config.json, chat_template.jinja)."""
    root = tmp_path_factory.mktemp("shared")
    P = make_shared(root)
    hf = root / "hf_student"
    shutil.copytree(P["student"], hf)
    (hf / models.TINY_MARKER).unlink()
    hf_byte_tokenizer().save_pretrained(hf)
    P["hf_student"] = str(hf)
    return P


# --- setups: each writes a spoiled copy of a model into the case's folder as {bad_model}


def spoiled(source, spoil, name="bad_model"):
    """A setup: a copy of the model folder {source} as {name}, then spoil(folder)."""

    def setup(tmp, P):
        dst = pathlib.Path(tmp) / name
        shutil.copytree(P[source], dst)
        spoil(dst)
        P[name] = str(dst)

    return setup


def weight_set_to(value, source="student"):
    """The copy's TENSOR holds `value` (NaN or inf) at one entry."""

    def spoil(folder):
        path = folder / "model.safetensors"
        weights = safetensors.torch.load_file(path)
        weights[TENSOR][0, 0] = value
        safetensors.torch.save_file(weights, path, metadata={"format": "pt"})

    return spoiled(source, spoil)


def non_finite_adapters(tmp, P):
    """{bad_adapters}: LoRA adapters in PEFT's layout on {student} whose ADAPTER holds a NaN."""
    model = lora.attach(models.build_tiny(seed=2), rank=2, alpha=4.0)
    tensors = lora.tensors(model)
    tensors[ADAPTER][0, 0] = float("nan")
    P["bad_adapters"] = str(pathlib.Path(tmp) / "bad_adapters")
    lora.save(P["bad_adapters"], tensors, lora.peft_config(model, P["student"]))


def file_edited(source, file, edit):
    """The copy's `file` (JSON text) replaced by edit(text)."""

    def spoil(folder):
        path = folder / file
        path.write_text(edit(path.read_text()))

    return spoiled(source, spoil)


def cut_in_half(text):
    return text[: len(text) // 2]


def without_keys(*keys):
    return lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k not in keys})


def in_a_list(text):
    return f"[{text}]"


def without_chat_template(folder):
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    path = folder / "tokenizer_config.json"
    path.write_text(without_keys("chat_template")(path.read_text()))


# --- the rows

NON_FINITE = ["{bad_model}", TENSOR, "NaN"]
ADAPTERS = ["{bad_adapters}", "adapter_model.safetensors", ADAPTER, "NaN"]


CASES = [
    # ---- weights that hold NaN or inf: refused by the model's folder and the tensor's name
    files(
        "train_opd--student-nan-weight",
        "train_opd",
        OPD + ["--student", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("nan")),
    ),
    files(
        "train_opd--teacher-inf-weight",
        "train_opd",
        OPD + ["--teacher", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("inf"), "teacher"),
    ),
    files(
        "train_opd--teacher-nan-adapters",
        "train_opd",
        OPD + ["--teacher", "{bad_adapters}"],
        ADAPTERS,
        non_finite_adapters,
    ),
    files(
        "train_opsd--student-nan-weight",
        "train_opsd",
        OPSD + ["--student", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("nan")),
    ),
    files(
        "train_grpo--student-inf-weight",
        "train_grpo",
        GRPO + ["--student", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("-inf")),
    ),
    files(
        "train_sft--student-nan-weight",
        "train_sft",
        SFT + ["--student", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("nan")),
    ),
    files(
        "eval_math--model-nan-weight",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("nan")),
    ),
    files(
        "eval_math--model-nan-adapters",
        "eval_math",
        EVAL + ["--model", "{bad_adapters}"],
        ADAPTERS,
        non_finite_adapters,
    ),
    files(
        "probes--model-inf-weight",
        "probes",
        PROBE + ["--model", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("inf")),
    ),
    files(
        "probes--probe-teacher-nan-weight",
        "probes",
        EVAL + ["--probe-teacher", "{bad_model}"],
        NON_FINITE,
        weight_set_to(float("nan"), "teacher"),
    ),
    # ---- tokenizer files cut short, not an object, or without the keys loading needs
    files(
        "eval_math--model-tokenizer.json-cut",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}/tokenizer.json", "not valid JSON"],
        file_edited("hf_student", "tokenizer.json", cut_in_half),
    ),
    files(
        "train_opd--teacher-tokenizer_config.json-cut",
        "train_opd",
        OPD + ["--teacher", "{bad_model}"],
        ["{bad_model}/tokenizer_config.json", "not valid JSON"],
        file_edited("hf_student", "tokenizer_config.json", cut_in_half),
    ),
    files(
        "train_opd--student-tokenizer.json-without-model",
        "train_opd",
        OPD + ["--student", "{bad_model}"],
        ["{bad_model}/tokenizer.json", "'model'"],
        file_edited("hf_student", "tokenizer.json", without_keys("model")),
    ),
    files(
        "probes--probe-teacher-tokenizer.json-without-added_tokens",
        "probes",
        EVAL + ["--probe-teacher", "{bad_model}"],
        ["{bad_model}/tokenizer.json", "'added_tokens'"],
        file_edited("hf_student", "tokenizer.json", without_keys("added_tokens")),
    ),
    files(
        "train_grpo--student-tokenizer_config.json-a-list",
        "train_grpo",
        GRPO + ["--student", "{bad_model}"],
        ["{bad_model}/tokenizer_config.json", "list"],
        file_edited("hf_student", "tokenizer_config.json", in_a_list),
    ),
    files(
        "eval_math--model-without-chat-template",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}", "chat template", "tokenizer_config.json"],
        spoiled("hf_student", without_chat_template),
    ),
    files(
        "eval_math--model-tiny-tokenizer-cut",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}/tiny_tokenizer.json", "not valid JSON"],
        file_edited("student", models.TINY_MARKER, cut_in_half),
    ),
    files(
        "train_sft--student-tiny-tokenizer-without-special_tokens",
        "train_sft",
        SFT + ["--student", "{bad_model}"],
        ["{bad_model}/tiny_tokenizer.json", "'special_tokens'"],
        file_edited("student", models.TINY_MARKER, without_keys("special_tokens")),
    ),
    files(
        "train_opd--teacher-tiny-tokenizer-special_tokens-a-list",
        "train_opd",
        OPD + ["--teacher", "{bad_model}"],
        ["{bad_model}/tiny_tokenizer.json", "special_tokens"],
        file_edited("teacher", models.TINY_MARKER, lambda t: json.dumps({"special_tokens": [1, 2]})),
    ),
    # ---- config.json without the fields a model needs, or not a JSON object
    files(
        "eval_math--model-config-without-model_type",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}/config.json", "'model_type'"],
        file_edited("student", "config.json", without_keys("model_type")),
    ),
    files(
        "train_opd--student-config-without-hidden_size",
        "train_opd",
        OPD + ["--student", "{bad_model}"],
        ["{bad_model}/config.json", "'hidden_size'"],
        file_edited("student", "config.json", without_keys("hidden_size")),
    ),
    files(
        "train_opd--teacher-config-without-vocab_size",
        "train_opd",
        OPD + ["--teacher", "{bad_model}"],
        ["{bad_model}/config.json", "'vocab_size'"],
        file_edited("teacher", "config.json", without_keys("vocab_size")),
    ),
    files(
        "probes--probe-teacher-config-without-num_hidden_layers",
        "probes",
        EVAL + ["--probe-teacher", "{bad_model}"],
        ["{bad_model}/config.json", "'num_hidden_layers'"],
        file_edited("teacher", "config.json", without_keys("num_hidden_layers")),
    ),
    files(
        "train_grpo--student-config-a-list",
        "train_grpo",
        GRPO + ["--student", "{bad_model}"],
        ["{bad_model}/config.json", "list"],
        file_edited("student", "config.json", in_a_list),
    ),
    files(
        "train_sft--student-config-cut",
        "train_sft",
        SFT + ["--student", "{bad_model}"],
        ["{bad_model}/config.json", "not valid JSON"],
        file_edited("student", "config.json", cut_in_half),
    ),
    files(
        "eval_math--model-config-hidden_size-a-string",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}/config.json", "hidden_size", "'128'"],
        file_edited("student", "config.json", lambda t: json.dumps({**json.loads(t), "hidden_size": "128"})),
    ),
    files(
        "eval_math--model-config-unknown-model_type",
        "eval_math",
        EVAL + ["--model", "{bad_model}"],
        ["{bad_model}/config.json", "model_type", "'qwen9'"],
        file_edited("student", "config.json", lambda t: json.dumps({**json.loads(t), "model_type": "qwen9"})),
    ),
    # ---- seeds outside [0, 2**32): refused by the flag's range, before anything loads
    flag("train_opd", OPD, "--seed", TOO_BIG),
    flag("train_opd", OPD, "--seed", "-1"),
    flag("train_opsd", OPSD, "--seed", TOO_BIG),
    flag("train_grpo", GRPO, "--seed", str(2**32)),
    flag("train_sft", SFT, "--seed", TOO_BIG),
    pytest.param(flag("eval_math", EVAL, "--seed", TOO_BIG), id=f"eval_math--seed={TOO_BIG}"),
    pytest.param(flag("probes", PROBE, "--seed", TOO_BIG), id=f"probes--seed={TOO_BIG}"),
]


def case_id(case):
    return case.id if isinstance(case, Case) else None


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_model_input(case, shared, tmp_path, capsys, monkeypatch):
    P = case_placeholders(shared, tmp_path)
    if case.setup:
        case.setup(tmp_path, P)
    argv, culprits = expand(case, P)
    if case.stage == "flags":
        forbid_model_loads(monkeypatch)
    assert_refused(case.script, argv, culprits, capsys)
    assert not os.path.exists(P["out"]), (
        f"the refused run left its --out folder behind: {os.listdir(P['out'])}"
    )


def test_the_table_covers_each_class_on_two_entry_points():
    rows = [c.values[0] if not isinstance(c, Case) else c for c in CASES]
    assert len({c.id for c in rows}) == len(rows), "case ids must be unique"
    for word in ("weight", "adapters", "tokenizer", "config", "--seed"):
        assert len({c.script for c in rows if word in c.id}) >= 2, word
    assert {c.argv[-2] for c in rows if "weight" in c.id} >= {"--student", "--teacher", "--model"}


# -----------------------------------------------------------------------------
# Weights that overflow in the dtype they are loaded in: refused where the model loads


def test_weights_that_overflow_in_the_loaded_dtype_are_refused_by_name(shared, tmp_path):
    """A float32 weight of 1e6 is finite on disk, so the folder passes load_tokenizer's check, but
    it is inf in float16: models.load refuses the loaded model, naming the folder and the tensor."""
    P = dict(shared)
    weight_set_to(1e6)(tmp_path, P)
    models.load_tokenizer(P["bad_model"])
    with pytest.raises(errors.UserError) as e:
        models.load(P["bad_model"], device="cpu", dtype=torch.float16)
    assert P["bad_model"] in str(e.value) and TENSOR in str(e.value) and "float16" in str(e.value)
    models.load(P["bad_model"], device="cpu", dtype=torch.float32)  # finite in float32


# -----------------------------------------------------------------------------
# A temperature so small that logits / temperature overflows: the sampler draws the argmax


def argmax_of(logits) -> list:
    """Each row's index of its largest value, in plain Python (the reference, not torch.argmax)."""
    return [max(range(len(row)), key=row.__getitem__) for row in logits.tolist()]


@pytest.mark.parametrize("temperature", [1e-30, 1e-37, 1e-38, 1e-45, 5e-324])
@pytest.mark.parametrize("top_k,top_p", [(0, 1.0), (5, 1.0), (0, 0.9)])
def test_sampler_at_a_tiny_temperature_draws_the_argmax(temperature, top_k, top_p):
    logits = 20 * torch.randn(64, 300, generator=torch.Generator().manual_seed(1))
    if temperature < 1e-36:  # logits / temperature overflows to inf, and inf - inf is NaN
        assert not torch.isfinite(logits / temperature - (logits / temperature).amax(-1, keepdim=True)).all()
    tokens, logp_s = rollout.sample(logits, temperature, top_k, top_p, torch.Generator().manual_seed(2))
    assert tokens.tolist() == argmax_of(logits)
    assert (logp_s == 0).all()  # a point mass on the argmax


def test_sampler_never_indexes_past_the_vocabulary_with_non_finite_logits():
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0))
    logits[0, 3], logits[1, 7], logits[2] = float("nan"), float("inf"), float("-inf")
    for temperature, top_k, top_p in ((1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 5, 0.9)):
        tokens, logp_s = rollout.sample(logits, temperature, top_k, top_p, torch.Generator().manual_seed(3))
        assert ((tokens >= 0) & (tokens < 50)).all()
        assert logp_s[:3].isnan().all() and logp_s[3].isfinite()


@pytest.mark.parametrize("temperature", [0.0, 1.0, 0.7])
def test_sampler_refuses_a_model_whose_logits_are_not_finite_by_name(temperature):
    model = models.build_tiny(seed=2)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight[0, 0] = float("nan")
    tok = models.tiny_tokenizer()
    with pytest.raises(errors.UserError, match=r"response token 0 of prompt 0 are not finite"):
        rollout.generate(
            model,
            [tok.chat_prompt("1+1?")] * 2,
            4,
            temperature=temperature,
            eos_token_ids=tok.eos_token_ids,
            pad_token_id=tok.pad_token_id,
            generator=torch.Generator().manual_seed(0),
        )


def eval_responses(shared, tmp_path, temperature) -> list:
    P = case_placeholders(shared, tmp_path / f"T={temperature}")
    argv = [a.format(**P) for a in EVAL + ["--temperature", temperature]]
    errors.run(eval_cli.main, argv)
    lines = (pathlib.Path(P["out"]) / "synthetic.jsonl").read_text().splitlines()
    return [json.loads(line)["response"] for line in lines]


@pytest.mark.parametrize("temperature", ["1e-30", "1e-50"])
def test_tiny_temperature_evaluates_as_greedy(shared, tmp_path, temperature):
    """eval_math.py --temperature 1e-30 (the logits divided, after their maximum) and 1e-50 (below
    float32's smallest normal number: greedy) write the greedy run's responses."""
    assert eval_responses(shared, tmp_path, temperature) == eval_responses(shared, tmp_path, "0")


def test_tiny_temperature_trains(shared, tmp_path):
    """train_opd.py --temperature 1e-50 samples its rollouts as greedy and finishes its steps."""
    import train_opd

    P = case_placeholders(shared, tmp_path)
    argv = [a.format(**P) for a in OPD + ["--steps", "1", "--temperature", "1e-50"]]
    errors.run(train_opd.main, argv)
    assert (pathlib.Path(P["out"]) / "summary.json").is_file()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float8_e5m2])
def test_all_finite_finds_one_nan_or_inf_anywhere(dtype):
    """model_files.all_finite against torch.isfinite, with one bad value at each position of tensors
    of lengths around the vector widths."""
    assert model_files.all_finite(torch.zeros(0, dtype=dtype))
    for n in (1, 7, 16, 33, 1000):
        good = torch.randn(n).to(dtype)
        assert model_files.all_finite(good)
        for value in (float("nan"), float("inf"), float("-inf")):
            for i in {0, n // 2, n - 1}:
                bad = good.clone()
                bad[i] = value
                assert not bool(torch.isfinite(bad.float()).all()) and not model_files.all_finite(bad)
