"""Transfer: reuse a pretrained emulator on a new GCM/RCM pair or domain.

Three plain stages, each recorded in the new bundle's lineage:

1. **source**: a bundle folder;
2. **loading** (:mod:`.loading`): ``weights_only``, ``shape_filtered`` or ``resume``;
3. **modifiers**: ``adapt_input`` and ``reset_head`` (:mod:`.adapt`, channels mapped by
   variable name), ``freeze``, ``lr_scale`` and ``anchor`` (:mod:`.modifiers`);

then the one training loop (:func:`downscale.train.run.train`, with the :class:`TransferPlan` in place of
its default from-scratch plan), on k-shot days (:mod:`downscale.data.shots`) and/or several sources at once
(:mod:`downscale.train.sources`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from downscale import _lazy_getattr

if TYPE_CHECKING:  # pragma: no cover
    from downscale.data.shots import select_shots
    from downscale.emulator.lineage import describe_lineage
    from downscale.transfer.plan import TransferPlan
    from downscale.transfer.run import transfer

__all__ = ["TransferPlan", "describe_lineage", "select_shots", "transfer"]

_LAZY = {
    "TransferPlan": "downscale.transfer.plan",
    "describe_lineage": "downscale.emulator.lineage",
    "select_shots": "downscale.data.shots",
    "transfer": "downscale.transfer.run",
}


__getattr__ = _lazy_getattr(__name__, _LAZY)
