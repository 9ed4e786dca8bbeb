"""Data-parallel helpers for search and training under `torchrun` (gloo on CPU, nccl on GPU).

Plain gradient all-reduce instead of a DDP wrapper: the supernet's arch and weight steps use different
parameter groups and sampled widths leave some weights without gradients, which DDP's bucketing dislikes.
Every rank starts from rank 0's parameters, averages gradients before each optimizer step, and so ends
with identical parameters. Only rank 0 writes files.

    dist = init_from_env()            # world 1 when not launched by torchrun
    dist.broadcast(model.parameters())
    loss.backward(); dist.average_grads(params); opt.step()
    if dist.is_main: save(...)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as tdist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1 and tdist.is_available() and tdist.is_initialized()

    def broadcast(self, tensors: Iterable[torch.Tensor], src: int = 0) -> None:
        """Copy rank `src`'s values into every rank (parameters at start, after a resume)."""
        if not self.active:
            return
        for t in tensors:
            tdist.broadcast(t.data, src)

    def average_grads(self, params: Iterable[torch.Tensor]) -> None:
        """All-reduce-mean gradients (missing ones count as zero, so every rank calls the same collectives)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)
            p.grad.div_(self.world)

    def mean(self, value: float) -> float:
        """Average a scalar over ranks (for logging)."""
        if not self.active:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return float(t) / self.world

    def barrier(self) -> None:
        if self.active:
            tdist.barrier()

    def close(self) -> None:
        if self.active:
            tdist.destroy_process_group()


def init_from_env(backend: str | None = None) -> Dist:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); world 1 otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if world > 1 and not tdist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        tdist.init_process_group(backend or ("nccl" if cuda else "gloo"))
    return Dist(rank, world, local, device)
