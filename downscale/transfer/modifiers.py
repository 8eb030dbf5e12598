"""Modifiers applied to the new model after loading: freezing, per-module learning rates, and the anchor.

Modules are named as in ``model.named_modules()`` (``stem``, ``coarse.0``, ``head``); a
pattern is a name or a glob (``coarse.*``, ``*film*``).  A pattern that matches no module
is an error that lists the closest names.
"""

from __future__ import annotations

import difflib
from fnmatch import fnmatchcase
from typing import Any

import torch

from downscale.errors import RecipeError

__all__ = ["freeze", "match_modules", "param_groups"]


def _names(model: torch.nn.Module) -> list[str]:
    return [n for n, _ in model.named_modules() if n]


def match_modules(model: torch.nn.Module, pattern: str, *, key: str) -> list[str]:
    """Module names matching ``pattern`` (name or glob); an unknown one fails with the close names."""
    names = _names(model)
    hits = [n for n in names if fnmatchcase(n, pattern)]
    if not hits:
        near = difflib.get_close_matches(pattern, names, n=5, cutoff=0.4)
        top = [n for n in names if "." not in n]
        raise RecipeError(
            f"{key}: no module named '{pattern}'",
            found=f"top-level modules {', '.join(top)}",
            expected=f"a module name or glob (close: {', '.join(near)})" if near else "a module name or glob",
            fix=f"did you mean '{near[0]}'?" if near else "see the names above, e.g. 'stem' or 'coarse.*'",
        )
    return hits


def _params_under(model: torch.nn.Module, modules: list[str]) -> dict[str, torch.nn.Parameter]:
    prefixes = tuple(m + "." for m in modules)
    return {n: p for n, p in model.named_parameters() if n.startswith(prefixes)}


def freeze(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Stop the gradients of the modules matching ``patterns``; returns the frozen module names."""
    frozen: list[str] = []
    for pattern in patterns:
        hits = match_modules(model, pattern, key="transfer.freeze")
        for p in _params_under(model, hits).values():
            p.requires_grad_(False)
        frozen += [h for h in hits if h not in frozen]
    return [n for n in frozen if not any(n.startswith(o + ".") for o in frozen)]  # outermost modules only


def param_groups(
    model: torch.nn.Module,
    lr_scale: dict[str, float],
    *,
    anchor: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Optimiser parameter groups: each trainable parameter takes the factor of the first pattern
    of ``lr_scale`` that matches its module (1 otherwise).  Frozen parameters are left out.

    ``anchor`` > 0 sets ``anchor_decay`` on every group: the engine then decays each parameter towards
    its value when training starts (the parent's weights) instead of leaving it free -- L2-SP
    (Li et al. 2018, "Explicit inductive bias for transfer learning with convolutional networks"),
    decoupled from the gradient as AdamW decouples its weight decay."""
    if anchor < 0:
        raise RecipeError("transfer.anchor is negative", found=anchor, fix="use a strength >= 0 (0: off)")
    owner: dict[str, float] = {}
    for pattern, factor in lr_scale.items():
        if factor < 0:
            raise RecipeError(f"transfer.lr_scale['{pattern}'] is negative", found=factor, fix="use a factor >= 0")
        for name in _params_under(model, match_modules(model, pattern, key="transfer.lr_scale")):
            owner.setdefault(name, float(factor))
    groups: dict[float, list[torch.nn.Parameter]] = {}
    counts: dict[float, int] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        factor = owner.get(name, 1.0)
        groups.setdefault(factor, []).append(p)
        counts[factor] = counts.get(factor, 0) + p.numel()
    out = [
        {"params": ps, "lr_scale": f, **({"anchor_decay": float(anchor)} if anchor else {})} for f, ps in groups.items()
    ]
    return out, {str(f): n for f, n in counts.items()}
