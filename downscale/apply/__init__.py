"""Batch downscaling of CMIP projections: ``downscale apply``.

* :mod:`downscale.apply.inputs` -- DRS names and attributes -> projections and periods; region subset with halo;
* :mod:`downscale.apply.store`  -- lock, work folder of finished chunks, atomic assembly of the output files;
* :mod:`downscale.apply.sanity` -- checks of every chunk (NaN where valid, negative precipitation, bounds);
* :mod:`downscale.apply.runner` -- serial or dask.distributed execution with a progress bar.
"""

from __future__ import annotations

from downscale.apply.runner import ApplyResult, downscale_files
from downscale.apply.store import output_name

__all__ = ["ApplyResult", "downscale_files", "output_name"]
