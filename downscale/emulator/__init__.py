"""The inference runtime: an :class:`Emulator` loaded from a bundle, its predict and postprocessing.

    import downscale
    emu = downscale.load("runs/perfect-model-iberia")
    print(emu.describe())
    fine = emu.downscale(coarse)          # xr.Dataset on the RCM grid

Everything above this layer (``train``, ``transfer``, ``apply``, ``evaluate``) predicts through it.
"""

from downscale.emulator.runtime import Emulator, EmulatorRef, cached_emulator, load

__all__ = ["Emulator", "EmulatorRef", "cached_emulator", "load"]
