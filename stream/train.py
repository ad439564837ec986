"""Train a style: fit the generator to aligned (photo, stylised target) pairs.

    python -m stream.train --pairs ../shared/media/pairs/paprika --val cmp2 --name paprika

Training is resumable: the latest state lives in ``--cache`` (outside the repository) and a rerun
with the same arguments carries on from it. ``--export`` writes the TorchScript style and its JSON
sidecar from the latest state without training further.

Recipe (defaults below, all recorded in the sidecar): many small random crops at 0.5-1x of the
pairs' resolution, horizontal flips, the same random RGB channel permutation on photo and target
(half the crops), the same random gain and gamma on both (half the crops), loss = L1 + L1 of Sobel
edges (+ optionally L1 of a 4x low-pass), Adam with warm-up and cosine decay, and an exponential
moving average of the weights, which is what gets validated and shipped. Larger crops at exactly
the validation scale with a colour-weighted loss were tried first and learned a global green cast
from the forest-heavy pair. ``--crop 0`` trains on whole images instead: every GroupNorm of the
generator normalises over the whole frame, so only whole images are normalised as at inference
(slower per step; meant for fine-tuning a crop-trained run, with ``--init``).
bf16 autocast on CPUs with native bf16, CUDA when present.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from . import cpu, weights
from .deepen import blocks_of, deepened
from .errors import AnimestreamError
from .model import UNET_KEYS, Generator
from .narrow import narrowed
from .widen import widened
from .quality import baselines, half, psnr

CROP_PX = 128
BATCH = 8
SCALE_RANGE = (0.5, 1.0)  # of the pair's full resolution; validation is at 0.5
LR = 1e-3
EDGE_WEIGHT = 0.5
COLOR_AUG = 0.5  # probability of permuting a crop pair's RGB channels
TONE_AUG = 0.5  # probability of the same random gain and gamma on a crop pair
GAIN_RANGE = (0.75, 1.3)
GAMMA_RANGE = (0.7, 1.4)
LOWPASS_WEIGHT = 0.0
WARMUP_STEPS = 100
EMA_DECAY = 0.998
CHECKPOINT_EVERY = 50  # steps
VALIDATE_EVERY = 250  # steps
# On the CPU a step's tiles run forward and backward in micro-batches whose widest activation (the
# full-resolution one, in bf16) stays under this many bytes, and their gradients add up to the whole batch's:
# one 384² tile at a time took a full-width step of 4 from 8.34 to 5.15 s on the 2-core avx512-bf16 machine
# (`python bench/trainstep.py`), as the activations of a pass then stay in the CPU's caches.
MICRO_BATCH_BYTES = 8 << 20
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "animestream" / "train"


def load_pairs(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{stem: (photo, target)}`` as RGB uint8 for every ``*_photo.png`` with a ``*_target.png``."""
    pairs = {}
    for photo_path in sorted(folder.glob("*_photo.png")):
        stem = photo_path.name[: -len("_photo.png")]
        photo = cv2.imread(str(photo_path))
        target = cv2.imread(str(folder / f"{stem}_target.png"))
        if photo is None or target is None or photo.shape != target.shape:
            raise SystemExit(f"error: {folder}: pair {stem!r} is missing or mismatched")
        pairs[stem] = (cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), cv2.cvtColor(target, cv2.COLOR_BGR2RGB))
    return pairs


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div(127.5).sub(1.0)


def to_image(t: torch.Tensor) -> np.ndarray:
    return t.float().clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()


def _tone(t: torch.Tensor, gain: float, gamma: float) -> torch.Tensor:
    """``gain * v**gamma`` on [0, 1] values, for tensors in [-1, 1]."""
    return (t.add(1).mul(0.5).pow(gamma).mul(gain).clamp(0, 1)).mul(2).sub(1)


_PERMUTATIONS = [(0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


def pyramid(pairs: list[tuple[np.ndarray, np.ndarray]], crop: int,
            scales: tuple[float, float]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each pair resized to 7 scales across ``scales`` (never below ``crop``), as tensors."""
    levels = []
    for photo, target in pairs:
        for s in np.linspace(*scales, 7):
            h, w = photo.shape[:2]
            size = (max(crop, int(w * s)), max(crop, int(h * s)))
            levels.append((to_tensor(cv2.resize(photo, size, interpolation=cv2.INTER_AREA)),
                           to_tensor(cv2.resize(target, size, interpolation=cv2.INTER_AREA))))
    return levels


class CropSampler:
    """Random aligned crops from (input, target) tensor pairs at least ``crop`` pixels on each side.

    ``crop == 0`` samples whole images instead. The generator's GroupNorm layers normalise over the
    whole image, so a crop is normalised with other statistics than the full frame at inference.
    """

    def __init__(self, levels: list[tuple[torch.Tensor, torch.Tensor]], rng: random.Random, crop: int,
                 color_aug: float = 0.0, tone_aug: float = 0.0, gain: tuple[float, float] = GAIN_RANGE,
                 gamma: tuple[float, float] = GAMMA_RANGE):
        self.rng, self.crop, self.color_aug, self.tone_aug = rng, crop, color_aug, tone_aug
        self.gain, self.gamma = gain, gamma
        self.levels = levels

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` crops, or with ``crop == 0`` ``n`` differently augmented copies of one whole level."""
        xs, ys = [], []
        whole = None if self.crop else self.rng.choice(self.levels)
        for _ in range(n):
            if self.crop:
                x, y = self.rng.choice(self.levels)
                c = self.crop
                top = self.rng.randrange(x.shape[1] - c + 1)
                left = self.rng.randrange(x.shape[2] - c + 1)
                x, y = x[:, top:top + c, left:left + c], y[:, top:top + c, left:left + c]
            else:
                x, y = whole
            if self.rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if self.rng.random() < self.color_aug:
                order = self.rng.choice(_PERMUTATIONS)
                x, y = x[list(order)], y[list(order)]
            if self.rng.random() < self.tone_aug:
                gain, gamma = self.rng.uniform(*self.gain), self.rng.uniform(*self.gamma)
                x, y = (_tone(t, gain, gamma) for t in (x, y))
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)


def _sobel(t: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=t.dtype, device=t.device)
    kernels = torch.stack([k, k.t()]).unsqueeze(1).repeat(3, 1, 1, 1)
    return F.conv2d(F.pad(t, (1, 1, 1, 1), mode="replicate"), kernels, groups=3)


def style_loss(out: torch.Tensor, target: torch.Tensor, edge: float = EDGE_WEIGHT,
               lowpass: float = LOWPASS_WEIGHT, pixel: str = "l1") -> torch.Tensor:
    """L1 (or, with ``pixel="l2"``, squared error, what PSNR scores) on pixels, plus weighted L1 on
    Sobel edges (line art) and on a 4x low-pass (colour)."""
    out, target = out.float(), target.float()
    loss = F.mse_loss(out, target) if pixel == "l2" else F.l1_loss(out, target)
    if edge:
        loss = loss + edge * F.l1_loss(_sobel(out), _sobel(target))
    if lowpass:
        loss = loss + lowpass * F.l1_loss(F.avg_pool2d(out, 4), F.avg_pool2d(target, 4))
    return loss


def pick_device() -> tuple[torch.device, torch.dtype]:
    if torch.cuda.is_available():
        return torch.device("cuda"), torch.bfloat16
    return torch.device("cpu"), torch.bfloat16 if cpu.current().has_bf16 else torch.float32


@torch.inference_mode()
def validate(model: Generator, pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> float:
    """Mean PSNR (dB) of ``model`` on the given pairs, at half resolution, fp32."""
    model.eval()
    scores = []
    for photo, target in pairs:
        x = to_tensor(half(photo)).unsqueeze(0).to(device)
        scores.append(psnr(to_image(model(x)[0].cpu()), half(target)))
    return float(np.mean(scores))


def _lr_at(step: int, total: int, peak: float) -> float:
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS))
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def read_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict:
    """A checkpoint written by :class:`Run` (keys ``model``, ``ema``, ``opt``, ``step``, ``rng``, ``width``,
    ``blocks``, ``skip``, ``upsample``, ``guided_radius``, ``norm``, ``init_steps``), tensors on ``device``;
    anything else raises :class:`AnimestreamError`."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        if not isinstance(state, dict) or not {"model", "ema", "step"} <= state.keys():
            raise KeyError("model, ema or step")
        return state
    except (OSError, KeyError, RuntimeError, pickle.UnpicklingError) as e:
        raise AnimestreamError(f"{path}: not a training checkpoint of this command ({e})") from None


# What a run must be resumed with, as it was started: the checkpoint's key, its value in checkpoints
# written before the key existed (and for models without the attribute), and how the start is worded.
RESUME_AS_STARTED = (
    ("skip", False, lambda v: "with --skip" if v else "without --skip"),
    ("guided_radius", 0, lambda v: f"with guided filter radius {v}"),
    ("norm", "layer", lambda v: f"with --norm {v}"),
    ("unet", False, lambda v: "with --unet" if v else "without --unet"),
)


def micro_batch(batch: int, height: int, width: int, channels: int, device: torch.device) -> int:
    """Tiles per forward and backward pass within a step of ``batch`` tiles of ``height`` x ``width`` pixels
    whose widest activation has ``channels`` channels: on the CPU the largest divisor of ``batch`` whose
    activation (2 bytes a value) fits :data:`MICRO_BATCH_BYTES` (at least 1), elsewhere ``batch``."""
    if device.type != "cpu":
        return batch
    fits = max(1, MICRO_BATCH_BYTES // (height * width * channels * 2))
    return max(d for d in range(1, batch + 1) if batch % d == 0 and d <= fits)


def passes(x: torch.Tensor | list[torch.Tensor], y: torch.Tensor | list[torch.Tensor],
           micro: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A step's (inputs, targets) as the forward and backward passes it takes: a batch tensor in slices of
    ``micro``, a list of single pictures of different sizes one a pass."""
    if isinstance(x, list):
        return list(zip(x, y))
    return [(x[i:i + micro], y[i:i + micro]) for i in range(0, len(x), micro)]


def widest_channels(model: torch.nn.Module) -> int:
    """The output channels of ``model``'s first convolution: the full-resolution layers' width."""
    return next(m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d))


class Run:
    """A resumable training run: model, EMA copy, Adam and RNG, checkpointed in ``cache``."""

    def __init__(self, model: torch.nn.Module, cache: Path, device: torch.device, *, init_steps: int = 0):
        cache.mkdir(parents=True, exist_ok=True)
        self.ckpt_path, self.log_path, self.device = cache / "last.ckpt", cache / "log.jsonl", device
        self.model = model.to(device).to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).eval()
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, betas=(0.9, 0.99))
        self.step, self.rng = 0, random.Random(0)
        self.init_steps = init_steps  # steps of the runs this one started from (--init), for the record
        if self.ckpt_path.exists():
            state = read_checkpoint(self.ckpt_path, device)
            for key, default, started in RESUME_AS_STARTED:
                was = state.get(key, default)
                if type(default)(was) != type(default)(getattr(model, key, default)):
                    raise AnimestreamError(f"{self.ckpt_path}: this run was started {started(was)}; "
                                           "resume it the same way")
            self.model.load_state_dict(state["model"])
            self.ema.load_state_dict(state["ema"])
            self.opt.load_state_dict(state["opt"])
            self.step = state["step"]
            self.init_steps = state.get("init_steps", init_steps)
            self.rng.setstate(state["rng"])
            print(f"resumed {self.ckpt_path} at step {self.step}", file=sys.stderr)

    def _save(self) -> None:
        tmp = self.ckpt_path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                    "step": self.step, "rng": self.rng.getstate(),
                    "width": getattr(self.model, "width", 1.0), "blocks": getattr(self.model, "blocks", 4),
                    "skip": getattr(self.model, "skip", False), "upsample": getattr(self.model, "upsample", "align_corners"),
                    "guided_radius": getattr(self.model, "guided_radius", 0),
                    "norm": getattr(self.model, "norm", "layer"), "unet": getattr(self.model, "unet", False),
                    "init_steps": self.init_steps}, tmp)
        os.replace(tmp, self.ckpt_path)

    def _backward(self, x: torch.Tensor, y: torch.Tensor, batch: int, amp_dtype: torch.dtype,
                  loss_fn: Callable, extra_loss: Callable | None) -> float:
        """Forward and backward one micro-batch of a step of ``batch`` tiles, its loss weighted by its share of
        them so that the gradients add up to the whole batch's; that weighted loss."""
        model, device = self.model, self.device
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        y = y.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            out = model(x)
            extra = extra_loss(model, x, out, y) if extra_loss is not None else None
        loss = loss_fn(out, y) if extra is None else loss_fn(out, y) + extra
        loss = loss * (len(x) / batch)
        loss.backward()
        return loss.item()

    def fit(self, sampler, *, steps: int, lr: float, batch: int, amp_dtype: torch.dtype,
            loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
            validate_fn: Callable[[torch.nn.Module], float],
            extra_loss: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, torch.Tensor],
                                 torch.Tensor] | None = None
            ) -> None:
        """Train until ``steps`` optimiser steps, checkpointing and logging every
        :data:`CHECKPOINT_EVERY` steps and validating the EMA weights every :data:`VALIDATE_EVERY`.
        ``extra_loss(model, x, out, y)``, where given, is added to ``loss_fn(out, y)``; it runs under the same
        autocast as the forward pass, so it may run the model again (e.g. on a transformed ``x``). A step's
        tiles may run in micro-batches (:func:`micro_batch`); its gradient is the whole batch's all the same.
        A sampler may also give lists of single pictures of different sizes: each is a pass of its own,
        weighted 1 / their number."""
        model, device = self.model, self.device
        model.train()
        t0, losses, channels = time.perf_counter(), [], widest_channels(model)
        while self.step < steps:
            for group in self.opt.param_groups:
                group["lr"] = _lr_at(self.step, steps, lr)
            x, y = sampler.batch(batch)
            self.opt.zero_grad(set_to_none=True)
            micro = 1 if isinstance(x, list) else micro_batch(len(x), x.shape[2], x.shape[3], channels, device)
            total = sum(self._backward(xi, yi, len(x), amp_dtype, loss_fn, extra_loss)
                        for xi, yi in passes(x, y, micro))
            self.opt.step()
            with torch.no_grad():
                decay = min(EMA_DECAY, (1 + self.step) / (10 + self.step))
                for pe, pm in zip(self.ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            losses.append(total)
            self.step += 1
            if self.step % CHECKPOINT_EVERY == 0 or self.step == steps:
                self._save()
                record = {"step": self.step, "loss": round(float(np.mean(losses)), 4),
                          "s_per_step": round((time.perf_counter() - t0) / len(losses), 3)}
                if self.step % VALIDATE_EVERY == 0 or self.step == steps:
                    record["val_psnr"] = round(validate_fn(self.ema), 2)
                    model.train()
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                print(json.dumps(record), file=sys.stderr, flush=True)
                t0, losses = time.perf_counter(), []


def _init_weights(spec: str) -> tuple[int, dict, bool, str]:
    """(steps already trained, state_dict, skip, norm) of ``--init``: a run's ``last.ckpt`` (its EMA, and its
    steps plus those of the runs it started from) or a style (the steps its sidecar records)."""
    if spec.endswith(".ckpt"):
        state = read_checkpoint(spec)
        return (state["step"] + state.get("init_steps", 0), state["ema"], bool(state.get("skip", False)),
                str(state.get("norm", "layer")))
    style = weights.resolve(spec)
    model = weights.eager_generator(style)
    steps = style.meta.get("training_steps")
    return (steps if isinstance(steps, int) and steps > 0 else 0), model.state_dict(), model.skip, model.norm


def _load_init(model: Generator, state: dict, init_skip: bool) -> None:
    """Start ``model`` from ``--init`` weights. A ``--skip`` model started from a plain one keeps its
    features and starts its output at the photo; its ``photo_grade`` starts as the identity where the
    weights have none. Weights of a wider generator of the same depth start it from their most
    important channels (:func:`stream.narrow.narrowed`), those of a narrower one with its channels copied
    (:func:`stream.widen.widened`); those of a shallower one of the same width keep
    its blocks and add new ones as the identity (:func:`stream.deepen.deepened`); a ``unet`` model
    started from weights without skips keeps them at zero, as built. Anything else that does not fit
    raises RuntimeError."""
    target = model.state_dict()
    if blocks_of(state) < model.blocks:
        try:
            state = deepened(state, model)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
    if any(k in target and v.shape != target[k].shape for k, v in state.items()):
        try:
            first = "block_a.0.1.weight"  # the first convolution's output channels say which way
            narrower = first in state and state[first].shape[0] < target[first].shape[0]
            state = (widened if narrower else narrowed)(state, model)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    grade = {"photo_grade.weight", "photo_grade.bias"} & set(missing)
    if unexpected or set(missing) - grade - set(UNET_KEYS):
        raise RuntimeError(f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    if model.skip and not init_skip:
        model.start_from_photo()
    elif grade:
        model.start_grade_as_identity()


def _init_name(spec: str | None) -> str | None:
    """How the sidecar names ``--init``: a checkpoint by its run folder, never by an absolute path."""
    if spec is None:
        return None
    path = Path(spec)
    return f"{path.parent.name}/{path.name}" if spec.endswith(".ckpt") else (path.name if path.suffix else spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=Path, required=True, help="folder of NAME_photo.png / NAME_target.png pairs")
    p.add_argument("--val", action="append", required=True, help="pair stem held back for validation (repeatable)")
    p.add_argument("--name", required=True, help="style name; output is weights/NAME.pt + NAME.json")
    p.add_argument("--steps", type=int, default=6000, help="total optimiser steps (default: %(default)s)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier (lite styles < 1)")
    p.add_argument("--blocks", type=int, default=4, help="inverted residual blocks (default: %(default)s)")
    p.add_argument("--skip", action="store_true",
                   help="add the photo to the output and start from it (see stream.model): for styles "
                        "that keep most of the photo; an --init without it keeps its features only")
    p.add_argument("--cache", type=Path, default=None, help=f"checkpoint folder (default: {DEFAULT_CACHE}/NAME)")
    p.add_argument("--out", type=Path, default=Path("weights"), help="where the style is exported")
    p.add_argument("--source", default="", help="where the training pairs come from (for the sidecar)")
    p.add_argument("--license", default="non-commercial (inherited from the training data)")
    p.add_argument("--export", action="store_true", help="only export the latest checkpoint")
    p.add_argument("--init", metavar="STYLE", help="start a new run from this style's weights (a name, a .pt "
                   "file, or another run's last.ckpt, whose EMA weights and step count carry over; of the "
                   "same width and blocks) instead of random ones: it already draws the photo")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    p.add_argument("--crop", type=int, default=CROP_PX,
                   help="crop side, pixels; 0 trains on whole images, normalised as at inference "
                        "(default: %(default)s)")
    p.add_argument("--batch", type=int, default=BATCH, help="crops per step (default: %(default)s)")
    p.add_argument("--scales", type=float, nargs=2, default=SCALE_RANGE, metavar=("MIN", "MAX"),
                   help="crop scales relative to the pairs' resolution (default: %(default)s)")
    p.add_argument("--lr", type=float, default=LR, help="peak Adam learning rate (default: %(default)s)")
    p.add_argument("--edge", type=float, default=EDGE_WEIGHT, help="Sobel-edge L1 weight (default: %(default)s)")
    p.add_argument("--color-aug", type=float, default=COLOR_AUG,
                   help="probability of the same random RGB permutation on photo and target: a single "
                        "training photo has few hues, and without it the style paints everything in "
                        "them (default: %(default)s)")
    p.add_argument("--tone-aug", type=float, default=TONE_AUG,
                   help="probability of the same random gain and gamma on photo and target: teaches "
                        "output brightness to follow the input's (default: %(default)s)")
    p.add_argument("--gain", type=float, nargs=2, default=GAIN_RANGE, metavar=("MIN", "MAX"),
                   help="tone augmentation's gain range (default: %(default)s)")
    p.add_argument("--gamma", type=float, nargs=2, default=GAMMA_RANGE, metavar=("MIN", "MAX"),
                   help="tone augmentation's gamma range; below 1 brightens (default: %(default)s)")
    p.add_argument("--lowpass", type=float, default=LOWPASS_WEIGHT,
                   help="4x low-pass L1 weight (default: %(default)s)")
    p.add_argument("--pixel", choices=("l1", "l2"), default="l1",
                   help="pixel loss: l1 keeps edges crisp; l2 is what PSNR measures, for a last fine-tune "
                        "(default: %(default)s)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    all_pairs = load_pairs(args.pairs)
    missing = [v for v in args.val if v not in all_pairs]
    if missing:
        p.error(f"--val {missing[0]!r}: no such pair in {args.pairs} (have: {', '.join(all_pairs)})")
    train_pairs = [v for k, v in all_pairs.items() if k not in args.val]
    val_pairs = [all_pairs[k] for k in args.val]
    if not train_pairs:
        p.error("every pair is held back for validation: nothing left to train on")

    cache = args.cache or DEFAULT_CACHE / args.name
    device, amp_dtype = pick_device()
    model = Generator(args.width, args.blocks, args.skip)
    init_steps = 0
    if args.init:
        try:
            init_steps, init_state, init_skip, _ = _init_weights(args.init)
            if not (cache / "last.ckpt").exists():
                _load_init(model, init_state, init_skip)
        except AnimestreamError as e:
            p.error(f"--init: {e}")
        except RuntimeError as e:
            p.error(f"--init {args.init}: not the same architecture ({str(e).splitlines()[0]})")
    try:
        run = Run(model, cache, device, init_steps=init_steps)
    except AnimestreamError as e:
        p.error(str(e))
    if not args.export:
        sampler = CropSampler(pyramid(train_pairs, args.crop, tuple(args.scales)), run.rng, args.crop,
                              args.color_aug, args.tone_aug, tuple(args.gain), tuple(args.gamma))
        run.fit(sampler, steps=args.steps, lr=args.lr, batch=args.batch, amp_dtype=amp_dtype,
                loss_fn=lambda out, y: style_loss(out, y, args.edge, args.lowpass, args.pixel),
                validate_fn=lambda m: validate(m, val_pairs, device))
    ema, step, init_steps = run.ema, run.step, run.init_steps

    val_psnr = validate(ema, val_pairs, device)
    base = [baselines(half(ph), half(tg)) for ph, tg in val_pairs]
    quality = {"val_pairs": args.val, "psnr_student": round(val_psnr, 2),
               "psnr_photo": round(float(np.mean([b["psnr_photo"] for b in base])), 2),
               "psnr_grade": round(float(np.mean([b["psnr_grade"] for b in base])), 2),
               "resolution": "half of the pair's resolution"}
    recipe = {"crop": args.crop, "batch": args.batch, "scales": list(args.scales), "lr": args.lr,
              "pixel": args.pixel, "edge": args.edge, "lowpass": args.lowpass, "color_aug": args.color_aug,
              "tone_aug": args.tone_aug, "gain": list(args.gain), "gamma": list(args.gamma),
              "ema_decay": EMA_DECAY, "init": _init_name(args.init), "init_steps": init_steps,
              "train_pairs": sorted(k for k in all_pairs if k not in args.val)}
    path = weights.export_style(ema.cpu().float(), args.out, args.name, source=args.source,
                                license=args.license, training_steps=init_steps + step, quality=quality,
                                recipe=recipe, probe=[to_tensor(half(ph)).unsqueeze(0) for ph, _ in val_pairs])
    print(json.dumps({"exported": str(path), "steps": step, **quality}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
