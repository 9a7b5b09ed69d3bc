"""What a model folder must hold before it loads: JSON files with the keys the libraries need,
weights whose headers read and whose values are finite; and the one wrapper that turns a library's
failure on a user's files or hub id into a message naming the model (`library_call`).

models.py calls these before and after loading, so that a cut download, a config without its
sizes or a checkpoint saved from a diverged run is refused by file and key, before anything is
written, rather than surfacing later as a KeyError inside transformers or a sampler that cannot
draw.
"""

import itertools
import json
import os

import safetensors
import torch
import transformers

from errors import UserError

# The JSON files of a model folder that are read (each must hold one JSON object), and the keys
# each must have: without them the libraries fail with a bare KeyError, or fill in a default that
# does not fit the weights (transformers' hidden_size 4096, vocab_size 151936, ...).
JSON_FILES = {
    "config.json": ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size"),
    "generation_config.json": (),
    "tokenizer.json": ("model", "added_tokens"),
    "tokenizer_config.json": (),
    "special_tokens_map.json": (),
    "tiny_tokenizer.json": ("special_tokens",),  # models.TINY_MARKER
}


def read_json_file(path: str) -> dict:
    """The object a model folder's JSON file holds; a UserError naming the file when it is cut short,
    not JSON, or holds something other than an object."""
    redo = "save or download the model again"
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(
            f"{path}: not valid JSON ({e.msg}: line {e.lineno}, column {e.colno}); the file is cut short "
            f"or corrupt: {redo}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: could not read it ({type(e).__name__}: {e}); {redo}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: holds a JSON {type(value).__name__}, not an object of settings; {redo}")
    return value


def check_json_files(folder: str) -> None:
    """Every JSON file of JSON_FILES in a model folder parses to an object with its required keys
    (a config's field may also be spelled as its model type's alias, GPT-2's n_embd for
    hidden_size), and config.json's sizes are positive integers; a UserError naming the file and
    the key otherwise."""
    for name, keys in JSON_FILES.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        found = read_json_file(path)
        aliases = _config_aliases(path, found) if name == "config.json" else {}
        for key in keys:
            spelled = key if key in found else aliases.get(key, key)
            if spelled not in found:
                raise UserError(
                    f"{path}: no {key!r} key, which loading the model needs; the file is incomplete: "
                    "save or download the model again"
                )
            value = found[spelled]
            if name == "config.json" and key != "model_type" and not _positive_int(value):
                raise UserError(
                    f"{path}: {key} is {value!r}; it must be an integer >= 1: fix the file, or save or "
                    "download the model again"
                )


def _config_aliases(path: str, config: dict) -> dict:
    """The other spellings of config.json's keys for its model type (transformers' attribute_map);
    a UserError when model_type names no architecture transformers knows."""
    model_type = config.get("model_type")
    if model_type is None:
        return {}
    if not isinstance(model_type, str) or model_type not in transformers.CONFIG_MAPPING:
        raise UserError(
            f"{path}: model_type {model_type!r} is no architecture transformers knows; models.py loads "
            "Llama, Qwen2/2.5 and Qwen3 (model_type llama, qwen2, qwen3)"
        )
    return dict(getattr(transformers.CONFIG_MAPPING[model_type], "attribute_map", {}))


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def all_finite(t: torch.Tensor) -> bool:
    """Whether a floating-point tensor holds neither NaN nor inf: its smallest and largest values are
    finite. torch.aminmax finds both in one pass without making a tensor of t's size (as
    torch.isfinite(t).all() does), and a NaN anywhere comes out as NaN."""
    if t.numel() == 0:
        return True
    if t.element_size() == 1:  # float8 has no aminmax
        t = t.float()
    return bool(torch.isfinite(torch.stack(torch.aminmax(t))).all())


def check_weights_finite(folder: str) -> None:
    """Every floating-point tensor of a model folder's safetensors files is finite (`all_finite`, one
    pass per tensor); a UserError naming the folder, the file and the first tensor that holds NaN
    or inf. Run before anything is written: a NaN weight would otherwise surface much later, as a
    sampler that cannot draw."""
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            path = os.path.join(folder, f)
            with library_call(folder, "weights", safetensors.safe_open, path, "pt") as weights:
                for key in weights.keys():
                    t = library_call(folder, "weights", weights.get_tensor, key)
                    if t.is_floating_point() and not all_finite(t):
                        raise UserError(f"{folder}: {non_finite(key, f)}")


def check_model_finite(name: str, model) -> None:
    """Every floating-point weight and buffer of a loaded model is finite in the dtype it was loaded
    in (`all_finite`, one pass per tensor); a UserError naming the model and the first that holds
    NaN or inf."""
    for key, t in itertools.chain(model.named_parameters(), model.named_buffers()):
        if t.is_floating_point() and not all_finite(t.detach()):
            raise UserError(f"{name}: {non_finite(key, f'the weights loaded in {t.dtype}')}")


def non_finite(tensor: str, where: str) -> str:
    """The refusal of a checkpoint with a tensor that holds NaN or inf, after the model's name."""
    return (
        f"tensor {tensor} in {where} holds NaN or infinite values; the checkpoint is corrupt or was saved "
        "from a run that diverged: pass another one (a run's ckpt/ keeps its last finite weights)"
    )


def read_header(path: str) -> None:
    with safetensors.safe_open(path, "pt") as f:
        f.keys()


def library_call(name: str, what: str, fn, *args, **kwargs):
    """fn(*args, **kwargs), with any failure of transformers / safetensors / the hub on a user's
    model turned into a UserError that names the model (truncated weights, no network, ...)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 -- a library failing on the user's files or hub id
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        files = (
            sorted(f for f in os.listdir(name) if f.endswith((".safetensors", ".bin", ".json")))
            if os.path.isdir(str(name))
            else []
        )
        among = f" from {', '.join(files)}" if files else ""
        hint = (
            "check those files (a truncated or corrupt download?)"
            if os.path.isdir(str(name))
            else "check the hub id and the network (HF_HUB_OFFLINE=1 reads only the local cache)"
        )
        raise UserError(
            f"{name}: could not load its {what}{among} ({type(e).__name__}: {first}); {hint}"
        ) from e
