"""The plan a training run follows for its starting weights: from scratch (:class:`ScratchPlan`, the default), or
from a pretrained bundle (:class:`downscale.transfer.TransferPlan`, which subclasses it).

:func:`downscale.train.run.train` calls the plan at fixed points, the same for every run: to check the data's
variables, to choose the normaliser, to prepare the freshly built model (load and modify weights; returns the
optimiser's parameter groups), to restore an optimiser state, and to finalise the weights that go into the bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from downscale.data.normalise import Normaliser
    from downscale.data.pairing import PairedData
    from downscale.models.losses import Criterion
    from downscale.train.engine import Trainer

__all__ = ["ScratchPlan"]


class ScratchPlan:
    """Training from randomly initialised weights: every step is the identity."""

    #: recorded in the bundle (``None``: the bundle has no parent)
    lineage: dict[str, Any] | None = None
    #: a zero-shot run (no training day) is only meaningful from pretrained weights
    allows_zero_shot = False

    @property
    def fingerprint(self) -> str:
        """Added to the checkpoint fingerprint (a resumed run must follow the same plan)."""
        return ""

    def check_variables(self, paired: PairedData) -> None:
        """Refuse data the starting weights cannot take (nothing to refuse from scratch)."""

    def normaliser(self, fitted: Normaliser, *, zero_shot: bool = False) -> Normaliser:
        """The normaliser to train with: the one fitted on the training days."""
        return fitted

    def prepare(
        self,
        model: torch.nn.Module,
        paired: PairedData,
        loss: Criterion,
        *,
        model_type: str,
        model_kwargs: dict[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Load and modify the starting weights; the optimiser's parameter groups (None: all parameters)."""
        return None

    def restore_optimizer(self, trainer: Trainer) -> None:
        """Give the optimiser a saved state (none from scratch)."""

    def finalise(self, model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights that go into the bundle."""
        return state
