"""Students, teachers and their tokenizers: transformers checkpoints and the built-in tiny models.

What this file is
    Everything the rest of the project needs to know about a model, in plain functions:
    `load()` a student or teacher (a hub id or a local folder in transformers format: Llama,
    Qwen2/2.5 and Qwen3 causal LMs; or a folder of LoRA adapters in PEFT's layout, read as its
    base with the adapters merged in, `load_adapters`; `resolve()` finds the shipped
    `tiny/student` and its kin from any directory, and a missing folder is refused before the hub
    is asked; a folder whose JSON files lack what the libraries need, or whose weights hold NaN or
    inf, is refused by file and key: model_files.py), `save()` one, build the built-in tiny Qwen3
    models (`tiny_config()`, `build_tiny()`), one small `Tokenizer` over both a transformers tokenizer and the built-in
    byte-level tiktoken encoding, the chat prompt (`Tokenizer.chat_prompt`), and
    `check_compatible()` for a student/teacher pair (OPD compares their distributions token by
    token, so they must share one vocabulary).

Paper
    docs/paper.md §2.2 (models): the student is Qwen3-1.7B, the teacher Qwen3-8B (or a GRPO-adapted Qwen3-1.7B),
    both in the non-thinking chat format, i.e. `apply_chat_template(..., enable_thinking=False)`,
    which ends the generation prompt with an empty `<think>\\n\\n</think>\\n\\n` block.

Command
    Nothing to run here; `pytest -q tests/test_models.py` checks it (CPU, seconds).

The built-in tiny tokenizer (byte level, tiktoken)
    ids 0-255 are the bytes; then the special ids below. The chat format mirrors Qwen3's
    non-thinking template exactly, empty think block included (it costs 6 tokens a prompt and
    keeps the tiny world one code path with the paper's):

        <|im_start|>system\\n{system}<|im_end|>\\n          (only when a system text is given)
        <|im_start|>user\\n{user}<|im_end|>\\n
        <|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n    <- generation starts after this

    EOS = `<|im_end|>` (end of turn) and `<|endoftext|>`; pad = `<|endoftext|>`.
    `save()` writes a small marker file `tiny_tokenizer.json` beside the weights instead of a
    transformers tokenizer; `load()` sees it and rebuilds the tokenizer from this file.

What it simplifies
    * `Tokenizer.encode()` of the tiny tokenizer never turns text such as "<|im_end|>" into a
      special id (it stays bytes); a transformers tokenizer does (its own behaviour). Special ids
      are inserted only by `chat_prompt()`.
    * One tokenizer per model; no multimodal processors; causal LMs only.
"""

import json
import os

import tiktoken
import torch
import transformers

import lora
import model_files
from errors import UserError

# ----------------------------------------------------------------------------------------------
# Devices and dtypes
# ----------------------------------------------------------------------------------------------


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device) -> torch.dtype:
    """bf16 on CUDA (what the paper's runs use), fp32 elsewhere (CPU bf16 matmuls are slow)."""
    device = torch.device(device)
    return torch.bfloat16 if device.type == "cuda" else torch.float32


# ----------------------------------------------------------------------------------------------
# The tokenizer interface
# ----------------------------------------------------------------------------------------------

TINY_NAME = "tiny-byte"
TINY_MARKER = "tiny_tokenizer.json"  # written by save() beside a tiny model's weights
TINY_SPECIALS = {  # id -> text; ids after the 256 bytes
    256: "<|endoftext|>",
    257: "<|im_start|>",
    258: "<|im_end|>",
    259: "<think>",
    260: "</think>",
}
# Qwen3 marks <think> / </think> as added but not special: decode(skip_special=True) keeps them.
TINY_SKIPPED = {256, 257, 258}


class Tokenizer:
    """One small interface over a transformers tokenizer (`hf`) or the tiny tiktoken encoding.

    encode(text) -> ids (no special tokens added); decode(ids, skip_special=True) -> text;
    chat_prompt(user, system=None) -> ids of the whole prompt up to and including the assistant
    header (generation starts after it); eos_token_ids; pad_token_id; vocab_size (how many ids
    the tokenizer can produce, which can be fewer than the model's embedding rows); name.
    """

    def __init__(self, name, *, hf=None, enc=None, eos_token_ids, pad_token_id):
        if (hf is None) == (enc is None):
            raise ValueError(
                "Tokenizer needs exactly one backend: hf=<transformers tokenizer> or enc=<tiktoken.Encoding>"
            )
        self.name = name
        self.hf = hf
        self.enc = enc
        self.eos_token_ids = list(dict.fromkeys(int(i) for i in eos_token_ids))
        self.pad_token_id = int(pad_token_id)
        self.vocab_size = len(hf) if hf is not None else enc.n_vocab

    def __repr__(self):
        return (
            f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, eos={self.eos_token_ids}, "
            f"pad={self.pad_token_id})"
        )

    @property
    def is_tiny(self) -> bool:
        return self.enc is not None

    def encode(self, text: str) -> list[int]:
        if self.enc is not None:
            return self.enc.encode_ordinary(text)
        return self.hf.encode(text, add_special_tokens=False)

    def decode(self, ids, skip_special: bool = True) -> str:
        ids = [int(i) for i in ids]
        if self.enc is not None:
            # ids past the vocabulary (padded embedding rows) decode to nothing, as in transformers
            ids = [i for i in ids if i < self.vocab_size and not (skip_special and i in TINY_SKIPPED)]
            return self.enc.decode_bytes(ids).decode("utf-8", errors="replace")
        return self.hf.decode(ids, skip_special_tokens=skip_special)

    def chat_prompt(self, user: str, system: str | None = None) -> list[int]:
        """Prompt ids up to and including the assistant header (non-thinking mode for Qwen3)."""
        if self.enc is not None:
            s = TINY_IDS
            ids = []
            if system is not None:
                ids += (
                    [s["<|im_start|>"]]
                    + self.encode("system\n" + system)
                    + [s["<|im_end|>"]]
                    + self.encode("\n")
                )
            ids += [s["<|im_start|>"]] + self.encode("user\n" + user) + [s["<|im_end|>"]] + self.encode("\n")
            ids += [s["<|im_start|>"]] + self.encode("assistant\n")
            ids += [s["<think>"]] + self.encode("\n\n") + [s["</think>"]] + self.encode("\n\n")
            return ids
        if not self.hf.chat_template:
            raise UserError(
                f"tokenizer {self.name!r} has no chat template; OPD prompts use the chat format. "
                "Load an instruct/chat checkpoint or put a chat_template into its tokenizer_config.json"
            )
        messages = ([{"role": "system", "content": system}] if system is not None else []) + [
            {"role": "user", "content": user}
        ]
        # Render to text, then encode without adding BOS: templates that want BOS (Llama 3) write it.
        # enable_thinking=False is Qwen3's non-thinking mode; other templates ignore the flag.
        text = self.hf.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
        return self.hf.encode(text, add_special_tokens=False)

    def id_to_token(self) -> list:
        """The vocabulary as a list indexed by id: token strings (transformers) or bytes (tiny); None for holes."""
        if self.enc is not None:
            return [self.enc.decode_single_token_bytes(i) for i in range(self.vocab_size)]
        table = [None] * self.vocab_size
        for token, i in self.hf.get_vocab().items():
            if i < self.vocab_size:
                table[i] = token
        return table

    def special_ids(self) -> set[int]:
        if self.enc is not None:
            return set(TINY_SKIPPED)
        return {int(i) for i in self.hf.all_special_ids}


TINY_IDS = {text: i for i, text in TINY_SPECIALS.items()}


def tiny_tokenizer() -> Tokenizer:
    """The built-in byte-level tokenizer: 256 byte ids + 5 special ids (see the file docstring)."""
    enc = tiktoken.Encoding(
        name=TINY_NAME,
        pat_str=r"[\s\S]",  # must match every character, or tiktoken silently drops text
        mergeable_ranks={bytes([b]): b for b in range(256)},  # no merges: one id per byte
        special_tokens={text: i for i, text in TINY_SPECIALS.items()},
    )
    return Tokenizer(
        TINY_NAME,
        enc=enc,
        eos_token_ids=[TINY_IDS["<|im_end|>"], TINY_IDS["<|endoftext|>"]],
        pad_token_id=TINY_IDS["<|endoftext|>"],
    )


def hf_tokenizer(hf, eos_token_ids=()) -> Tokenizer:
    """Wrap a transformers tokenizer. EOS = the tokenizer's eos, the ids given (e.g. the model's
    generation_config), and the chat end-of-turn token when the chat template writes it."""
    eos = [i for i in eos_token_ids if i is not None]
    if hf.eos_token_id is not None:
        eos.append(hf.eos_token_id)
    template = hf.chat_template if isinstance(hf.chat_template, str) else ""
    for end_of_turn in ("<|im_end|>", "<|eot_id|>", "<|end_of_turn|>"):
        i = hf.convert_tokens_to_ids(end_of_turn)
        if end_of_turn in template and isinstance(i, int) and i != hf.unk_token_id:
            eos.append(i)
    if not eos:
        raise UserError(
            f"tokenizer {hf.name_or_path!r} defines no EOS token; set eos_token in its tokenizer_config.json"
        )
    pad = hf.pad_token_id if hf.pad_token_id is not None else eos[0]
    return Tokenizer(hf.name_or_path or type(hf).__name__, hf=hf, eos_token_ids=eos, pad_token_id=pad)


# ----------------------------------------------------------------------------------------------
# The built-in tiny models (Qwen3 architecture, random init; train_sft.py trains them)
# ----------------------------------------------------------------------------------------------


def tiny_config(**overrides) -> transformers.Qwen3Config:
    """A small Qwen3 config over the tiny tokenizer's vocabulary. Every shape is passed explicitly:
    Qwen3Config's defaults (head_dim=128, 32 KV heads, untied embeddings) are for large models."""
    tok_ids = TINY_IDS
    args = dict(
        vocab_size=len(TINY_SPECIALS) + 256,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=True,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        bos_token_id=None,
        eos_token_id=[tok_ids["<|im_end|>"], tok_ids["<|endoftext|>"]],
        pad_token_id=None,  # a config pad id would become nn.Embedding's padding_idx (a zero, frozen row)
    )
    args.update(overrides)
    return transformers.Qwen3Config(**args)


def build_tiny(seed: int = 0, **overrides) -> transformers.Qwen3ForCausalLM:
    """A random-init tiny Qwen3 (fp32, eval mode), reproducible from `seed`; overrides go to tiny_config."""
    config = tiny_config(**overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = TINY_IDS["<|endoftext|>"]
    return model.eval()


# ----------------------------------------------------------------------------------------------
# Loading and saving checkpoints (transformers format)
# ----------------------------------------------------------------------------------------------


# The repository's own folder, and its folders of shipped models: `tiny/student` names the same
# model from any working directory.
ROOT = os.path.dirname(os.path.abspath(__file__))
SHIPPED = ("tiny", "tiny2")


def _parts(s: str) -> list:
    """The components of a path as written, split at "/" and at the platform's separator."""
    return s.replace(os.sep, "/").split("/")


def resolve(name_or_path: str) -> str:
    """The path or hub id that `name_or_path` stands for. A path that exists from the current
    directory is itself; a relative path under a shipped folder (`tiny/student`, `tiny2/teacher/`)
    that does not exist here is the repository's copy, so a script run from another directory finds
    the shipped models; `~` is the home folder. Anything else comes back unchanged (check_source
    decides whether it is a missing folder or a hub id). `./tiny/student` means this directory
    only and is never redirected."""
    s = os.path.expanduser(str(name_or_path))
    if os.path.exists(s) or os.path.isabs(s):
        return s
    if _parts(s)[0] in SHIPPED:
        there = os.path.join(ROOT, s)
        if os.path.exists(there):
            return there
    return s


def _looks_local(s: str) -> bool:
    """Whether a name that exists nowhere can only have meant a folder: it starts with ".", "/"
    or "~", uses a backslash, ends with a separator, has more than one component, or its first
    component is a folder (here, or a shipped folder of the repository). A hub id is `org/name`
    or a bare name, such as Qwen/Qwen3-1.7B or gpt2."""
    parts = _parts(s)
    return (
        s.startswith((".", "/", "~"))
        or os.path.isabs(s)
        or "\\" in s
        or s.endswith(("/", os.sep))
        or len(parts) > 2
        or (len(parts) == 2 and (parts[0] in SHIPPED or os.path.isdir(parts[0])))
    )


def check_source(name_or_path: str) -> str:
    """ "local" for a model folder, "hub" for what can only be a hub id; a UserError for a path
    that holds no model, before anything loads (a mistyped folder would otherwise be tried on
    the hub, with a misleading "repo id" error or half a minute of network retries). A folder's JSON
    files and its weights' headers are checked here (`model_files.check_json_files`). The name is read as
    `resolve()` reads it."""
    s = resolve(name_or_path)
    if os.path.exists(s):
        if not os.path.isdir(s):
            raise UserError(f"{s}: a file, not a model folder; pass the folder that holds config.json")
        if lora.is_adapter_folder(s):  # adapters on a base model (load reads them merged)
            return "local"
        if not os.path.isfile(os.path.join(s, "config.json")):
            raise UserError(
                f"{s}: no config.json in this folder, so no model in transformers format; pass a folder "
                "written by save_pretrained (a run's ckpt/ or final/), or a hub id"
            )
        model_files.check_json_files(s)
        # the weights' headers (cheap): a truncated download ends here, not later
        for f in sorted(os.listdir(s)):
            if f.endswith(".safetensors"):
                model_files.library_call(s, "weights", model_files.read_header, os.path.join(s, f))
        return "local"
    if _looks_local(s):
        where = "" if os.path.isabs(s) else f" in {os.getcwd()}"
        if _parts(s)[0] in SHIPPED:
            where += f" or in the repository {ROOT}"
        raise UserError(
            f"{name_or_path}: does not exist{where}; pass an existing model folder, or a hub id such "
            "as Qwen/Qwen3-1.7B"
        )
    return "hub"


def load_tokenizer(name_or_path: str) -> tuple:
    """(Tokenizer, context length or None) of a model folder or hub id without building the model:
    enough to check every prompt against the context before the weights load. A local folder's
    weights are read once here, tensor by tensor, so that one holding NaN or inf is refused before
    anything is written (`model_files.check_weights_finite`); an adapter folder's adapters likewise."""
    name_or_path = resolve(name_or_path)
    kind = check_source(name_or_path)
    if lora.is_adapter_folder(name_or_path):  # adapters keep their base's tokenizer and context
        cfg, _ = lora.read(name_or_path)  # its config and tensors checked (finite ones) before any use
        return load_tokenizer(cfg["base_model_name_or_path"])
    if kind == "local":  # this reads the weights once: a NaN is refused before any run folder is made
        model_files.check_weights_finite(name_or_path)
    config = model_files.library_call(
        name_or_path, "config", transformers.AutoConfig.from_pretrained, name_or_path
    )
    if kind == "local" and os.path.isfile(os.path.join(str(name_or_path), TINY_MARKER)):
        tok = _tiny_from_marker(os.path.join(str(name_or_path), TINY_MARKER))
    else:
        try:
            gen = transformers.GenerationConfig.from_pretrained(name_or_path)
        except OSError:  # no generation_config.json: the model config's EOS
            gen = transformers.GenerationConfig.from_model_config(config)
        tok = _hf_tokenizer_of(name_or_path, gen.eos_token_id)
    return tok, getattr(config, "max_position_embeddings", None)


def _tiny_from_marker(marker: str) -> "Tokenizer":
    saved = model_files.read_json_file(marker)
    specials = saved.get("special_tokens")
    try:
        specials = {int(k): v for k, v in specials.items()}
    except (AttributeError, TypeError, ValueError):
        raise UserError(
            f"{marker}: special_tokens is {saved.get('special_tokens')!r}, not an object of ids and texts; "
            "save the model again (models.save writes this file)"
        ) from None
    if specials != TINY_SPECIALS:
        raise UserError(
            f"{marker} lists special tokens {saved['special_tokens']}, but this models.py builds "
            f"{TINY_SPECIALS}; the checkpoint was made by another version of the tiny tokenizer"
        )
    return tiny_tokenizer()


def _hf_tokenizer_of(name_or_path: str, gen_eos) -> "Tokenizer":
    gen_eos = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    hf = model_files.library_call(
        name_or_path, "tokenizer", transformers.AutoTokenizer.from_pretrained, name_or_path
    )
    return hf_tokenizer(hf, gen_eos)


def load(name_or_path: str, device=None, dtype=None):
    """(model, Tokenizer) from a hub id or a local folder in transformers format.

    A folder written by `save()` for a tiny model carries `tiny_tokenizer.json` and gets the
    built-in tokenizer; everything else goes through AutoTokenizer/AutoModelForCausalLM, the
    path a hub id takes. Device and dtype default to the hardware (bf16 on CUDA, fp32 on CPU).
    The model comes back in eval mode. A checkpoint that lacks a weight of its architecture is
    refused (transformers would fill it with random values and say so only in a log line).
    The name is read as `resolve()` reads it: `tiny/student` works from any directory. A folder of
    LoRA adapters in PEFT's layout (a LoRA run's ckpt/) loads as its base with the adapters merged
    in (`load_adapters`).
    """
    name_or_path = resolve(name_or_path)
    kind = check_source(name_or_path)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype if dtype is not None else default_dtype(device)
    if lora.is_adapter_folder(name_or_path):
        return load_adapters(name_or_path, device, dtype)
    marker = os.path.join(str(name_or_path), TINY_MARKER)
    model, info = model_files.library_call(
        name_or_path,
        "weights",
        transformers.AutoModelForCausalLM.from_pretrained,
        name_or_path,
        dtype=dtype,
        output_loading_info=True,
    )
    broken = sorted(info["missing_keys"]) + sorted(str(k) for k in info["mismatched_keys"])
    if broken:
        raise UserError(
            f"{name_or_path}: the checkpoint lacks {len(broken)} weight(s) of its architecture or has them "
            f"in another shape (first: {broken[0]}); it is incomplete or belongs to another config"
        )
    model = model.to(device).eval()
    model_files.check_model_finite(name_or_path, model)
    if kind == "local" and os.path.isfile(marker):
        tok = _tiny_from_marker(marker)
    else:
        tok = _hf_tokenizer_of(name_or_path, model.generation_config.eos_token_id)
    if model.config.vocab_size < tok.vocab_size:
        raise UserError(
            f"{name_or_path}: the model has {model.config.vocab_size} embedding rows but its tokenizer "
            f"{tok.vocab_size} ids; the checkpoint's tokenizer does not belong to these weights"
        )
    return model, tok


def load_adapters(path: str, device, dtype) -> tuple:
    """(model, Tokenizer) of an adapter folder: its base (adapter_config.json's
    base_model_name_or_path, itself any name `load` takes) in float32, the adapters attached and
    merged (W + (α/R) B A), then cast to `dtype`: a plain model, trainable as one loaded from a
    folder of whole weights."""
    cfg, tensors = lora.read(path)
    model, tok = load(cfg["base_model_name_or_path"], device=device, dtype=torch.float32)
    lora.attach(model, cfg["r"], cfg["lora_alpha"], cfg["target_modules"])
    lora.load_tensors(model, tensors, where=path)
    lora.merge(model).requires_grad_(True)
    model = model.to(dtype).eval()
    model_files.check_model_finite(path, model)  # the merged weights, in the dtype asked for
    return model, tok


def saved_name(name_or_path: str) -> str:
    """How a file written for later names a model: a hub id or a shipped model (`tiny/student`)
    as given, any other folder by its absolute path (found again from any directory)."""
    s = os.path.expanduser(str(name_or_path))
    shipped = not os.path.isabs(s) and _parts(s)[0] in SHIPPED
    return os.path.abspath(s) if os.path.exists(s) and not shipped else str(name_or_path)


def save(model, tok: Tokenizer, path: str, state_dict=None) -> None:
    """Save weights + config (safetensors, transformers format) and the tokenizer into `path`.
    The tiny tokenizer is saved as the marker file `tiny_tokenizer.json` (see the docstring).
    `state_dict` replaces the model's own (the full weights of a sharded model)."""
    os.makedirs(path, exist_ok=True)
    model.save_pretrained(path, state_dict=state_dict)
    if tok.is_tiny:
        with open(os.path.join(path, TINY_MARKER), "w") as f:
            json.dump({"tokenizer": TINY_NAME, "byte_ids": 256, "special_tokens": TINY_SPECIALS}, f, indent=1)
    else:
        tok.hf.save_pretrained(path)


# ----------------------------------------------------------------------------------------------
# Student/teacher compatibility
# ----------------------------------------------------------------------------------------------


def _split(x):
    """Accept a Tokenizer or a (model, Tokenizer) pair; return (rows of the output layer or None, tok)."""
    if isinstance(x, Tokenizer):
        return None, x
    model, tok = x
    return model.get_output_embeddings().weight.shape[0], tok


def check_compatible(student, teacher) -> str:
    """Check that student and teacher share one vocabulary; return a one-line report, or raise.

    `student`/`teacher` are Tokenizers or (model, Tokenizer) pairs. Compared: the token behind
    every id (content, not only the count), the special ids, the EOS ids, and (as a note only) the
    chat prompt. With models, their output layers may have extra rows that no token maps to
    (Qwen2.5-1.5B has 151,936 rows, Qwen2.5-7B 152,064, for 151,665 tokens): that is allowed, and
    the report says to compare logits on the first `vocab_size` columns only.
    """
    rows_s, tok_s = _split(student)
    rows_t, tok_t = _split(teacher)
    if tok_s.is_tiny != tok_t.is_tiny:
        kinds = [
            "the built-in tiny tokenizer" if t.is_tiny else f"transformers tokenizer {t.name!r}"
            for t in (tok_s, tok_t)
        ]
        raise UserError(f"student uses {kinds[0]} and teacher {kinds[1]}; OPD needs one vocabulary")
    table_s, table_t = tok_s.id_to_token(), tok_t.id_to_token()
    n = min(len(table_s), len(table_t))
    differ = [i for i in range(n) if table_s[i] != table_t[i]]
    if differ:
        i = differ[0]
        raise UserError(
            f"teacher and student tokenizers differ at {len(differ):,} of {n:,} ids "
            f"(first: {i} {table_s[i]!r} in the student vs {table_t[i]!r} in the teacher); OPD needs one vocabulary"
        )
    if len(table_s) != len(table_t):
        longer, who = (table_s, "student") if len(table_s) > len(table_t) else (table_t, "teacher")
        raise UserError(
            f"student tokenizer has {len(table_s):,} ids, teacher {len(table_t):,}; the {who} has extra ids "
            f"from {n} on (first: {n} {longer[n]!r}); OPD needs one vocabulary"
        )
    if tok_s.special_ids() != tok_t.special_ids():
        only = sorted(tok_s.special_ids() ^ tok_t.special_ids())
        raise UserError(
            f"the tokenizers mark different special tokens (first differing id: {only[0]} {table_s[only[0]]!r}); "
            "OPD needs one vocabulary"
        )
    if set(tok_s.eos_token_ids) != set(tok_t.eos_token_ids):
        raise UserError(
            f"student EOS ids {tok_s.eos_token_ids} differ from the teacher's {tok_t.eos_token_ids}; "
            "the teacher would score the end of a response differently from how the student ends it"
        )
    report = (
        f"one vocabulary: {n:,} ids with identical tokens, special tokens and EOS ids {tok_s.eos_token_ids}"
    )
    for rows, who in ((rows_s, "student"), (rows_t, "teacher")):
        if rows is not None and rows < n:
            raise UserError(
                f"the {who} model's output layer has {rows:,} rows for {n:,} token ids; the checkpoint is broken"
            )
    if rows_s is not None and rows_t is not None and (rows_s != n or rows_t != n):
        report += (
            f"; output layers have {rows_s:,} (student) and {rows_t:,} (teacher) rows: rows from id {n:,} on map "
            f"to no token (embedding padding) and are ignored, compare logits on [..., :{n}]"
        )
    probe_s, probe_t = tok_s.chat_prompt("1+1=?"), tok_t.chat_prompt("1+1=?")
    if probe_s != probe_t:
        report += (
            "; note: the chat templates render the same message differently (the student's prompt is used "
            "for both)"
        )
    return report
