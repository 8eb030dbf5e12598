"""Training throughput of the real engine against a bare PyTorch loop, on synthetic CORDEX ML-Bench-shaped data.

    python benchmarks/train_throughput.py --model simple_cnn --device cpu          # small defaults: ~2 min on 2 cores
    python benchmarks/train_throughput.py --model simple_cnn --device cuda --batch-size 64 --samples 512 \
        --steps 64 --warmup 10 --repeats 5 --json out.json

Data (seeded): ``--samples`` days of 15 predictor channels on 16x16 and 2 targets on 128x128 (the CORDEX ML-Bench
shapes), held in memory as :class:`downscale.data.dataset.SampleArrays` built straight from numpy.

* **engine**: :meth:`downscale.train.engine.Trainer.fit` over the loader ``downscale train`` builds
  (``downscale.train.run._loader`` on a :class:`SampleDataset`), MSE criterion, AdamW, the engine's defaults
  otherwise.  Timed from the call to ``fit`` to its return: batching and collation, host-to-device copies, the
  per-step loss read-back, the learning-rate schedule and the per-epoch best-weights copy are all included.
* **bare**: the same model (same initial weights), criterion, optimizer, batch size and autocast dtype
  (``--amp``, default ``auto`` as in recipes), on tensors already on the device, indexed by a random
  permutation: forward, loss, backward, ``optimizer.step()`` -- nothing else.

Both run the same number of optimizer steps per repeat after the same number of warm-up steps; the ``--repeats``
timed runs of the two loops alternate (so drifting machine load hits both alike) and the median of each is kept.
FLOPs per sample are those of one forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``
(matmuls and convolutions; interpolation and element-wise work are not counted), so GFLOP/s is a lower bound.

Not part of the test suite; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

PREDICTORS, COARSE = 15, (16, 16)
TARGETS, FINE = ("tas", "pr"), (128, 128)


def synthetic_arrays(n: int, seed: int, n_forcings: int = 0, n_static: int = 0):
    """Seeded, normalised-looking SampleArrays: smooth-ish predictors, targets tied to them, all cells valid."""
    from downscale.data.dataset import SampleArrays

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, PREDICTORS, *COARSE), dtype=np.float32)
    up = np.repeat(np.repeat(x[:, : len(TARGETS)], FINE[0] // COARSE[0], axis=2), FINE[1] // COARSE[1], axis=3)
    y = (up + 0.3 * rng.standard_normal((n, len(TARGETS), *FINE), dtype=np.float32)).astype(np.float32)
    m = np.ones(y.shape, np.uint8)
    f = rng.standard_normal((n, n_forcings), dtype=np.float32)
    s = rng.standard_normal((n_static, *FINE), dtype=np.float32)
    return SampleArrays(x=x, f=f, s=s, y=y, m=m, indices=np.arange(n))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _subset(arrays, n: int):
    from downscale.data.dataset import SampleArrays

    return SampleArrays(
        x=arrays.x[:n], f=arrays.f[:n], s=arrays.s, y=arrays.y[:n], m=arrays.m[:n], indices=arrays.indices[:n]
    )


def _loader(dataset, batch_size: int, seed: int, num_workers: int):
    """The training loader ``downscale train`` builds (``downscale.train.run._loader``), shuffled and seeded."""
    from downscale.train.run import _loader as train_loader

    return train_loader(dataset, batch_size, shuffle=True, seed=seed, num_workers=num_workers)


def _first_batch(dataset, batch_size: int) -> dict[str, torch.Tensor]:
    from torch.utils.data import default_collate

    return default_collate([dataset[i] for i in range(min(batch_size, len(dataset)))])


def flops_per_sample(model: torch.nn.Module, loss_fn, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one forward + backward (model and loss), per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    model.zero_grad(set_to_none=True)
    with FlopCounterMode(display=False) as counter:
        out = model(batch["x"], batch["f"], batch["s"], tuple(batch["y"].shape[-2:]))
        loss_fn(out[:, None], batch["y"], batch["m"]).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(batch["x"])


class EngineLoop:
    """``Trainer.fit`` over the training loader; each :meth:`run` is one timed ``fit`` of whole epochs."""

    def __init__(self, model, loss_fn, dataset, *, batch_size, steps, warmup, lr, device, seed, num_workers, amp):
        import inspect

        from downscale.data.dataset import SampleDataset
        from downscale.train.engine import Trainer

        self.per_epoch = math.ceil(len(dataset) / batch_size)
        self.epochs = max(1, math.ceil(steps / self.per_epoch))
        self.n, self.device = len(dataset), device
        extra = {"amp": amp} if "amp" in inspect.signature(Trainer).parameters else {}
        self.trainer = Trainer(model, loss_fn, epochs=1, lr=lr, device=device, progress=False, **extra)
        self.amp_dtype = getattr(self.trainer, "amp_dtype", None)
        if warmup:
            warm = SampleDataset(_subset(dataset.arrays, min(len(dataset), warmup * batch_size)))
            self.trainer.fit(_loader(warm, batch_size, seed, num_workers))
        self.trainer.epochs = self.epochs
        self.loader = _loader(dataset, batch_size, seed, num_workers)

    @property
    def steps(self) -> int:
        return self.epochs * self.per_epoch

    def run(self) -> dict[str, float]:
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        fit = self.trainer.fit(self.loader)
        _sync(self.device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        samples = self.epochs * self.n
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "samples": samples,
            "samples_per_s": samples / seconds,
            "loss": fit.history[-1].train_loss,
        }


class BareLoop:
    """Forward, loss, backward, ``optimizer.step()`` on tensors already on the device; nothing else."""

    def __init__(self, model, loss_fn, arrays, *, batch_size, steps, warmup, lr, device, seed, amp_dtype=None):
        self.model, self.loss_fn, self.device = model.to(device).train(), loss_fn, device
        self.amp_dtype = amp_dtype  # the engine's autocast dtype, so that both loops do the same arithmetic
        self.scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.x = torch.from_numpy(arrays.x).to(device)
        self.f = torch.from_numpy(arrays.f).to(device)
        self.y = torch.from_numpy(arrays.y).to(device)
        self.m = torch.from_numpy(arrays.m).to(device).bool()
        self.s = torch.from_numpy(arrays.s).to(device)
        self.batch_size, self.steps = batch_size, steps
        self.gen = torch.Generator().manual_seed(seed)
        self._order: list[torch.Tensor] = []
        for _ in range(warmup):
            self._step()
        _sync(device)

    def _next_index(self) -> torch.Tensor:
        if not self._order:
            self._order = list(torch.randperm(len(self.x), generator=self.gen).split(self.batch_size))
        return self._order.pop(0).to(self.device)

    def _step(self) -> tuple[int, torch.Tensor]:
        idx = self._next_index()
        xb, fb, yb, mb = self.x[idx], self.f[idx], self.y[idx], self.m[idx]
        sb = self.s.expand(len(idx), *self.s.shape)
        self.opt.zero_grad(set_to_none=True)
        if self.amp_dtype is None:
            loss = self.loss_fn(self.model(xb, fb, sb, tuple(yb.shape[-2:]))[:, None], yb, mb)
        else:
            with torch.autocast(self.device.type, dtype=self.amp_dtype):
                out = self.model(xb, fb, sb, tuple(yb.shape[-2:]))
            loss = self.loss_fn(out.float()[:, None], yb, mb)
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
        return len(idx), loss

    def run(self) -> dict[str, float]:
        _sync(self.device)
        t0, c0 = time.perf_counter(), time.process_time()
        samples = 0
        for _ in range(self.steps):
            n, loss = self._step()
            samples += n
        _sync(self.device)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "samples": samples,
            "samples_per_s": samples / seconds,
            "loss": float(loss.detach()),
        }


def summarise(runs: list[dict[str, float]], steps: int, flops: float) -> dict[str, Any]:
    """The median repeat (by samples/s), with every repeat's rate kept."""
    rates = [r["samples_per_s"] for r in runs]
    med = runs[int(np.argsort(rates)[len(rates) // 2])]
    return {
        "steps": steps,
        "samples": med["samples"],
        "seconds": med["seconds"],
        "cpu_seconds": med["cpu_seconds"],
        "samples_per_s": med["samples_per_s"],
        "gflop_per_s": flops * med["samples_per_s"] / 1e9,
        "repeats_samples_per_s": rates,
        "repeats_cpu_seconds": [r["cpu_seconds"] for r in runs],
        "final_loss": runs[-1]["loss"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default="simple_cnn", help="a registered model (downscale.models.MODELS)")
    ap.add_argument("--model-kwargs", default="{}", help="JSON options for the model, e.g. '{\"width\": 64}'")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument(
        "--steps",
        type=int,
        default=4,
        help="timed optimizer steps per repeat (rounded up to whole epochs of --samples)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each loop, interleaved; the median is kept")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before each timed run")
    ap.add_argument("--samples", type=int, default=32, help="synthetic days held in memory (rounded to whole batches)")
    ap.add_argument("--forcings", type=int, default=0, help="1-D forcing channels")
    ap.add_argument("--static", type=int, default=0, help="static fine-grid channels (e.g. orography)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the engine run")
    ap.add_argument("--amp", default="auto", help="the engine's autocast (auto, bf16, fp16, off); bare follows it")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)

    from downscale.data.dataset import SampleDataset
    from downscale.models import create_model
    from downscale.models.losses import create_criterion
    from downscale.train.engine import seed_everything, select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    n = max(1, math.ceil(args.samples / args.batch_size)) * args.batch_size
    arrays = synthetic_arrays(n, args.seed, args.forcings, args.static)
    dataset = SampleDataset(arrays)
    loss_fn = create_criterion("mse", list(TARGETS))
    seed_everything(args.seed)
    model = create_model(
        args.model,
        in_channels=PREDICTORS,
        out_channels=loss_fn.out_channels,
        n_forcings=args.forcings,
        n_static=args.static,
        **json.loads(args.model_kwargs),
    )
    initial = copy.deepcopy(model.state_dict())
    params = int(sum(p.numel() for p in model.parameters()))

    flops = flops_per_sample(model, loss_fn, _first_batch(dataset, args.batch_size))

    engine_loop = EngineLoop(
        model,
        loss_fn,
        dataset,
        batch_size=args.batch_size,
        steps=args.steps,
        warmup=args.warmup,
        lr=args.lr,
        device=device,
        seed=args.seed,
        num_workers=args.num_workers,
        amp=args.amp,
    )
    bare_model = copy.deepcopy(model)
    bare_model.load_state_dict(initial)
    bare_loop = BareLoop(
        bare_model,
        loss_fn,
        arrays,
        batch_size=args.batch_size,
        steps=engine_loop.steps,
        warmup=args.warmup,
        lr=args.lr,
        device=device,
        seed=args.seed,
        amp_dtype=engine_loop.amp_dtype,
    )
    engine_runs, bare_runs = [], []
    for _ in range(args.repeats):  # interleaved, so that drifting machine load hits both alike
        engine_runs.append(engine_loop.run())
        bare_runs.append(bare_loop.run())
    engine = summarise(engine_runs, engine_loop.steps, flops)
    bare = summarise(bare_runs, engine_loop.steps, flops)
    ratio = engine["samples_per_s"] / bare["samples_per_s"]

    result = {
        "model": args.model,
        "model_kwargs": json.loads(args.model_kwargs),
        "parameters": params,
        "device": str(device),
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
        ),
        "amp": str(engine_loop.amp_dtype).replace("torch.", "") if engine_loop.amp_dtype else "off",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "shapes": {
            "x": [n, PREDICTORS, *COARSE],
            "y": [n, len(TARGETS), *FINE],
            "forcings": args.forcings,
            "static": args.static,
        },
        "batch_size": args.batch_size,
        "warmup_steps": args.warmup,
        "steps": engine["steps"],
        "repeats": args.repeats,
        "flops_per_sample": flops,
        "engine": engine,
        "bare": bare,
        "ratio": ratio,
        "target_ratio": 0.9,
    }
    print(markdown(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [
        f"**{r['model']}** ({r['parameters']:,} parameters) on {r['device']} ({r['device_name']}, "
        f"{r['threads']} threads, amp {r['amp']}), batch {r['batch_size']}, "
        f"median of {r['repeats']} x {r['steps']} timed steps after "
        f"{r['warmup_steps']} warm-up; x {tuple(r['shapes']['x'])}, y {tuple(r['shapes']['y'])}",
        "",
        "| loop | samples/s | ms/step | GFLOP/s |",
        "|---|---:|---:|---:|",
    ]
    for name in ("engine", "bare"):
        e = r[name]
        lines.append(
            f"| {name} | {e['samples_per_s']:.1f} | {1e3 * e['seconds'] / e['steps']:.1f} | {e['gflop_per_s']:.1f} |"
        )
    ok = "meets" if r["ratio"] >= r["target_ratio"] else "below"
    lines += [
        "",
        f"engine / bare = **{r['ratio']:.3f}** ({ok} the {r['target_ratio']} target); "
        f"forward+backward = {r['flops_per_sample'] / 1e9:.3f} GFLOP per sample",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
