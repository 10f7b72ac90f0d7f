"""Where a run computes: its place in a ``torchrun`` launch, its device, its precision, its loaders' workers.

One script for one process or many, as torchvision's reference scripts: :func:`init_distributed`
reads torchrun's environment (nothing without one: rank 0 of 1), :func:`resolve_device` picks the
process's GPU or the CPU, and :func:`mixed_precision` is the one bf16 decision, for training and
testing alike. :func:`all_sum` and :func:`barrier` are the two collectives the training loop needs;
on one process they cost nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Dist:
    """This process's place in a ``torchrun`` launch (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Reads torchrun's environment and joins the process group (gloo on the CPU, NCCL on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                int(os.environ.get("LOCAL_WORLD_SIZE", str(world))))


def resolve_device(name: str, dist: Dist = Dist()):
    """``auto``: this process's GPU (``cuda:LOCAL_RANK`` under torchrun; the first visible one
    otherwise -- a scheduler gives each job its own through CUDA_VISIBLE_DEVICES), else the CPU."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            device = torch.device("cuda", dist.local_rank % torch.cuda.device_count())
            torch.cuda.set_device(device)
            return device
        return torch.device("cpu")
    return torch.device(name)


def mixed_precision(device):
    """The one bf16 decision, for training and testing alike: autocast to bfloat16 on CUDA, full
    precision elsewhere, as every committed CPU run was made."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def default_workers(device, dist: Dist) -> int:
    """DataLoader workers when ``num_workers`` is None: none on the CPU, where the frame cache is
    cheaper than a worker hand-off and every core trains; on CUDA the process's share of its CPUs
    (at most 8), so decoding and augmentation never wait on the training step."""
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus // max(dist.local_world, 1) - 1))


def all_sum(values: list, device, dist: Dist) -> list[float]:
    """Sums device scalars over processes; one transfer to the host for all of them."""
    import torch

    t = torch.stack([v.double() if torch.is_tensor(v) else torch.tensor(float(v), dtype=torch.float64, device=device)
                     for v in values])
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.all_reduce(t)
    return t.tolist()


def barrier(dist: Dist) -> None:
    """Waits for every process (nothing to wait for on one)."""
    if dist.world > 1:
        import torch.distributed as tdist

        tdist.barrier()
