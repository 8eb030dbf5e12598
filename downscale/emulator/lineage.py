"""Readable lines for a bundle's lineage (``downscale describe``)."""

from __future__ import annotations

from typing import Any

__all__ = ["describe_lineage"]


def _short(items: list[str], n: int = 6) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "") if items else "none"


def describe_lineage(lineage: dict[str, Any]) -> list[str]:
    parent = lineage.get("parent", {})
    load = lineage.get("loading", {})
    lines = [
        (
            f"lineage:    transferred from bundle {parent.get('bundle')} ({parent.get('name')}, "
            f"{parent.get('framework')}, trained on {parent.get('train')})"
        ),
        (
            f"  loading:  {load.get('strategy')}: {load.get('transferred', 0)} tensors transferred, "
            f"{len(load.get('skipped', {}))} skipped, {len(load.get('adapted', {}))} adapted, "
            f"{len(load.get('initialised', []))} initialised"
        ),
    ]
    for key, why in list(load.get("skipped", {}).items())[:8]:
        lines.append(f"  skipped:  {key} ({why})")
    for key, how in list(load.get("adapted", {}).items())[:8]:
        lines.append(f"  adapted:  {key} ({how})")
    lines.append(f"  frozen:   {_short(lineage.get('frozen', []))}")
    lora = lineage.get("lora")
    if lora:
        lines.append(f"  lora:     rank {lora['rank']} on {_short(lora['layers'], 4)}, merged into the weights")
    if lineage.get("lr_scale"):
        lines.append("  lr scale: " + ", ".join(f"{k} x{v}" for k, v in lineage["lr_scale"].items()))
    if lineage.get("optimizer_state"):
        lines.append(f"  optimiser: {lineage['optimizer_state']}")
    if lineage.get("anchor"):
        lines.append(f"  anchor:   trained weights decay towards the parent's (L2-SP, strength {lineage['anchor']:g})")
    norm = lineage.get("normaliser")
    if norm:
        lines.append(
            f"  normaliser: inherited {_short(norm.get('inherited', []))}; fitted {_short(norm.get('fitted', []))}"
        )
    shots = lineage.get("shots")
    if shots:
        days = shots.get("train_days", [])
        lines.append(
            f"  k-shot:   {shots.get('size')} (seed {shots.get('seed')}, stratified by {shots.get('stratified_by')}): "
            f"train {_short(days, 4)}; validation {_short(shots.get('validation_days', []), 4)}"
        )
        if not days:
            lines.append("  zero-shot: no training on the new data")
    if len(lineage.get("ancestors", [])) > 1:
        lines.append("  ancestors: " + " <- ".join(lineage["ancestors"]))
    return lines
