"""Low-rank adapters (LoRA): train W' = W + (α/R) B A on a model's projections, A and B only.

What this file is
    `attach(model, rank, alpha, targets)` freezes every weight of a transformers Llama / Qwen2 /
    Qwen3 model and makes the weight of each target projection (by default every attention and MLP
    projection of every layer) a parametrization (torch.nn.utils.parametrize):

        W' = W + (α/R) B A        W (out, in) the frozen base, A (R, in) random, B (out, R) zero

    so that the model starts as the base and only A and B learn. Each projection stays a
    torch.nn.Linear whose `.weight` is W'. Every forward of the project reads `.weight`: the
    sampler's written-out decoder (decoder.weights, once per rollout, cast there to the sampling
    dtype as a full-weight student's is), packed.py's scoring forward and the model's own. So the
    student samples from exactly the weights it trains, and gradients reach A and B through W'.
    `view(model, "base")` makes W' = W itself inside a block (OPSD's frozen teacher: the base with
    the adapters off, no second copy of the weights); `view(model, "ema")` reads an exponential
    average of the adapters instead (`add_ema`, `ema_update`).

    Adapters are saved in PEFT's layout (`save`: adapter_config.json and adapter_model.safetensors
    with PEFT's key names), so `peft.PeftModel.from_pretrained` loads them; `models.load` reads
    such a folder as the merged model (`read`, `load_tensors`, `merge`), which is how eval_math.py,
    probes.py and `--teacher` take an adapter folder.

Paper
    Not in the paper, which trains full weights (docs/paper.md §2.4). docs/lora.md says what the
    adapters change (the trainable parameters, the optimizer's memory, OPSD's teacher) and what
    they do not (the losses, the sampler, the scoring), with the tiny world's measurements and
    the memory plan of the paper's models on one GPU (docs/paper_scale.md).

Command
    python lora.py runs/opd-lora/ckpt --out runs/opd-lora/merged   # a plain transformers folder
    python -m pytest -q tests/test_lora.py    # against PEFT's forward and loading, closed-form gradients

What it simplifies
    * LoRA of the projections only: no adapters on embeddings, norms or the output layer, no
      dropout on the adapters' input, no bias, no rsLoRA or DoRA (a PEFT folder that uses them is
      refused by name).
    * The adapted weight W' is formed (one (out, in) matrix per projection, under a forward) rather
      than computing W x + (α/R) B (A x): one exact path for every forward, at the price of
      forming W' and the gradient of W' in the training forward and backward (docs/lora.md
      measures it).
    * The frozen base keeps the student's float32, as full weights do (decoder.py reads one dtype
      for every weight); a bf16 base would halve it.
"""

import argparse
import contextlib
import json
import math
import os

import safetensors.torch
import torch
from torch import nn
from torch.nn.utils import parametrize

import errors
from errors import UserError

# every attention and MLP projection of a Llama / Qwen2 / Qwen3 layer (PEFT's names for them)
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
VIEWS = ("adapted", "base", "ema")
CONFIG_FILE, WEIGHTS_FILE = "adapter_config.json", "adapter_model.safetensors"

# -----------------------------------------------------------------------------
# The adapter: one parametrization per target projection


class LowRank(nn.Module):
    """The parametrization of one projection's weight W (out, in): the adapted weight
    W + (α/R) B A, or in the views of `view` W itself ("base") or W + (α/R) B̄ Ā with the adapters'
    exponential average ("ema", after add_ema)."""

    def __init__(self, W: torch.Tensor, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        out_f, in_f = W.shape
        # PEFT's initialisation: A ~ U(-1/√in, 1/√in) (kaiming_uniform_ with a = √5, nn.Linear's), B = 0
        A = (torch.rand(rank, in_f, generator=generator, dtype=torch.float64) * 2 - 1) / math.sqrt(in_f)
        self.A = nn.Parameter(A.to(device=W.device, dtype=W.dtype))  # (R, in)
        self.B = nn.Parameter(torch.zeros(out_f, rank, device=W.device, dtype=W.dtype))  # (out, R)
        self.scale = alpha / rank  # α/R
        self.view = "adapted"

    def forward(self, W):
        if self.view == "base":
            return W  # the base weight itself: the adapters off, bit for bit
        A, B = (self.A, self.B) if self.view == "adapted" else (self.A_ema, self.B_ema)
        # in W's precision also under autocast: the training forward forms the W' the sampler reads
        with torch.autocast(W.device.type, enabled=False):
            return W + self.scale * (B @ A)  # (out, in)


def attach(model, rank: int, alpha: float, targets=TARGETS, seed: int = 0):
    """Freeze every weight of `model` and give each `targets` projection of every layer an adapter
    (LowRank, A drawn from a generator seeded by `seed`); returns the model. A model starts as the
    base (B = 0)."""
    model.requires_grad_(False)
    generator = torch.Generator().manual_seed(seed)
    found = set()
    for layer in model.model.layers:
        for part in (layer.self_attn, layer.mlp):
            for name, proj in part.named_children():
                if name in targets:
                    low_rank = LowRank(proj.weight.detach(), rank, alpha, generator)
                    parametrize.register_parametrization(proj, "weight", low_rank)
                    found.add(name)
    missing = [t for t in targets if t not in found]
    if missing:
        raise UserError(
            f"--lora-targets: {type(model).__name__} has no projection {missing[0]!r}; its layers "
            f"have {', '.join(sorted(found) or ['none of ' + ', '.join(TARGETS)])}"
        )
    return model


def adapters(model) -> list:
    """[(name, LowRank)] of every adapted projection, in module order; `name` is the projection's
    module path (model.layers.0.self_attn.q_proj)."""
    out = []
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            out += [(name, p) for p in module.parametrizations.weight if isinstance(p, LowRank)]
    return out


def is_adapted(model) -> bool:
    return bool(adapters(model))


def settings(model) -> dict:
    """The rank, α and targets of an adapted model, as its adapters hold them."""
    found = adapters(model)
    rank = found[0][1].A.shape[0]
    targets = [t for t in TARGETS if any(name.endswith("." + t) for name, _ in found)]
    return {"rank": rank, "alpha": found[0][1].scale * rank, "targets": targets}


def trainable(model) -> int:
    """The number of parameters the optimizer updates."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextlib.contextmanager
def view(model, which):
    """Inside the block every adapter of `model` reads `which`: "adapted" (W + (α/R) B A, what it
    trains), "base" (W itself) or "ema" (the adapters' average, add_ema). None, or a model without
    adapters (OPD's teacher), leaves the model as it is."""
    if which is not None and which not in VIEWS:
        raise ValueError(f"view {which!r}: one of {VIEWS}")
    found = [p for _, p in adapters(model)] if which is not None else []
    before = [p.view for p in found]
    for p in found:
        p.view = which
    try:
        yield model
    finally:
        for p, v in zip(found, before):
            p.view = v


# -----------------------------------------------------------------------------
# The adapters' exponential average (OPSD's EMA teacher): adapter-sized, the base is shared


def add_ema(model) -> None:
    """Ā, B̄: a frozen copy of every adapter, the start of its exponential average (`view` "ema")."""
    for _, p in adapters(model):
        p.A_ema = nn.Parameter(p.A.detach().clone(), requires_grad=False)
        p.B_ema = nn.Parameter(p.B.detach().clone(), requires_grad=False)


@torch.no_grad()
def ema_update(model, decay: float) -> None:
    """Ā ← d·Ā + (1 − d)·A and B̄ ← d·B̄ + (1 − d)·B for every adapter (after every step)."""
    for _, p in adapters(model):
        p.A_ema.mul_(decay).add_(p.A.detach(), alpha=1.0 - decay)
        p.B_ema.mul_(decay).add_(p.B.detach(), alpha=1.0 - decay)


def ema_parameters(model) -> nn.ParameterList:
    """The averages Ā, B̄ of every adapter, as one module whose state_dict is theirs alone (what a
    checkpoint keeps of an EMA teacher whose base is the student's)."""
    return nn.ParameterList([q for _, p in adapters(model) for q in (p.A_ema, p.B_ema)])


# -----------------------------------------------------------------------------
# PEFT's layout: adapter_config.json and adapter_model.safetensors


def peft_key(name: str, matrix: str) -> str:
    """PEFT's name of an adapter matrix: base_model.model.{module path}.lora_A.weight (A: (R, in),
    B: (out, R))."""
    return f"base_model.model.{name}.lora_{matrix}.weight"


def peft_config(model, base: str) -> dict:
    """adapter_config.json of an adapted model whose base is `base` (a hub id or a folder)."""
    s = settings(model)
    alpha = int(s["alpha"]) if float(s["alpha"]).is_integer() else s["alpha"]
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": s["rank"],
        "lora_alpha": alpha,
        "target_modules": s["targets"],
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "modules_to_save": None,
        "inference_mode": True,
    }


def tensors(model) -> dict:
    """Every adapter matrix under its PEFT key, float32 on the CPU. Under FSDP each is gathered from
    its shards (a collective: every process calls it)."""
    out = {}
    for name, p in adapters(model):
        for matrix, t in (("A", p.A), ("B", p.B)):
            t = t.detach()
            t = t.full_tensor() if hasattr(t, "full_tensor") else t
            out[peft_key(name, matrix)] = t.float().cpu().contiguous()
    return out


def save(path: str, adapter_tensors: dict, config: dict) -> None:
    """Write PEFT's two files into the folder `path`."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    safetensors.torch.save_file(adapter_tensors, os.path.join(path, WEIGHTS_FILE))


def is_adapter_folder(path: str) -> bool:
    """A folder of adapters (PEFT's adapter_config.json) rather than of a whole model."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE)) and not os.path.isfile(
        os.path.join(path, "config.json")
    )


# settings of a PEFT LoRA config that change the adapter's arithmetic, with the value that leaves it as here
PLAIN = {
    "bias": "none",
    "use_rslora": False,
    "use_dora": False,
    "fan_in_fan_out": False,
    "modules_to_save": None,
    "layers_to_transform": None,
    "rank_pattern": {},
    "alpha_pattern": {},
    "layer_replication": None,
    "target_parameters": None,
    "trainable_token_indices": None,
}


def read_config(path: str) -> dict:
    """adapter_config.json of an adapter folder, checked: LoRA of the projections of TARGETS with
    one rank and α, no feature that changes the arithmetic, a base model named."""
    cfg_path = os.path.join(path, CONFIG_FILE)
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{cfg_path}: not a readable adapter config ({e})") from None
    if not isinstance(cfg, dict) or cfg.get("peft_type") != "LORA":
        raise UserError(
            f"{cfg_path}: peft_type {cfg.get('peft_type') if isinstance(cfg, dict) else cfg!r}; "
            "lora.py reads LoRA adapters only"
        )
    for key, plain in PLAIN.items():
        if cfg.get(key, plain) not in (plain, None, {}, False):
            raise UserError(
                f"{cfg_path}: {key} = {cfg[key]!r}, which lora.py does not implement; merge the adapters "
                "with PEFT (merge_and_unload) and pass the merged folder"
            )
    targets = cfg.get("target_modules")
    if not isinstance(targets, list) or not targets or any(t not in TARGETS for t in targets):
        raise UserError(
            f"{cfg_path}: target_modules {targets!r}; lora.py adapts a list of {', '.join(TARGETS)}"
        )
    if (
        not isinstance(cfg.get("r"), int)
        or cfg["r"] < 1
        or not isinstance(cfg.get("lora_alpha"), (int, float))
    ):
        raise UserError(
            f"{cfg_path}: r {cfg.get('r')!r} and lora_alpha {cfg.get('lora_alpha')!r}: need an "
            "integer r >= 1 and a number lora_alpha"
        )
    if not cfg.get("base_model_name_or_path"):
        raise UserError(f"{cfg_path}: base_model_name_or_path names no base model; the adapters need one")
    return cfg


def read(path: str) -> tuple:
    """(adapter_config.json, {PEFT key: tensor}) of an adapter folder, both checked: the config
    (read_config), and every tensor finite (one pass of torch.isfinite each; a NaN or inf adapter
    would make every merged weight it touches NaN)."""
    cfg = read_config(path)
    weights = os.path.join(path, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise UserError(f"{path}: no {WEIGHTS_FILE} beside {CONFIG_FILE}")
    try:
        found = safetensors.torch.load_file(weights)
    except Exception as e:  # noqa: BLE001 -- a truncated or foreign file
        raise UserError(f"{weights}: could not read it ({type(e).__name__}: {e})") from None
    for key, t in found.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(
                f"{weights}: tensor {key} holds NaN or infinite values; the adapters are corrupt or were "
                "saved from a run that diverged: pass another checkpoint"
            )
    return cfg, found


def load_tensors(model, adapter_tensors: dict, where: str = "the adapters") -> None:
    """Copy PEFT-keyed matrices into an adapted model's A and B (`where` names their source in a
    refusal): each adapter needs its two, in its shape."""
    for name, p in adapters(model):
        for matrix, t in (("A", p.A), ("B", p.B)):
            key = peft_key(name, matrix)
            got = adapter_tensors.get(key)
            if got is None or got.shape != t.shape:
                raise UserError(
                    f"{where}: {key} is {'missing' if got is None else f'of shape {tuple(got.shape)}'}, "
                    f"the model's adapter needs {tuple(t.shape)}; the adapters belong to another base "
                    "or rank"
                )
            with torch.no_grad():
                t.copy_(got)


def merge(model):
    """Replace every adapter by its merged weight W + (α/R) B A: a plain model, parametrizations
    gone; returns it."""
    with view(model, "adapted"):
        for _, module in list(model.named_modules()):
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


# -----------------------------------------------------------------------------
# The command: an adapter folder merged into a plain transformers folder


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(
        description="Merge an adapter folder (a LoRA run's ckpt/, or PEFT's) into a plain transformers "
        "folder: W + (α/R) B A in every adapted projection, loadable by transformers, vLLM, eval_math.py."
    )
    ap.add_argument("adapters", help="the adapter folder: adapter_config.json, adapter_model.safetensors")
    ap.add_argument("--out", required=True, help="the folder to write (must not hold a model yet)")
    ap.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16"),
        default="float32",
        help="the saved weights' dtype",
    )
    args = ap.parse_args(argv)
    import transformers

    import models  # the merged model is loaded and saved as any other

    transformers.utils.logging.disable_progress_bar()

    if not is_adapter_folder(args.adapters):
        raise UserError(
            f"{args.adapters}: no {CONFIG_FILE} there (or a whole model: config.json); pass an "
            "adapter folder such as a LoRA run's ckpt/"
        )
    if os.path.exists(os.path.join(args.out, "config.json")):
        raise UserError(f"--out {args.out} already holds a model; choose another --out")
    model, tok = models.load(args.adapters, device="cpu", dtype=torch.float32)
    models.save(model.to(getattr(torch, args.dtype)), tok, args.out)
    print(
        f"merged {args.adapters} ({read(args.adapters)[0]['base_model_name_or_path']} + adapters) into {args.out}"
    )


if __name__ == "__main__":
    errors.run(main)
