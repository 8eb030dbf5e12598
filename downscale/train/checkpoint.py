"""Resumable training checkpoints: written atomically, read back exactly.

A run folder (``<bundle>.ckpt/`` for ``downscale train``) holds

- ``checkpoint.pt``: everything needed to continue a run as if it had never
  stopped -- model, optimiser, GradScaler, the position in the data (epoch,
  optimiser steps done in it, global step; the learning rate is a function of
  the global step), the best weights/score/epoch, the early-stopping counter,
  the history so far and the random-number states (python, numpy, torch CPU
  and CUDA);
- ``best.pt``: the best weights so far (also inside ``checkpoint.pt``).

Files are written to a temporary name and moved into place with ``os.replace``,
so a process killed at any moment (even by SIGKILL) leaves either the previous
checkpoint or the new one, never half of one.  They hold only tensors and
plain containers, and are read with ``torch.load(weights_only=True)``.

Every checkpoint carries a *fingerprint* (e.g. a hash of the recipe): a folder
written by another recipe is refused, not silently resumed.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from downscale.atomic import atomic_path
from downscale.errors import DownscaleError

__all__ = [
    "CheckpointError",
    "CheckpointStore",
    "capture_rng",
    "checkpoint_folder",
    "recipe_fingerprint",
    "restore_rng",
]

FORMAT = 1
_CKPT = "checkpoint.pt"
_BEST = "best.pt"


class CheckpointError(DownscaleError, ValueError):
    """A checkpoint that cannot be resumed (another recipe, unreadable file...)."""


def capture_rng() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) random states as tensors and plain containers."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    out: dict[str, Any] = {
        "python": [version, list(state), gauss],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else [],
    }
    return out


def restore_rng(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((int(version), tuple(int(v) for v in values), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        states = list(cuda)[: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def _atomic_save(obj: Any, path: Path) -> None:
    with atomic_path(path, fsync=True) as tmp:
        torch.save(obj, tmp)


def _cpu(obj: Any) -> Any:
    """A copy with every tensor on the CPU (plain containers kept)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_cpu(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_cpu(v) for v in obj)
    return obj


class CheckpointStore:
    """The checkpoint files of one run in ``folder``, tagged with ``fingerprint``.

    ``every``: write a checkpoint every this many optimiser steps (None: only at
    epoch ends).  Only the main process should write (the engine sees to it).
    """

    def __init__(self, folder: str | Path, *, fingerprint: str = "", every: int | None = None) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.every = every

    @property
    def path(self) -> Path:
        return self.folder / _CKPT

    @property
    def best_path(self) -> Path:
        return self.folder / _BEST

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, state: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_save({"format": FORMAT, "fingerprint": self.fingerprint, **_cpu(state)}, self.path)
        return self.path

    def save_best(self, weights: dict[str, torch.Tensor], epoch: int, score: float | None) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        _atomic_save(
            {"fingerprint": self.fingerprint, "weights": _cpu(weights), "epoch": epoch, "score": score}, self.best_path
        )
        return self.best_path

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none; refuses another run's checkpoint."""
        if not self.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointError(
                "cannot read the training checkpoint",
                file=self.path,
                found=type(exc).__name__,
                fix=f"delete the folder {self.folder} to start the training afresh",
            ) from None
        if state.get("format") != FORMAT:
            raise CheckpointError(
                "training checkpoint of an unknown format",
                file=self.path,
                found=state.get("format"),
                expected=FORMAT,
                fix=f"delete the folder {self.folder} to start the training afresh",
            )
        if self.fingerprint and state.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                "the training checkpoint here belongs to another recipe",
                file=self.path,
                found=f"recipe hash {str(state.get('fingerprint'))[:12]}",
                expected=f"recipe hash {self.fingerprint[:12]}",
                fix=f"write to another output folder, or delete {self.folder} to discard that run",
            )
        return state

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


# train settings that change how a run is carried out, not what it computes
_RUNTIME_KEYS = ("device", "num_workers", "threads", "mlflow", "checkpoint_every")


def recipe_fingerprint(recipe: Any) -> str:
    """sha256 of the recipe (its ``to_dict()``), less the purely run-time train settings
    (device, workers, threads, tracking, checkpoint interval), which a resumed run may change."""
    import hashlib
    import json

    data = recipe.to_dict() if hasattr(recipe, "to_dict") else dict(recipe)
    train = {k: v for k, v in dict(data.get("train") or {}).items() if k not in _RUNTIME_KEYS}
    text = json.dumps({**data, "train": train}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def checkpoint_folder(out_dir: str | Path) -> Path:
    """The run folder of a bundle written to ``out_dir``: ``<out_dir>.ckpt`` beside it."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + ".ckpt")
