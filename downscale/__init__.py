"""downscale: neural-network emulators of regional climate models.

Train an emulator once (``downscale train``), then downscale any projection in
seconds::

    import downscale
    emu = downscale.load("runs/perfect-model-iberia")
    fine = emu.downscale(coarse_dataset)   # xr.Dataset on the RCM grid

Importing this package is cheap: torch and the data stack load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from downscale._version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from downscale.data.options import set_options
    from downscale.emulator import Emulator, load
    from downscale.recipe import Recipe, load_recipe
    from downscale.train.run import train

__all__ = ["Emulator", "Recipe", "__version__", "load", "load_recipe", "set_options", "train"]

_LAZY = {
    "Emulator": "downscale.emulator",
    "load": "downscale.emulator",
    "Recipe": "downscale.recipe",
    "load_recipe": "downscale.recipe",
    "train": "downscale.train.run",
    "set_options": "downscale.data.options",  # plausibility="raise" | "warn" | "off"
}


def _lazy_getattr(package: str, table: dict[str, str]) -> Any:
    """A module ``__getattr__`` (PEP 562) that imports ``table[name]`` on first use of ``name``."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib

        return getattr(importlib.import_module(module), name)

    return __getattr__


__getattr__ = _lazy_getattr(__name__, _LAZY)
