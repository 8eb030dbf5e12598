"""Which channel of which layer carries which variable, found by probing, and name-wise weight remapping.

The model code is not read: each layer's *input channels* are labelled by running
the network (in float64, on random inputs) once, then once per input variable with
only that variable perturbed.  An input channel of a layer that changes when exactly
one variable is perturbed, and for no other, is a copy of that variable (possibly
resized): ``x:tas``, ``s:orog`` or ``f:cos_doy``.  All other channels are hidden
features, ``h:0``, ``h:1``, ... in order.  The *output layer* is the last layer
with weights whose output has as many channels as the model has outputs; its
channels are labelled ``<target>:<head>:<i>``.

This finds every place where a predictor enters -- the stem of a UNet, the
fine-grid merge of the simple CNN that concatenates the upsampled predictors, a
FiLM layer fed by the forcings -- for any registered backbone, the way timm's
``adapt_input_conv`` does for the first convolution alone.  Remapping a weight then
copies the parent's slices by label; channels the parent lacks start at zero (or
``init`` · N(0, 1)), so with zero-initialised new predictors the adapted model
computes exactly what the parent computed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["Layout", "probe_layout", "remap_state"]


@dataclass
class Layout:
    inputs: dict[str, list[str]] = field(default_factory=dict)  # module name -> label per input channel
    output_module: str | None = None
    outputs: list[str] = field(default_factory=list)  # label per output channel of output_module


def _leaves(model: nn.Module) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}


def _channel_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, (nn.Linear, nn.LayerNorm)) else 1


def probe_layout(
    model: nn.Module,
    *,
    predictors: list[str],
    static: list[str],
    forcings: list[str],
    out_labels: list[str],
    coarse: tuple[int, int],
    fine: tuple[int, int],
) -> Layout:
    """Label the input channels of every layer and the output channels of the output layer."""
    net = copy.deepcopy(model).double().eval()
    leaves = _leaves(net)
    seen_in: dict[str, torch.Tensor] = {}
    order: list[tuple[str, torch.Tensor]] = []

    def pre(name: str):
        def hook(module, args):
            if name not in seen_in and args and isinstance(args[0], torch.Tensor):
                t = args[0].detach()
                seen_in[name] = t.movedim(_channel_dim(module), 1) if t.ndim >= 2 else t

        return hook

    def post(name: str):
        def hook(module, args, out):
            if isinstance(out, torch.Tensor) and out.ndim >= 2:
                order.append((name, out.detach().movedim(_channel_dim(module), 1)))

        return hook

    hooks = [m.register_forward_pre_hook(pre(n)) for n, m in leaves.items()]
    hooks += [m.register_forward_hook(post(n)) for n, m in leaves.items()]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4, len(predictors), *coarse, generator=gen, dtype=torch.float64)
    f = torch.randn(4, len(forcings), generator=gen, dtype=torch.float64)
    s = torch.randn(4, len(static), *fine, generator=gen, dtype=torch.float64)

    def run(x, f, s) -> dict[str, torch.Tensor]:
        seen_in.clear()
        order.clear()
        torch.manual_seed(0)  # the same noise in every pass of a stochastic model
        with torch.no_grad():
            net(x, f, s, tuple(fine))
        return dict(seen_in)

    try:
        base = run(x, f, s)
        outputs = list(order)
        perturbed: list[tuple[str, dict[str, torch.Tensor]]] = []
        for group, names, t in (("x", predictors, x), ("s", static, s), ("f", forcings, f)):
            for c, name in enumerate(names):
                bumped = t.clone()
                bumped[:, c] += 1.0 + torch.rand(bumped[:, c].shape, generator=gen, dtype=torch.float64)
                args = {"x": (bumped, f, s), "s": (x, f, bumped), "f": (x, bumped, s)}[group]
                perturbed.append((f"{group}:{name}", run(*args)))
    finally:
        for h in hooks:
            h.remove()

    layout = Layout()
    for name, inp in base.items():
        if inp.ndim < 2:
            continue
        reduce = [d for d in range(inp.ndim) if d != 1]
        changed = (
            torch.stack([((out[name] - inp).abs().amax(dim=reduce) > 0) for _, out in perturbed if name in out])
            if perturbed
            else torch.zeros(0, inp.shape[1], dtype=torch.bool)
        )
        # a channel that is constant in the unperturbed pass (e.g. a ReLU unit that is off everywhere)
        # carries no variable, even if one perturbation happens to switch it on
        varies = inp.transpose(0, 1).reshape(inp.shape[1], -1).std(dim=1) > 0
        labels, hidden = [], 0
        for c in range(inp.shape[1]):
            deps = torch.nonzero(changed[:, c]).flatten().tolist() if len(changed) else []
            if len(deps) == 1 and bool(varies[c]):
                labels.append(perturbed[deps[0]][0])
            else:
                labels.append(f"h:{hidden}")
                hidden += 1
        layout.inputs[name] = labels
    n_out = len(out_labels)
    last = [n for n, t in outputs if t.shape[1] == n_out]
    if last:
        layout.output_module = last[-1]
        layout.outputs = list(out_labels)
    return layout


def _pairs(new: list[str], old: list[str]) -> tuple[list[int], list[int]]:
    pos = {lab: i for i, lab in enumerate(old)}
    keep = [(i, pos[lab]) for i, lab in enumerate(new) if lab in pos]
    return [a for a, _ in keep], [b for _, b in keep]


def remap_state(
    parent: dict[str, torch.Tensor],
    model: nn.Module,
    new: Layout,
    old: Layout,
    *,
    inputs: bool,
    outputs: bool,
    init: float = 0.0,
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The parent's tensors reshaped to ``model``'s where channels can be matched by label.

    ``inputs``: remap the input channels of layers whose shapes differ; ``outputs``: remap the
    output layer's rows by target.  Returns the tensors (only those remapped) and a note per tensor.
    """
    state = model.state_dict()
    modules = dict(model.named_modules())
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    notes: dict[str, str] = {}
    for key, target in state.items():
        src = parent.get(key)
        if src is None:
            continue
        mod_name, _, pname = key.rpartition(".")
        module = modules.get(mod_name)
        maps: dict[int, tuple[list[int], list[int]]] = {}
        words = []
        is_out = outputs and mod_name == new.output_module and mod_name == old.output_module
        if is_out and new.outputs != old.outputs and target.ndim >= 1:
            maps[0] = _pairs(new.outputs, old.outputs)
            fresh = [lab for lab in new.outputs if lab not in old.outputs]
            words.append("output rows by target" + (f"; new {', '.join(fresh)} initialised" if fresh else ""))
        nl, ol = new.inputs.get(mod_name), old.inputs.get(mod_name)
        weighted = isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))
        per_input = (weighted and pname == "weight") or (not weighted and target.ndim == 1)  # norms: one per channel
        if inputs and per_input and nl is not None and ol is not None and nl != ol:
            dim = 1 if weighted else 0
            mappable = (
                not isinstance(module, nn.ConvTranspose2d)
                and target.shape[dim] == len(nl)
                and src.shape[dim] == len(ol)
                # the hidden channels must be the same: a change of variables, not of the architecture
                and sorted(x for x in nl if x.startswith("h:")) == sorted(x for x in ol if x.startswith("h:"))
            )
        else:
            mappable = False
        if mappable and nl is not None and ol is not None:  # (mappable implies both; said again for the type checker)
            maps[dim] = _pairs(nl, ol)
            added = [lab for lab in nl if lab not in ol]
            dropped = [lab for lab in ol if lab not in nl]
            words.append(
                "input channels by name"
                + (f"; added {', '.join(added)}" if added else "")
                + (f"; dropped {', '.join(dropped)}" if dropped else "")
            )
            if target.ndim >= 2 and added:
                fresh_cols = [i for i, lab in enumerate(nl) if lab not in ol]
                target = target.clone()
                cols = target[:, fresh_cols]
                target[:, fresh_cols] = torch.randn(cols.shape, generator=gen, dtype=cols.dtype) * init if init else 0.0
        if not maps:
            continue
        other = [d for d in range(target.ndim) if d not in maps]
        if any(src.shape[d] != target.shape[d] for d in other):
            continue
        result = target.clone()
        block = src
        for d, (_, pidx) in maps.items():
            block = block.index_select(d, torch.as_tensor(pidx, dtype=torch.long))
        if 0 in maps and 1 in maps:
            result[torch.as_tensor(maps[0][0])[:, None], torch.as_tensor(maps[1][0])[None, :]] = block
        elif 0 in maps:
            result[torch.as_tensor(maps[0][0], dtype=torch.long)] = block
        else:
            result[:, torch.as_tensor(maps[1][0], dtype=torch.long)] = block
        out[key] = result
        notes[key] = "; ".join(words)
    return out, notes
