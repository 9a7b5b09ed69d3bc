"""Several processes, one model: torchrun + PyTorch's FSDP2 (`fully_shard`) for train_opd.py and
train_opsd.py. Without torchrun every function here is a no-op, so the single-process code path
is the code a reader follows.

What this file is
    `init()` joins the process group torchrun describes (NCCL on CUDA, gloo on CPU); `shard(model)`
    shards each decoder layer and the rest of a transformers causal LM over the processes (the
    student for training, a teacher for inference); `full_weights(model)` gathers the weights for
    the hand-written sampler of rollout.py, which reads them directly rather than calling the
    modules; `all_sum`, `all_max` and `gather` combine the monitors and evaluation records of every
    process; `full_state_dict(model)` assembles the weights on rank 0 for a checkpoint.

    How train_opd.py uses it: every process reads the same prompt stream and takes its own slice of
    each batch (rows rank·B/W to (rank+1)·B/W); it samples, scores and back-propagates that slice;
    FSDP's reduce-scatter averages the gradients over the processes, and the loss of each process
    is scaled so that the average equals the single-process `masked_mean` over the whole batch.
    With the sampling noise seeded per rollout chunk (common.chunk_generator), W processes draw
    exactly what one process draws with `--rollout-batch B/W`, and the update is the same up to
    float summation order (test_distributed.py). A LoRA student (lora.py) shards the same way:
    its frozen base and its adapters are parameters of each layer, and the gathered layer's
    `.weight` is the adapted weight the sampler reads.

Commands
    torchrun --nproc_per_node 8 train_opd.py --preset paper --student Qwen/Qwen3-1.7B \\
        --teacher Qwen/Qwen3-8B --data dapo --out runs/paper-8gpu
    pytest -q tests/test_distributed.py        # 2 CPU processes, gloo, against one process

What it simplifies
    * One sharding unit per decoder layer plus the root (embeddings, final norm, LM head); no
      hybrid sharding, no CPU offload, no tensor or sequence parallelism.
    * The sampler gathers the whole model on every process while it generates (`full_weights`):
      fine for a 1.7B student, not for models that only fit sharded.
    * A checkpoint holds the full weights in transformers format (written by rank 0) and one
      optimizer shard per process: resume with the same number of processes.
"""

import contextlib
import os

import torch
import torch.distributed as dist


def world() -> tuple:
    """(rank, number of processes): (0, 1) without torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def planned_world() -> int:
    """The number of processes torchrun starts (WORLD_SIZE), known before init(): 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """Rank 0, also before init() (torchrun sets RANK in the environment)."""
    return (
        world()[0] == 0
        if dist.is_available() and dist.is_initialized()
        else int(os.environ.get("RANK", "0")) == 0
    )


def init(device: torch.device) -> torch.device:
    """Join torchrun's process group if WORLD_SIZE > 1; return this process's device
    (cuda:LOCAL_RANK on GPUs)."""
    if planned_world() <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shard(model):
    """FSDP2: each decoder layer one unit, the rest (embeddings, norm, LM head) the root unit. Every
    unit reshards after its forward, the root too (FSDP's default keeps the root gathered for the
    backward, which a teacher never runs): outside a forward or backward the weights are shards."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    device = next(model.parameters()).device
    mesh = init_device_mesh(device.type, (world()[1],))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=True)
    fully_shard(model, mesh=mesh, reshard_after_forward=True)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


@contextlib.contextmanager
def full_weights(model):
    """Inside the block every module of a sharded model holds its full weights (all-gathered), as
    rollout.generate's hand-written decoder needs; a model that is not sharded is left alone."""
    if not is_sharded(model):
        yield model
        return
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    for u in units:
        u.unshard()
    try:
        yield model
    finally:
        for u in units:
            u.reshard()


def _all_reduce(x: float, op) -> float:
    if world()[1] == 1:
        return x
    # NCCL: GPU tensors
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=op)
    return float(t)


def all_sum(x: float) -> float:
    return _all_reduce(x, dist.ReduceOp.SUM)


def all_max(x: float) -> float:
    return _all_reduce(x, dist.ReduceOp.MAX)


def gather(items: list) -> list:
    """The lists of every process, concatenated in rank order (any picklable items)."""
    if world()[1] == 1:
        return items
    out = [None] * world()[1]
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def full_state_dict(model) -> dict:
    """The whole model's weights as plain CPU tensors on rank 0 (empty elsewhere); a collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()
