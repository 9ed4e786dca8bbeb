"""Data-parallel helpers for search and training under `torchrun` (gloo on CPU, nccl on GPU).

Plain gradient all-reduce for the supernet instead of a DDP wrapper: its arch and weight steps use different
parameter groups and sampled widths leave some weights without gradients, which DDP's bucketing dislikes.
(`agd train`'s derived net has a fixed graph and uses DistributedDataParallel.) Every rank starts from rank 0's
parameters, averages gradients before each optimizer step, and so ends with identical parameters. Only rank 0
writes files.

    dist = init_from_env("auto")      # world 1 when not launched by torchrun; joins with a bounded timeout
    dist.broadcast(model.parameters())
    loss.backward(); dist.average_grads(params); opt.step()
    if dist.is_main: save(...)

Every collective (and the rendezvous) gives up after AGD_DIST_TIMEOUT seconds (600 by default) with one line,
instead of waiting forever for a rank that never comes."""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.distributed as tdist

from ..errors import AgdError
from ..train.device import Compute, resolve

TIMEOUT_ENV = "AGD_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0


def _cpu() -> Compute:
    return Compute(torch.device("cpu"))


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    compute: Compute = field(default_factory=_cpu)
    backend: str | None = None

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

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s picklable object on every rank (a checkpoint only rank 0's node may hold)."""
        if not self.active:
            return obj
        box = [obj if self.rank == src else None]
        tdist.broadcast_object_list(box, src, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def average_grads(self, params: Iterable[torch.Tensor]) -> None:
        """All-reduce-mean gradients (missing ones count as zero, so every rank calls the same collectives)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            tdist.all_reduce(p.grad, op=tdist.ReduceOp.SUM)
            p.grad.div_(self.world)

    def sum(self, value: float) -> float:
        if not self.active:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return float(t.cpu())

    def mean(self, value: float) -> float:
        """Average a scalar over ranks (for logging)."""
        return self.sum(value) / self.world if self.active else float(value)

    def barrier(self) -> None:
        if self.active:
            if self.backend == "nccl":
                tdist.barrier(device_ids=[self.device.index])
            else:
                tdist.barrier()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Every rank's picklable object, in rank order, on every rank ([obj] at world 1)."""
        if not self.active:
            return [obj]
        box: list[Any] = [None] * self.world
        tdist.all_gather_object(box, obj)
        return box

    def cache_shard(self, folder: str | Path) -> tuple[int, int]:
        """(index, count) of the teacher-cache entries this rank computes (data.cache.TeacherCache's shard).

        All ranks split the set when they all see `folder` (one file system: rank 0 writes a marker, the others
        look for it, one all-gather); otherwise each node's ranks split it among themselves (LOCAL_RANK of
        LOCAL_WORLD_SIZE), so every node ends with the whole set in its own cache. The build itself then needs
        no collective: every rank polls the files (TeacherCache._wait_for_others)."""
        if not self.active:
            return 0, 1
        import uuid

        folder = Path(folder)
        token = self.broadcast_object(uuid.uuid4().hex if self.is_main else None)
        marker = folder / f".world-{token}"
        if self.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            marker.write_text("")
        self.barrier()
        shared = all(self.all_gather_object(marker.is_file()))
        self.barrier()
        if self.is_main:
            marker.unlink(missing_ok=True)
        if shared:
            return self.rank, self.world
        return self.local_rank, max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))

    def close(self) -> None:
        if self.active:
            tdist.destroy_process_group()


def env_world() -> tuple[int, int, int]:
    """(rank, world, local_rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    try:
        return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("LOCAL_RANK", "0")))
    except ValueError:
        raise AgdError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") from None


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        t = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise AgdError(f"{TIMEOUT_ENV}={raw!r}: expected seconds") from None
    if t <= 0:
        raise AgdError(f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds")
    return t


@contextlib.contextmanager
def _stderr_unless_failed():
    """Hold what is written to fd 2 (C++ logs included); replay it on success, drop it on failure."""
    import sys
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    ok = False
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
            ok = True
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if ok:
                tmp.seek(0)
                data = tmp.read()
                if data:
                    os.write(2, data)


def init_from_env(device: str | torch.device | None = None, amp: str | None = "off", backend: str | None = None,
                  warn: bool = True) -> Dist:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); world 1 otherwise.

    device: `auto|cpu|cuda|cuda:N` (train.device.resolve; None = auto). The returned Dist carries the
    resolved torch.device and Compute (AMP, channels-last); callers move models and batches there. NCCL for
    CUDA, gloo for the CPU. The rendezvous and a first barrier are bounded by AGD_DIST_TIMEOUT: a rank that
    cannot reach the others ends with one line instead of hanging."""
    rank, world, local = env_world()
    comp = resolve(device or "auto", amp, local_rank=local, warn=warn and rank == 0)
    dev = comp.device
    be = backend or ("nccl" if dev.type == "cuda" else "gloo")
    if world > 1 and not tdist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        t = timeout_s()
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            with _stderr_unless_failed():  # c10d's C++ retries print pages of stack traces: our line instead
                kw = {"device_id": dev} if be == "nccl" else {}
                tdist.init_process_group(be, timeout=datetime.timedelta(seconds=t), rank=rank, world_size=world,
                                         **kw)
                if be == "nccl":
                    tdist.barrier(device_ids=[dev.index])
                else:
                    tdist.barrier()
        except Exception as e:  # DistStoreError, RuntimeError (gloo timeouts), TimeoutError, ...
            msg = " ".join(str(e).split())[:200]
            raise AgdError(f"rank {rank} of {world}: could not join the process group at {where} within "
                           f"{t:.0f} s ({type(e).__name__}: {msg}); are all {world} ranks started and is the "
                           f"rendezvous endpoint reachable? ({TIMEOUT_ENV} sets the limit)") from None
    return Dist(rank, world, local, dev, comp, be if world > 1 else None)


def debug_hash(module: torch.nn.Module, rank: int) -> None:
    """With AGD_DEBUG_PARAM_HASH=DIR, each rank writes DIR/rank<r>.sha256 of its final parameters (train and
    search; the tests check that every rank ends with identical weights)."""
    import hashlib

    d = os.environ.get("AGD_DEBUG_PARAM_HASH")
    if not d:
        return
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().contiguous().numpy().tobytes())
    Path(d).mkdir(parents=True, exist_ok=True)
    (Path(d) / f"rank{rank}.sha256").write_text(h.hexdigest() + "\n")
