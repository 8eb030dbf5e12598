"""Kept for compatibility: ``downscale apply`` lives in :mod:`downscale.apply`."""

from __future__ import annotations

from downscale.apply import ApplyResult, downscale_files, output_name

__all__ = ["ApplyResult", "downscale_files", "output_name"]
