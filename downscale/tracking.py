"""Training metrics: ``training_log.csv`` / ``training_log.json`` and optional MLflow.

:func:`write_history` writes the per-epoch rows beside the bundle.
:class:`Tracker` sends the run to MLflow when the recipe sets
``train.mlflow`` (a tracking URI, e.g. ``file:./mlruns`` or ``sqlite:///mlflow.db``,
relative paths from the working directory, as MLflow reads them): the flattened
recipe as parameters, the per-epoch metrics, and the bundle folder as an artifact.
MLflow is imported only then; it is the optional extra ``downscale[mlflow]``.
A ``file:`` URI sets ``MLFLOW_ALLOW_FILE_STORE=true`` (unless set), which MLflow
3.7 and later need to use their file store.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from downscale.errors import DownscaleError

__all__ = ["CSV_NAME", "JSON_NAME", "Tracker", "TrackingError", "flatten", "write_history"]

CSV_NAME = "training_log.csv"
JSON_NAME = "training_log.json"


class TrackingError(DownscaleError, RuntimeError):
    """Experiment tracking is asked for but cannot be done."""


def flatten(data: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):  # an empty mapping adds nothing
            out.update(flatten(value, name, sep))
        else:
            out[name] = value
    return out


def _json_safe(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_history(out_dir: str | Path, rows: list[dict[str, Any]]) -> list[Path]:
    """``training_log.csv`` and ``training_log.json`` in ``out_dir``; one row per epoch.

    Nested values (per-variable losses) become columns such as ``val_loss.tas``.
    """
    if not rows:
        return []
    out_dir = Path(out_dir)
    flat = [flatten(r) for r in rows]
    columns: list[str] = []
    for r in flat:
        columns += [c for c in r if c not in columns]
    csv_path, json_path = out_dir / CSV_NAME, out_dir / JSON_NAME
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(flat)
    json_path.write_text(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in flat], indent=1))
    return [csv_path, json_path]


def _require_mlflow() -> ModuleType:
    try:
        import mlflow
    except ImportError:
        raise TrackingError(
            "the recipe asks for MLflow tracking (train.mlflow) but mlflow is not installed",
            fix="pip install 'downscale[mlflow]', or remove train.mlflow from the recipe",
        ) from None
    return mlflow


class Tracker:
    """Experiment tracking of one training run; does nothing without a URI.

    Call :meth:`start` once (with the id of the run to continue after a resume),
    :meth:`log_epoch` after each epoch and :meth:`finish` with the bundle folder.
    Only the main process should track (the engine and ``train`` see to it).
    """

    def __init__(
        self,
        uri: str | None = None,
        *,
        experiment: str = "downscale",
        run_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        enabled: bool = True,
    ) -> None:
        self.uri = uri if enabled else None
        self.experiment, self.run_name = experiment, run_name
        self.params = dict(params or {})
        self.run_id: str | None = None
        self._mlflow: ModuleType | None = _require_mlflow() if self.uri else None  # fail before any training

    @property
    def active(self) -> bool:
        return self._mlflow is not None

    def start(self, run_id: str | None = None) -> str | None:
        """Start (or, with ``run_id``, continue) the MLflow run; returns its id."""
        mlflow, uri = self._mlflow, self.uri
        if mlflow is None or uri is None or self.run_id is not None:  # uri is set whenever mlflow is
            return self.run_id
        if _is_file_store(uri):
            # MLflow >= 3.7 refuses its file store unless asked for; the recipe asks for it
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        if run_id is None:
            mlflow.set_experiment(self.experiment)
            run = mlflow.start_run(run_name=self.run_name)
            params = {k: _param(v) for k, v in flatten(self.params).items()}
            for i in range(0, len(params), 100):  # MLflow's batch limit
                mlflow.log_params(dict(list(params.items())[i : i + 100]))
        else:
            run = mlflow.start_run(run_id=run_id)
        self.run_id = run.info.run_id
        return self.run_id

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        mlflow = self._mlflow
        if mlflow is None:
            return
        self.start()
        step = int(row.get("epoch", 0))
        metrics = {
            k.replace("/", "."): float(v)
            for k, v in flatten(row).items()
            if k != "epoch" and isinstance(v, (int, float)) and v is not None and math.isfinite(float(v))
        }
        mlflow.log_metrics(metrics, step=step)

    def finish(self, artifacts: str | Path | None = None, *, status: str = "FINISHED") -> None:
        mlflow = self._mlflow
        if mlflow is None or self.run_id is None:
            return
        try:
            if artifacts is not None and status == "FINISHED":
                mlflow.log_artifacts(str(artifacts), artifact_path=Path(artifacts).name)
        finally:
            mlflow.end_run(status=status)
            self.run_id = None


def _is_file_store(uri: str) -> bool:
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    return scheme in ("", "file") or len(scheme) == 1  # a plain path (or a Windows drive)


def _param(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text[:500]
