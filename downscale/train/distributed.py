"""Data-parallel training: the same code on 1 CPU, 1 GPU or N GPUs/nodes.

Launch with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) and :func:`setup` joins the process group:
``nccl`` on CUDA, ``gloo`` on CPU.  Without those variables (or with
``WORLD_SIZE=1``) nothing is initialised and every helper here is a no-op, so a
single process needs no special case anywhere else.

Only the main process (rank 0) writes files and prints progress: see
:func:`is_main`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "check_device",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main",
    "select_device",
    "setup",
    "shard",
    "teardown",
]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def get_world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def is_main() -> bool:
    """True on rank 0 (also after :func:`teardown`, from the ``RANK`` variable)."""
    return get_rank() == 0


def check_device(name: str) -> torch.device | None:
    """The device ``train.device`` names (None for ``auto``), or a one-line RecipeError: an unknown device
    string, or a GPU this machine does not have.  Cheap: call it before any data are read."""
    from downscale.errors import RecipeError

    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise RecipeError(
            "train.device is not a device",
            found=repr(name),
            expected="auto, cpu, cuda or cuda:N",
            fix="set train.device: auto (a GPU when there is one, else CPU)",
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise RecipeError(
                "train.device names a GPU this machine does not have",
                found=f"{name!r}; {count} CUDA device(s) visible",
                expected="cpu, auto" + (f" or cuda:0..cuda:{count - 1}" if count else ""),
                fix="set train.device: auto or cpu (or run on a machine with that GPU)",
            )
    elif device.type not in ("cpu", "mps"):
        raise RecipeError(
            "train.device is not a device this code trains on",
            found=repr(name),
            expected="auto, cpu, cuda or cuda:N",
            fix="set train.device: auto",
        )
    return device


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``: this process's GPU (``cuda:LOCAL_RANK``) when there is one, else CPU.

    ``cuda`` without an index also means this process's GPU; ``cuda:N`` and
    ``cpu`` are taken as given.  An unknown device or a missing GPU is a one-line RecipeError
    (:func:`check_device`).
    """
    local_rank = _env_int("LOCAL_RANK", 0) if local_rank is None else local_rank
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(device: str = "auto") -> DistContext:
    """Join the process group described by the torchrun variables (if any) and pick the device.

    Idempotent: a group that is already initialised is reused.
    """
    world = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = select_device(device, local_rank)
    backend = None
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
    elif world > 1:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if dev.type == "cuda":
            dist.init_process_group(backend=backend, device_id=dev)
        else:
            dist.init_process_group(backend=backend)
    return DistContext(get_rank(), get_world_size(), local_rank, dev, backend)


def teardown() -> None:
    """Leave the process group (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks, in place, and return it (unchanged in a single process).

    NCCL needs the tensor on this process's GPU and gloo on the CPU; the value
    comes back on the device it came from.
    """
    if not is_distributed():
        return t
    device = t.device
    backend = dist.get_backend()
    comm = t
    if backend == "nccl" and device.type != "cuda":
        comm = t.to(torch.device("cuda", torch.cuda.current_device()))
    elif backend == "gloo" and device.type != "cpu":
        comm = t.cpu()
    dist.all_reduce(comm, op=dist.ReduceOp.SUM)
    if comm is not t:
        t.copy_(comm.to(device))
    return t


def broadcast_object(obj: object, src: int = 0) -> object:
    """``obj`` from rank ``src`` on every rank (identity in a single process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def shard(items: Sequence[int], parts: int, index: int) -> list[int]:
    """The ``index``-th of ``parts`` contiguous, near-equal pieces of ``items``
    (sizes differ by at most one, the larger ones first: like ``numpy.array_split``)."""
    n = len(items)
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    stop = start + base + (1 if index < extra else 0)
    return list(items[start:stop])
