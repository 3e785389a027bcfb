"""Several processes, one run: what :func:`synthesize` and :func:`distill` need of ``torch.distributed``.

Launch any script (or ``cake-mini run``) with ``torchrun`` and call :func:`init_from_env`
once; nothing else changes. Synthesis splits its groups of mini-batches over the ranks
(group ``g`` belongs to rank ``g % world_size``), each rank writes its own shards into the
shared checkpoint directory, and every rank then reads all of them: the samples are those
of a one-process run with the same seed, bit for bit on CPU. Distillation wraps the student
in ``DistributedDataParallel`` and gives each rank a slice of every global batch, so the
recipe (batch size, learning rate, epochs) means what it means in one process.

    torchrun --standalone --nproc_per_node=2 -m cake_mini run digits            # CPU, gloo
    torchrun --standalone --nproc_per_node=8 -m cake_mini run cifar10-resnet    # 8 GPUs, NCCL
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m cake_mini run cifar10-resnet --out /shared/fs/run                     # 2 nodes

Without ``torchrun`` (or with one process) every function here is a no-op.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on rank 0 (and in a plain one-process run): the process that writes shared files."""
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def init_from_env(device: str | torch.device | None = None) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment; return this rank's device.

    ``device``: ``"cuda"`` gives each rank the GPU ``LOCAL_RANK`` (NCCL); ``"cpu"`` uses gloo;
    ``None`` picks CUDA when available. Outside ``torchrun`` (no ``WORLD_SIZE``) nothing is
    initialised and the device is returned as is.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return device
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; run with one process instead")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def average_buffers(module: torch.nn.Module) -> None:
    """Make every rank's buffers equal, in place: floating ones (BatchNorm's running mean and
    variance) become their mean over the ranks, the others (counters) rank 0's.

    ``DistributedDataParallel`` broadcasts rank 0's buffers before each forward pass, and each
    rank then updates its own from its slice of the batch, so after the last step the ranks
    hold different running statistics unless this is called.
    """
    world = rank_and_world()[1]
    if world <= 1:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer)
            buffer.div_(world)
        else:
            dist.broadcast(buffer, src=0)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over the ranks (``t`` itself in one process)."""
    if rank_and_world()[1] > 1:
        t = t.clone()
        dist.all_reduce(t)
    return t
