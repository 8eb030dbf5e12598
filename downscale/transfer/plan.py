"""The transfer plan: source bundle → loading strategy → modifiers, run inside the one training loop.

It is the :class:`~downscale.train.plan.ScratchPlan` of :func:`downscale.train.run.train` with every step
filled in: to check the variables, choose the normaliser (:meth:`TransferPlan.normaliser`), load and modify the
freshly built model (:meth:`TransferPlan.prepare`), restore the optimiser and write the lineage
(:attr:`TransferPlan.lineage`).
"""

from __future__ import annotations

from typing import Any

from downscale.bundle import Bundle, BundleMeta
from downscale.errors import BundleError, DataError
from downscale.recipe import TransferSection
from downscale.train.plan import ScratchPlan

__all__ = ["TransferPlan"]


def _grid_text(meta: BundleMeta) -> str | None:
    try:
        return meta.fine_grid().describe()
    except Exception:
        return None


def _head_labels(targets: list[str], heads: dict[str, str]) -> list[str]:
    from downscale.models.losses import HEADS

    by_class = {HEADS.get(n).__name__: HEADS.get(n) for n in HEADS.names()}
    out = []
    for t in targets:
        cls = by_class.get(heads.get(t, ""))
        out += [f"{t}:{heads.get(t)}:{i}" for i in range(cls.channels if cls else 1)]
    return out


class TransferPlan(ScratchPlan):
    """What ``downscale transfer`` does to a new model, from a parent bundle and ``recipe.transfer``."""

    allows_zero_shot = True

    def __init__(self, parent: Bundle, cfg: TransferSection | None) -> None:
        self.parent = parent
        self.cfg = cfg if cfg is not None else TransferSection()
        self.meta = parent.meta
        self.lineage: dict[str, Any] = {
            "parent": {
                "bundle": parent.id,
                "name": self.meta.name,
                "path": str(parent.path) if parent.path else None,
                "framework": self.meta.framework,
                "fine_grid": _grid_text(self.meta),
                "train": self.meta.periods.get("train"),
            },
            "ancestors": [parent.id, *(self.meta.lineage or {}).get("ancestors", [])],
        }

    @property
    def fingerprint(self) -> str:
        return f"transfer-from-{self.parent.id}"

    # ------------------------------------------------------------------ variables

    def check_variables(self, paired: Any) -> None:
        """Refuse new data whose predictors cannot be mapped to the bundle's, unless adapt_input."""
        want_p, want_s = self.meta.predictor_names, self.meta.static_names
        want_f = list(self.meta.forcing_names)
        have_p, have_s, have_f = paired.predictors, paired.static_names, list(paired.forcing_names)
        if self.cfg.loading == "resume" or not self.cfg.adapt_input:
            for kind, want, have in (
                ("predictors", want_p, have_p),
                ("static fields", want_s, have_s),
                ("forcings", want_f, have_f),
            ):
                if want == have:
                    continue
                missing = [v for v in want if v not in have]
                extra = [v for v in have if v not in want]
                what = []
                if missing:
                    what.append(f"missing {', '.join(missing)}")
                if extra:
                    what.append(f"new {', '.join(extra)}")
                if not what:
                    what.append("in another order")
                raise DataError(
                    f"bundle {self.parent.id} cannot be mapped to the new data's {kind}: {'; '.join(what)}",
                    found=", ".join(have) or "none",
                    expected=", ".join(want) or "none",
                    fix="set transfer.adapt_input: true to map the input channels by name (new ones start at zero), "
                    f"or give the new data the bundle's {kind}"
                    + (" (resume needs identical variables)" if self.cfg.loading == "resume" else ""),
                )
        if self.cfg.loading == "resume" and self.meta.target_names != paired.targets:
            raise DataError(
                "resume needs the bundle's targets",
                found=", ".join(paired.targets),
                expected=", ".join(self.meta.target_names),
                fix="use transfer.loading: shape_filtered",
            )

    # ------------------------------------------------------------------ normaliser

    def normaliser(self, fitted: Any, *, zero_shot: bool = False) -> Any:
        """The bundle's statistics for the variables it has (``normaliser: parent``), else ``fitted``'s.

        Zero-shot (no training day of the new pair): the targets' statistics are always the bundle's,
        so that nothing about the new targets reaches the model."""
        from downscale.data.normalise import Normaliser

        parent = self.meta.make_normaliser()
        inherit = self.cfg.normaliser == "parent" or self.cfg.loading == "resume"
        record: dict[str, list[str]] = {"inherited": [], "fitted": []}
        groups = {}
        for group in ("predictors", "targets", "static"):
            new = dict(getattr(fitted, group))
            old = getattr(parent, group)
            for name in list(new):
                if (inherit or (zero_shot and group == "targets")) and name in old:
                    new[name] = old[name]
                    record["inherited"].append(f"{group[:-1] if group != 'static' else group}:{name}")
                else:
                    record["fitted"].append(f"{group[:-1] if group != 'static' else group}:{name}")
            groups[group] = new
        self.lineage["normaliser"] = record
        return Normaliser(**groups)

    # ------------------------------------------------------------------ model

    def finalise(self, model: Any, state: dict[str, Any]) -> dict[str, Any]:
        """The weights to bundle: low-rank adapters, if any, folded into the plain model's layers."""
        from downscale.transfer.lora import LoRA, merge_lora

        if not any(isinstance(m, LoRA) for m in model.modules()):
            return state
        model.load_state_dict(state)
        merge_lora(model)
        return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

    def _parent_model(self) -> Any:
        from downscale.models import create_model

        m = self.meta.model
        return create_model(
            m.type,
            in_channels=len(self.meta.predictors),
            out_channels=m.out_channels,
            n_forcings=m.n_forcings,
            n_static=len(self.meta.static),
            **m.kwargs,
        )

    def restore_optimizer(self, trainer: Any) -> None:
        """``loading: resume``: give the trainer's optimiser the state stored in the parent bundle (its
        AdamW moments after its last epoch, when it was trained with ``train.save_optimizer: true``)."""
        if self.cfg.loading != "resume":
            return
        saved = self.parent.optimizer
        if not saved:
            self.lineage["optimizer_state"] = "fresh: the bundle holds none (train it with train.save_optimizer: true)"
            return
        restored = trainer.load_optimizer_state_by_name(saved)
        trained = sum(1 for group in trainer.optimizer.param_groups for _ in group["params"])
        self.lineage["optimizer_state"] = f"restored from the bundle for {len(restored)} of {trained} trained tensors"

    def prepare(
        self, model: Any, paired: Any, loss: Any, *, model_type: str, model_kwargs: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Load the parent's weights into ``model`` and apply the modifiers; returns optimiser param groups."""
        from downscale.transfer.adapt import probe_layout, remap_state
        from downscale.transfer.loading import load_weights
        from downscale.transfer.modifiers import freeze, param_groups

        cfg, meta = self.cfg, self.meta
        pm = meta.model
        if cfg.loading != "shape_filtered" and (pm.type != model_type or dict(pm.kwargs) != dict(model_kwargs)):
            raise BundleError(
                f"{cfg.loading} loading needs the bundle's model",
                found=f"{model_type} {model_kwargs}",
                expected=f"{pm.type} {pm.kwargs}",
                fix="copy the bundle's model section into the recipe (see 'downscale describe'), or use shape_filtered",
            )
        parent_targets = meta.target_names
        old_out = _head_labels(parent_targets, meta.loss.get("heads", {}))
        new_out = _head_labels(paired.targets, loss.describe()["heads"])
        targets_changed = old_out != new_out
        if targets_changed and cfg.reset_head == "never":
            raise DataError(
                "the targets or their heads changed but transfer.reset_head is 'never'",
                found=", ".join(new_out),
                expected=", ".join(old_out),
                fix="set transfer.reset_head: auto (keeps the rows of the shared targets) or always",
            )
        adapted: dict[str, Any] = {}
        notes: dict[str, Any] = {}
        dropped: dict[str, str] = {}
        layouts = None
        if cfg.adapt_input or (targets_changed and cfg.reset_head == "auto") or cfg.reset_head == "always":
            shapes = {"coarse": tuple(paired.x.shape[-2:]), "fine": tuple(paired.y.shape[-2:])}
            old = probe_layout(
                self._parent_model(),
                predictors=meta.predictor_names,
                static=meta.static_names,
                forcings=list(meta.forcing_names),
                out_labels=old_out,
                **shapes,
            )
            new = probe_layout(
                model,
                predictors=paired.predictors,
                static=paired.static_names,
                forcings=list(paired.forcing_names),
                out_labels=new_out,
                **shapes,
            )
            layouts = (old, new)
            adapted, notes = remap_state(
                self.parent.weights,
                model,
                new,
                old,
                inputs=cfg.adapt_input,
                outputs=cfg.reset_head == "auto",
                init=cfg.new_channel_init,
            )
            if cfg.reset_head == "always" and new.output_module:
                prefix = new.output_module + "."
                dropped = {k: "reset_head: always" for k in self.parent.weights if k.startswith(prefix)}
                adapted = {k: v for k, v in adapted.items() if k not in dropped}
        report = load_weights(model, self.parent.weights, cfg.loading, adapted=adapted, notes=notes, dropped=dropped)
        lora: list[str] = []
        if cfg.lora is not None:
            from downscale.transfer.lora import add_lora
            from downscale.transfer.modifiers import match_modules

            names = [
                n for pattern in cfg.lora.modules for n in match_modules(model, pattern, key="transfer.lora.modules")
            ]
            lora = add_lora(model, names, cfg.lora.rank, cfg.lora.alpha)
        frozen = freeze(model, list(cfg.freeze))
        groups, scales = param_groups(model, dict(cfg.lr_scale), anchor=cfg.anchor)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.lineage.update(
            {
                "loading": report.to_dict(),
                "adapt_input": cfg.adapt_input,
                "reset_head": cfg.reset_head,
                "output_layer": layouts[1].output_module if layouts else None,
                "targets_changed": targets_changed,
                "frozen": frozen,
                **(
                    {"lora": {"rank": cfg.lora.rank, "alpha": cfg.lora.alpha, "layers": lora, "merged": True}}
                    if lora and cfg.lora is not None
                    else {}
                ),
                "lr_scale": dict(cfg.lr_scale),
                "parameters_per_lr_scale": scales,
                **({"anchor": cfg.anchor} if cfg.anchor else {}),
                "trainable_parameters": int(trainable),
            }
        )
        return groups
