"""Tests for models.py: the tiny tokenizer and chat format, checkpoints, student/teacher checks.

Command: `pytest -q tests/test_models.py` (CPU, about 3 s on one thread, offline).

The independent references: UTF-8 bytes for the byte-level tokenizer, a literal ChatML string for
the chat format, and a transformers tokenizer built here with the `tokenizers` library (byte-level
BPE without merges, the same id layout, a Qwen3-style chat template written as Jinja) saved with
transformers' own `save_pretrained`: a hub-style folder that `models.load` must read the way it
reads a hub id, and whose chat prompt must equal the tiny tokenizer's, id for id.
"""

import json
import os

import pytest
import torch
import transformers
from tokenizers import AddedToken, decoders, pre_tokenizers
from tokenizers import Tokenizer as RawTokenizer
from tokenizers import models as tk_models

import models

TEXT = "Héllo, 世界! 12+3=15 so \\boxed{15}.\n\tÅ ∑ 🙂"
SYSTEM, USER = "You are a careful solver.", "What is 7*6? Put the answer in \\boxed{}."

# Qwen3's non-thinking generation prompt, as the template renders it (our own Jinja, same output).
QWEN3_STYLE_TEMPLATE = r"""{%- for m in messages -%}
{{- '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}{%- endif -%}
{%- endif -%}"""


def byte_to_unicode():
    """GPT-2's printable stand-in character for each byte (what byte-level BPE vocabularies store)."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def hf_byte_tokenizer(swap=None, extra_token=None):
    """A transformers tokenizer with the tiny tokenizer's id layout: byte b -> id b, then
    <|endoftext|>, <|im_start|>, <|im_end|> (special), <think>, </think> (added, not special).
    swap=(a, b) exchanges two byte ids; extra_token adds one more id at the end."""
    chars = byte_to_unicode()
    vocab = {chars[b]: b for b in range(256)}
    if swap:
        a, b = swap
        vocab[chars[a]], vocab[chars[b]] = b, a
    raw = RawTokenizer(tk_models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
        ]
    )
    raw.add_tokens([AddedToken(t, special=False, normalized=False) for t in ("<think>", "</think>")])
    if extra_token:
        raw.add_tokens([AddedToken(extra_token, special=False, normalized=False)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=QWEN3_STYLE_TEMPLATE,
    )


def randomised(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(
                1 + 0.3 * torch.randn_like(p) if name.endswith("norm.weight") else 0.2 * torch.randn_like(p)
            )
    return model


# ---- the tiny tokenizer ----------------------------------------------------------------------


def test_tiny_tokenizer_is_utf8_bytes():
    tok = models.tiny_tokenizer()
    assert tok.encode(TEXT) == list(TEXT.encode("utf-8"))
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.vocab_size == 261 and tok.pad_token_id == 256
    assert tok.eos_token_ids == [258, 256]  # <|im_end|>, <|endoftext|>
    # special-token text typed by a user stays bytes: no injected end of turn
    assert tok.encode("<|im_end|>") == list(b"<|im_end|>")


def test_tiny_chat_prompt_is_qwen3_non_thinking_chatml():
    tok = models.tiny_tokenizer()
    ids = tok.chat_prompt(USER, system=SYSTEM)
    expected = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{USER}<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    assert tok.decode(ids, skip_special=False) == expected
    assert ids.count(257) == 3 and ids.count(258) == 2 and ids.count(259) == 1 and ids.count(260) == 1
    no_system = tok.decode(tok.chat_prompt(USER), skip_special=False)
    assert no_system == f"<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    # skip_special drops the ChatML markers but, as Qwen3 does, keeps the think tags
    assert tok.decode(ids) == f"system\n{SYSTEM}\nuser\n{USER}\nassistant\n<think>\n\n</think>\n\n"


def test_build_tiny_matches_its_tokenizer_and_seed():
    tok = models.tiny_tokenizer()
    a, b, c = models.build_tiny(seed=0), models.build_tiny(seed=0), models.build_tiny(seed=1)
    assert isinstance(a, transformers.Qwen3ForCausalLM) and not a.training
    assert (
        a.config.vocab_size == tok.vocab_size
        and a.config.head_dim == 32
        and a.config.num_key_value_heads == 2
    )
    ids = torch.tensor([tok.chat_prompt(USER)])
    with torch.no_grad():
        la, lb, lc = a(ids).logits, b(ids).logits, c(ids).logits
    assert la.shape == (1, ids.shape[1], 261)
    assert torch.equal(la, lb) and not torch.allclose(la, lc)
    big = models.build_tiny(num_hidden_layers=4, hidden_size=192, head_dim=48)
    assert big.config.num_hidden_layers == 4 and big.model.layers[0].self_attn.q_proj.out_features == 4 * 48


def test_default_device_and_dtype():
    assert models.default_dtype("cpu") == torch.float32
    assert models.default_dtype(torch.device("cuda")) == torch.bfloat16
    assert models.default_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


# ---- checkpoints -----------------------------------------------------------------------------


def test_hub_style_checkpoint_loads_like_a_hub_id(tmp_path):
    """A folder written by transformers itself (config, safetensors, tokenizer, chat template)."""
    model = randomised(models.build_tiny(seed=2))
    model.save_pretrained(tmp_path)
    hf_byte_tokenizer().save_pretrained(tmp_path)
    assert os.path.isfile(tmp_path / "tokenizer_config.json") and not os.path.exists(
        tmp_path / models.TINY_MARKER
    )
    loaded, tok = models.load(str(tmp_path))
    assert not tok.is_tiny and not loaded.training
    assert next(loaded.parameters()).dtype == torch.float32 and next(loaded.parameters()).device.type == "cpu"
    tiny = models.tiny_tokenizer()
    # two independent implementations of one vocabulary and one chat format agree id for id
    assert tok.chat_prompt(USER, system=SYSTEM) == tiny.chat_prompt(USER, system=SYSTEM)
    assert tok.chat_prompt(USER) == tiny.chat_prompt(USER)
    assert tok.encode(TEXT) == tiny.encode(TEXT)
    assert tok.decode(tiny.chat_prompt(USER)) == tiny.decode(tiny.chat_prompt(USER))
    assert 258 in tok.eos_token_ids and tok.pad_token_id == 256 and tok.vocab_size == 261
    ids = torch.tensor([tiny.chat_prompt(USER)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)
    models.check_compatible((model, tiny), (loaded, models.tiny_tokenizer()))


def test_save_and_load_tiny_roundtrip(tmp_path):
    model, tiny = randomised(models.build_tiny(seed=3)), models.tiny_tokenizer()
    models.save(model, tiny, str(tmp_path))
    with open(tmp_path / models.TINY_MARKER) as f:
        assert json.load(f)["tokenizer"] == models.TINY_NAME
    loaded, tok = models.load(str(tmp_path), dtype=torch.float64)
    assert tok.is_tiny and tok.chat_prompt(USER) == tiny.chat_prompt(USER)
    assert next(loaded.parameters()).dtype == torch.float64
    ids = torch.tensor([tiny.chat_prompt(USER)])
    with torch.no_grad():
        # fp64 vs fp32
        torch.testing.assert_close(loaded(ids).logits.float(), model(ids).logits, rtol=1e-4, atol=1e-4)


def test_chat_prompt_without_template_is_a_clear_error():
    hf = hf_byte_tokenizer()
    hf.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        models.hf_tokenizer(hf).chat_prompt(USER)


# ---- student/teacher compatibility -----------------------------------------------------------


def test_check_compatible_accepts_one_vocabulary_and_padded_rows():
    tok = models.hf_tokenizer(hf_byte_tokenizer())
    report = models.check_compatible(tok, models.hf_tokenizer(hf_byte_tokenizer()))
    assert "261" in report
    student, teacher = models.build_tiny(), models.build_tiny(vocab_size=264)  # 3 padded rows
    report = models.check_compatible((student, models.tiny_tokenizer()), (teacher, models.tiny_tokenizer()))
    assert "264" in report and "padding" in report and "[..., :261]" in report


def test_check_compatible_rejects_swapped_ids_with_their_strings():
    good = models.hf_tokenizer(hf_byte_tokenizer())
    bad = models.hf_tokenizer(hf_byte_tokenizer(swap=(ord("a"), ord("b"))))
    with pytest.raises(
        ValueError, match=r"differ at 2 of 261 ids \(first: 97 'a' in the student vs 'b' in the teacher\)"
    ):
        models.check_compatible(good, bad)


def test_check_compatible_rejects_other_mismatches():
    good = models.hf_tokenizer(hf_byte_tokenizer())
    with pytest.raises(ValueError, match=r"teacher 262.*first: 261 '<tool>'"):
        models.check_compatible(good, models.hf_tokenizer(hf_byte_tokenizer(extra_token="<tool>")))
    with pytest.raises(ValueError, match="EOS ids"):
        models.check_compatible(good, models.hf_tokenizer(hf_byte_tokenizer(), eos_token_ids=[256]))
    with pytest.raises(ValueError, match="one vocabulary"):
        models.check_compatible(models.tiny_tokenizer(), good)
    with pytest.raises(ValueError, match="output layer has 200 rows"):
        models.check_compatible(
            (models.build_tiny(), models.tiny_tokenizer()),
            (models.build_tiny(vocab_size=200), models.tiny_tokenizer()),
        )


# ---- names: shipped folders from any directory, missing folders, hub ids ----------------------


def no_library_loads(monkeypatch):
    """Make every transformers loader fail the test if called: a refused name reaches none of them,
    so neither the hub nor the network is asked."""

    def called(*args, **kwargs):
        raise AssertionError(f"a transformers loader was called with {args}")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
        monkeypatch.setattr(cls, "from_pretrained", called)
    monkeypatch.setattr(transformers.GenerationConfig, "from_pretrained", called)


def test_shipped_models_resolve_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    root = os.path.dirname(os.path.abspath(models.__file__))
    assert models.resolve("tiny/student") == os.path.join(root, "tiny", "student")
    assert models.resolve("tiny2/teacher/") == os.path.join(root, "tiny2", "teacher/")
    assert models.check_source("tiny/student") == "local"
    tok, context = models.load_tokenizer("tiny/teacher")  # the shipped config, read offline
    assert tok.is_tiny and context == 2048
    # hub ids and absolute paths come back unchanged
    for name in ("Qwen/Qwen3-1.7B", "gpt2", str(tmp_path)):
        assert models.resolve(name) == name
    assert models.check_source("Qwen/Qwen3-1.7B") == "hub" and models.check_source("gpt2") == "hub"
    # a folder of the same name in the current directory comes first
    here = tmp_path / "tiny" / "student"
    here.mkdir(parents=True)
    assert models.resolve("tiny/student") == "tiny/student"


@pytest.mark.parametrize(
    "name",
    [
        "./no/such/dir",
        "no/such/dir",
        "tiny/studnt",  # a typo under a shipped folder: not the hub org "tiny"
        "tiny2/teacher/nope",
        "./tiny/student",  # "./" means this directory only, and tiny/ is not here
        "{tmp}/gone",
        "runs/ckpt",  # runs/ exists here
        "Qwen/",
        "~/no-such-model-folder",
        "models\\student",
    ],
)
def test_missing_local_path_is_refused_before_any_network(name, tmp_path, monkeypatch):
    no_library_loads(monkeypatch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    name = name.format(tmp=tmp_path)
    for fn in (models.check_source, models.load_tokenizer, models.load):
        with pytest.raises(models.UserError, match="does not exist") as e:
            fn(name)
        assert str(e.value).split(": does not exist")[0] in (name, os.path.expanduser(name))
    if name.startswith("tiny"):
        assert "or in the repository" in str(e.value)


def test_hub_failure_blames_the_hub_not_the_files(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", offline)
    with pytest.raises(models.UserError, match="check the hub id and the network") as e:
        models.load_tokenizer("someone/some-model")
    assert "corrupt" not in str(e.value)
