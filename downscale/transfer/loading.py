"""Loading strategies: how a pretrained bundle's weights enter the new model.

- ``weights_only``: every tensor of the bundle (after name-wise channel adaptation) goes
  into the tensor of the same name; a shape mismatch, or a tensor the new model does
  not have, is an error.
- ``shape_filtered``: the tensors whose name and shape match are loaded; the others are
  skipped and reported (they keep their fresh initialisation).
- ``resume``: the same model on the same variables, trained further; everything must match.

Each strategy returns a :class:`LoadReport` stored in the new bundle's lineage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from downscale.errors import BundleError
from downscale.registry import Registry

__all__ = ["LOADING", "LoadReport", "load_weights"]


@dataclass
class LoadReport:
    strategy: str
    transferred: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # key -> why
    adapted: dict[str, str] = field(default_factory=dict)  # key -> how its channels were mapped
    initialised: list[str] = field(default_factory=list)  # keys of the new model the bundle lacks

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "transferred": len(self.transferred),
            "transferred_keys": self.transferred,
            "skipped": self.skipped,
            "adapted": self.adapted,
            "initialised": self.initialised,
        }


Strategy = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], LoadReport], dict[str, torch.Tensor]]
LOADING: Registry[Strategy] = Registry("loading strategy")


def _shape(t: torch.Tensor) -> str:
    return "[" + ", ".join(str(s) for s in t.shape) + "]"


def _strict(
    new: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], report: LoadReport, fix: str
) -> dict[str, torch.Tensor]:
    bad = [k for k in new if k in parent and parent[k].shape != new[k].shape]
    extra = [k for k in parent if k not in new]
    if bad or extra:
        key = (bad or extra)[0]
        found = (
            f"{_shape(parent[key])} in the bundle, {_shape(new[key])} in the new model"
            if bad
            else "not in the new model"
        )
        raise BundleError(
            f"{report.strategy} loading: {len(bad)} tensor(s) differ in shape and {len(extra)} are not in the new model; "
            f"first: '{key}'",
            found=found,
            fix=fix,
        )
    out = dict(new)
    for k in new:
        if k in parent:
            out[k] = parent[k]
            report.transferred.append(k)
        else:
            report.initialised.append(k)
    return out


@LOADING.register("weights_only")
def weights_only(
    new: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], report: LoadReport
) -> dict[str, torch.Tensor]:
    return _strict(
        new,
        parent,
        report,
        "use transfer.loading: shape_filtered, or transfer.adapt_input: true when the variables changed",
    )


@LOADING.register("resume")
def resume(
    new: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], report: LoadReport
) -> dict[str, torch.Tensor]:
    out = _strict(
        new, parent, report, "resume needs the bundle's model and variables; use weights_only or shape_filtered"
    )
    if report.initialised:
        raise BundleError(
            f"resume loading: the bundle lacks {len(report.initialised)} tensor(s) of the new model, first "
            f"'{report.initialised[0]}'",
            fix="use the bundle's model section, or transfer.loading: shape_filtered",
        )
    return out


@LOADING.register("shape_filtered")
def shape_filtered(
    new: dict[str, torch.Tensor], parent: dict[str, torch.Tensor], report: LoadReport
) -> dict[str, torch.Tensor]:
    out = dict(new)
    for k, v in new.items():
        if k not in parent:
            report.initialised.append(k)
        elif parent[k].shape != v.shape:
            report.skipped[k] = f"shape {_shape(parent[k])} in the bundle, {_shape(v)} in the new model"
        else:
            out[k] = parent[k]
            report.transferred.append(k)
    for k in parent:
        if k not in new:
            report.skipped[k] = "not in the new model"
    return out


def load_weights(
    model: torch.nn.Module,
    parent: dict[str, torch.Tensor],
    strategy: str,
    *,
    adapted: dict[str, torch.Tensor] | None = None,
    notes: dict[str, str] | None = None,
    dropped: dict[str, str] | None = None,
) -> LoadReport:
    """Load ``parent`` (with the ``adapted`` tensors in place of theirs, without the ``dropped`` ones)."""
    fn = LOADING.get(strategy)
    report = LoadReport(strategy)
    candidate = {k: v for k, v in parent.items() if k not in (dropped or {})}
    candidate.update(adapted or {})
    new = model.state_dict()
    state = fn(new, {k: v.to(new[k].dtype) if k in new else v for k, v in candidate.items()}, report)
    report.skipped.update(dropped or {})
    report.adapted = {k: v for k, v in (notes or {}).items() if k in report.transferred}
    model.load_state_dict(state, strict=True)
    return report
