"""The emulator bundle: everything ``apply`` needs, and nothing executable.

A bundle is a folder::

    bundle.json          the typed metadata (:class:`~downscale.bundle.meta.BundleMeta`): format version,
                         variables, units, grids, normaliser, model, heads, provenance, lineage
    weights.safetensors  model weights
    arrays.safetensors   static fields, validity mask and other arrays
    optimizer.safetensors  optional (``train.save_optimizer``): the optimiser's state at the end of
                         training, for ``downscale transfer`` with ``loading: resume``
    MANIFEST.json        sha256 of each file above (a :class:`~downscale.bundle.meta.Manifest`); its own
                         hash is the bundle id.  It covers every file of the folder: a listed file that is
                         missing or changed, or a file that is not listed, is refused (the training records
                         ``training_log.csv``/``.json`` and the output-folder records ``.downscale-output.*``,
                         written beside the bundle after it, excepted)

Loading never unpickles: safetensors plus JSON only.  A missing or edited file,
or a bundle written by a newer format than this code reads, is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from downscale.atomic import sha256_file
from downscale.bundle.meta import FORMAT_VERSION, BundleMeta, parse_manifest, parse_meta
from downscale.errors import BundleError

__all__ = ["Bundle", "load_bundle", "save_bundle"]

_META = "bundle.json"
_WEIGHTS = "weights.safetensors"
_ARRAYS = "arrays.safetensors"
_OPTIMIZER = "optimizer.safetensors"
_MANIFEST = "MANIFEST.json"
_FILES = (_META, _WEIGHTS, _ARRAYS)
#: written beside the bundle by ``downscale train`` after the bundle itself (downscale.tracking) and the
#: output-folder records of the verbs (``.downscale-output.json``/``.lock``): not listed in the manifest
_RECORDS = ("training_log.csv", "training_log.json")
_RECORD_PREFIX = ".downscale-output"


@dataclass
class Bundle:
    """An emulator bundle in memory."""

    meta: BundleMeta
    weights: dict[str, Any]  # name -> torch.Tensor
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)  # "<state>/<parameter>" -> torch.Tensor; optional
    path: Path | None = None
    id: str | None = None


def save_bundle(path: str | Path, bundle: Bundle) -> str:
    """Write ``bundle`` to the folder ``path`` atomically and return its id.

    The folder is assembled next to its final place and renamed into it, so a
    reader never sees half a bundle.  An existing bundle at ``path`` is replaced.
    """
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file as save_torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = bundle.meta.model_copy(update={"format_version": FORMAT_VERSION})
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / _META).write_text(json.dumps(meta.to_json_dict(), indent=1, sort_keys=True, default=_json_default))
        weights = {k: v.detach().cpu().contiguous() for k, v in bundle.weights.items()}
        save_torch(weights, str(tmp / _WEIGHTS))
        arrays = {k: np.ascontiguousarray(v) for k, v in bundle.arrays.items()}
        save_numpy(arrays, str(tmp / _ARRAYS))
        files: tuple[str, ...] = _FILES
        if bundle.optimizer:
            save_torch({k: v.detach().cpu().contiguous() for k, v in bundle.optimizer.items()}, str(tmp / _OPTIMIZER))
            files = (*_FILES, _OPTIMIZER)
        manifest = {name: sha256_file(tmp / name) for name in files}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        bundle_id = sha256_file(tmp / _MANIFEST)[:16]
        # the previous bundle (the caller checked that the folder is one of ours) steps aside for the rename;
        # one left by a run killed between the two renames is removed once the new bundle is in place
        old = path.with_name(f".{path.name}.old")
        moved = path.exists()
        if moved:
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if moved or (old.is_dir() and (old / _MANIFEST).is_file()):  # ours: never a user's folder
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bundle.path, bundle.id, bundle.meta = path, bundle_id, meta
    return bundle_id


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in bundle.json")


def load_bundle(path: str | Path, *, map_location: str = "cpu") -> Bundle:
    """Read and verify a bundle folder; never unpickles."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file as load_torch

    path = Path(path)
    if not path.is_dir():
        raise BundleError(
            "not an emulator bundle folder",
            file=path,
            fix="give the folder written by 'downscale train -o FOLDER'",
        )
    manifest_path = path / _MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"bundle has no {_MANIFEST}", file=path, fix="re-create the bundle with 'downscale train'")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError("bundle manifest is not valid JSON", file=manifest_path, fix="re-create the bundle") from None
    files = tuple(parse_manifest(manifest, file=manifest_path).files)
    unlisted = sorted(
        p.name
        for p in path.iterdir()
        if p.name not in files
        and p.name != _MANIFEST
        and p.name not in _RECORDS
        and not p.name.startswith(_RECORD_PREFIX)
    )
    if unlisted:
        raise BundleError(
            f"bundle folder holds {'a file' if len(unlisted) == 1 else 'files'} its manifest does not list",
            file=path / unlisted[0],
            found=", ".join(unlisted[:5]) + (" ..." if len(unlisted) > 5 else ""),
            expected=f"only the files of {_MANIFEST}: {', '.join(sorted(files))}",
            fix="remove what was added to the bundle folder, or use an unmodified copy of the bundle",
        )
    for name in files:
        file = path / name
        if not file.is_file():
            raise BundleError("bundle file is missing", file=file, fix="copy the whole bundle folder")
        if manifest.get(name) != sha256_file(file):
            raise BundleError(
                "bundle file was modified after the bundle was written (checksum mismatch)",
                file=file,
                fix="use an unmodified copy of the bundle, or re-create it",
            )
    try:
        raw = json.loads((path / _META).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError("bundle metadata is not valid JSON", file=path / _META, fix="re-create the bundle") from None
    meta = parse_meta(raw, file=path / _META)
    try:
        weights = load_torch(str(path / _WEIGHTS), device=map_location)
        arrays = load_numpy(str(path / _ARRAYS))
        optimizer = load_torch(str(path / _OPTIMIZER), device="cpu") if _OPTIMIZER in files else {}
    except (SafetensorError, OSError) as exc:
        raise BundleError(f"unreadable safetensors file ({exc})", file=path, fix="re-create the bundle") from None
    return Bundle(
        meta=meta, weights=weights, arrays=arrays, optimizer=optimizer, path=path, id=sha256_file(manifest_path)[:16]
    )
