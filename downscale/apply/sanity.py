"""The sanity checks of downscaled values: they live in :mod:`downscale.emulator.sanity` (the Python API runs
them too); this module re-exports them for ``downscale apply`` and older imports."""

from __future__ import annotations

from downscale.emulator.sanity import MAX_LISTED, Violation, check_chunk, plausible_bounds

__all__ = ["MAX_LISTED", "Violation", "check_chunk", "plausible_bounds"]
