"""Can a student architecture fit a teacher at all? Trained on a few training photos and scored on those same
photos, it measures capacity and optimisation, not generalisation: a student that cannot come close to the
teacher on four pictures it has seen a hundred times each will not on photos it has never seen.

    python bench/capacity.py --teacher cartoongan_hosoda [--teachers ../shared/teachers]
        [--photos-root ../shared/media] [--init hayao] [--width 1.0] [--blocks 4] [--norm layer] [--skip]
        [--context | --unet] [--photos 4] [--side 256] [--steps 300] [--lr 5e-4] [--every 50] [--threads 2]
        [--held-back-floor] [--held-back 0] [--eval-side 512]

The photos are ``--photos`` of the training photos of ``stream.distill`` (the same held-back split, so none
of its held-back photos), evenly spaced through the list, each scaled to a short side of ``--side`` pixels
and cut to multiples of 8, with the teacher's output of all of it as the target. The student (the
``stream.distill`` generator: ``--width``, ``--blocks``, ``--norm``, ``--skip``, started from ``--init``'s
weights or at random with ``--init none``) takes one photo a step, squared error, Adam with ``--lr`` warmed
up over the first tenth and decayed along a cosine, bf16 autocast where the CPU has native bf16.

JSON lines: first the floor, how far the teacher's output is from the photo itself and from the photo under
its best affine colour map (``bench/bands.py``'s ``colour_fit``, per photo), the most a student that only
grades colour could reach; then every ``--every`` steps the student's mean PSNR (dB, 0-255) against the
teacher on the photos it trains on, with the seconds so far.

``--held-back-floor`` prints, before anything else, the same floor on the held-back photos at
``--eval-side`` pixels on the longest side, as ``stream.distill`` scores a student on them: what a style
that only grades colour would score there.

``--held-back N`` also scores the student, every ``--every`` steps, on the first N held-back photos at
``--eval-side`` (``held_back_psnr``; their floor goes in the first line): the gap between the two scores is
generalisation. Run with a few and with many training photos, it tells a network that cannot hold a
teacher's behaviour for many pictures at once (the score on its own photos falls as they grow) from one
that memorises pictures without learning the behaviour (its own stay high, the held-back ones do not rise).

``--context`` gives the student a whole-picture context branch (:class:`WithContext`): each channel's mean
and standard deviation over the picture after ``block_b`` set, through a small MLP, a per-channel scale and
shift of the outputs of ``block_c``, ``block_d`` and ``block_e``, as a teacher with instance norms sets
each channel from the whole picture. It starts as the identity, so from ``--init``'s function.

``--unet`` gives it encoder-to-decoder skips instead (``Generator(unet=True)``, as ``distill --unet``):
full- and half-resolution features of the encoder added, through 1x1 convolutions that start at zero, into
the decoder at the same resolution, so that fine detail need not pass through the quarter-resolution
blocks.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bands import SHARED, _db, colour_fit  # bench/bands.py, beside this script
from stream.distill import (VAL_FACES, VAL_PHOTOS, find_photos, fit_side, hold_out, load_teacher, scale_short,
                            start_from)
from stream.errors import AnimestreamError
from stream.model import LEAKY_SLOPE, NORMS, Generator
from stream.train import _init_weights, pick_device, to_tensor


Pairs = list[tuple[np.ndarray, np.ndarray]]


def fit_pairs(args: argparse.Namespace) -> tuple[Pairs, Pairs, list]:
    """(photo, teacher output) pairs of ``--photos`` training photos and of ``--held-back`` held-back photos at
    ``--eval-side``, and the training photo list; with ``--held-back-floor``, first prints :func:`floor` of all
    the held-back photos."""
    photos = find_photos([d for d in (args.photos_root / "photos", args.photos_root / "photos_extra") if d.is_dir()])
    if len(photos) <= args.val:
        raise AnimestreamError(f"{len(photos)} photos under {args.photos_root}, need more than --val {args.val}")
    train, held = hold_out(photos, args.val, args.val_faces)
    if len(train) < args.photos:
        raise AnimestreamError(f"{len(train)} training photos, fewer than --photos {args.photos}")
    if args.held_back > len(held):
        raise AnimestreamError(f"--held-back {args.held_back}: only {len(held)} photos are held back")
    teacher = load_teacher(args.teacher, args.teachers, None, args.threads)
    scored = held if args.held_back_floor else held[: args.held_back]
    held_pairs = [(x, teacher(x)) for x in (fit_side(p.read(), args.eval_side) for p in scored)]
    if args.held_back_floor:
        print(json.dumps({"teacher": args.teacher, "held_back": len(held), "resolution": args.eval_side,
                          **floor(held_pairs)}), flush=True)
    pairs = []
    for i in range(args.photos):
        x = scale_short(train[i * len(train) // args.photos].read(), args.side)
        x = np.ascontiguousarray(x[: x.shape[0] // 8 * 8, : x.shape[1] // 8 * 8])
        pairs.append((x, teacher(x)))
    return pairs, held_pairs[: args.held_back], train


def as_tensors(pairs: Pairs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``pairs`` as 1 x 3 x H x W tensors in [-1, 1], what the student takes and is scored against."""
    return [(to_tensor(x).unsqueeze(0), to_tensor(y).unsqueeze(0)) for x, y in pairs]


def floor(pairs: Pairs) -> dict:
    """The teacher's PSNR against each photo, and against the photo under its best colour map (means)."""
    plain, graded = [], []
    for x, y in pairs:
        xf, yf = x.astype(np.float64), y.astype(np.float64)
        plain.append(_db(float(np.mean((xf - yf) ** 2))))
        graded.append(_db(float(np.mean((colour_fit(xf, yf) - yf) ** 2))))
    return {"psnr_photo": round(float(np.mean(plain)), 2), "psnr_photo_colour_fit": round(float(np.mean(graded)), 2)}


class WithContext(nn.Module):
    """``generator`` with a whole-picture context branch: the per-channel mean and standard deviation of
    ``block_b``'s output (over the picture) through Linear -> LeakyReLU -> Linear give a scale ``1 + s``
    and a shift ``t`` per channel of the outputs of ``block_c``, ``block_d`` and ``block_e``. The last
    Linear starts at zero, so the whole starts as ``generator``."""

    def __init__(self, generator: Generator, hidden: int = 64):
        super().__init__()
        self.generator = generator
        into = generator.block_b[-1][1].out_channels
        self.sizes = [generator.block_c[-1][1].out_channels, generator.block_d[-1][1].out_channels,
                      generator.block_e[-1][1].out_channels]
        self.mlp = nn.Sequential(nn.Linear(2 * into, hidden), nn.LeakyReLU(LEAKY_SLOPE),
                                 nn.Linear(hidden, 2 * sum(self.sizes)))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def films(self, features: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(s, t) for ``block_c``, ``block_d`` and ``block_e`` (N x C x 1 x 1 each) from ``block_b``'s output."""
        flat = features.float().flatten(2)
        film = self.mlp(torch.cat([flat.mean(2), flat.std(2)], 1)).to(features.dtype)[:, :, None, None]
        scale, shift = film.split([sum(self.sizes)] * 2, 1)
        return list(zip(scale.split(self.sizes, 1), shift.split(self.sizes, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.generator
        out = g.block_a(x)
        half = out.shape[-2:]
        out = g.block_b(out)
        films = self.films(out)
        out = g.block_c(out) * (1 + films[0][0]) + films[0][1]
        out = g.block_d(g._resize(out, [half[0], half[1]])) * (1 + films[1][0]) + films[1][1]
        out = g.block_e(g._resize(out, [x.shape[-2], x.shape[-1]])) * (1 + films[2][0]) + films[2][1]
        return g.head(out, x)


def student(args: argparse.Namespace, train: list) -> nn.Module:
    """The generator ``--width``/``--blocks``/``--norm``/``--skip``/``--unet``, from ``--init``'s weights
    unless ``none``, inside :class:`WithContext` with ``--context``."""
    model = Generator(args.width, args.blocks, skip=args.skip, norm=args.norm, unet=args.unet)
    if args.init != "none":
        _, state, skip, init_norm = _init_weights(args.init)
        try:
            start_from(model, state, skip, init_norm, train)
        except RuntimeError as e:
            raise AnimestreamError(f"--init {args.init}: not the same architecture ({str(e).splitlines()[0]})")
    return WithContext(model) if args.context else model


@torch.no_grad()
def psnr(model: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean PSNR (dB, 0-255) of ``model``'s float output against the targets."""
    model.eval()
    scores = [10 * math.log10(4 / float(F.mse_loss(model(x).clamp(-1, 1), y))) for x, y in pairs]
    model.train()
    return round(float(np.mean(scores)), 2)


def fit(model: nn.Module, pairs: list[tuple[torch.Tensor, torch.Tensor]], args: argparse.Namespace):
    """Train ``model`` on ``pairs`` as the module docstring says; yields (step, PSNR, seconds) at step 0
    and every ``--every`` steps."""
    _, amp = pick_device()
    rng = random.Random(0)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    warm = max(1, args.steps // 10)
    start = time.perf_counter()
    yield 0, psnr(model, pairs), 0.0
    for step in range(1, args.steps + 1):
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, step / warm) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        x, y = pairs[rng.randrange(len(pairs))]
        with torch.autocast("cpu", dtype=amp, enabled=amp != torch.float32):
            out = model(x)
        loss = F.mse_loss(out.float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % args.every == 0 or step == args.steps:
            yield step, psnr(model, pairs), round(time.perf_counter() - start, 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="a teachers.json name, an .onnx file or one of our styles")
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--photos-root", type=Path, default=SHARED / "media", help="holds photos/ and, where there is one, photos_extra/")
    p.add_argument("--val", type=int, default=VAL_PHOTOS, help="held back as distill holds them (default: %(default)s)")
    p.add_argument("--val-faces", type=int, default=VAL_FACES)
    p.add_argument("--init", default="hayao", help="a style or run checkpoint to start from, or none")
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--norm", choices=NORMS, default="layer")
    p.add_argument("--skip", action="store_true", help="add its output to a colour grade of the photo (distill's)")
    branch = p.add_mutually_exclusive_group()
    branch.add_argument("--context", action="store_true", help="add a whole-picture context branch (WithContext)")
    branch.add_argument("--unet", action="store_true", help="add encoder-to-decoder skips (Generator(unet=True))")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--side", type=int, default=256, help="short side, pixels")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--every", type=int, default=50, help="score every this many steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--held-back-floor", action="store_true", help="first, the floor on the held-back photos")
    p.add_argument("--held-back", type=int, default=0, metavar="N",
                   help="also score the student on the first N held-back photos (default: none)")
    p.add_argument("--eval-side", type=int, default=512, help="their longest side, pixels (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        pairs, held_pairs, train = fit_pairs(args)
        head = {"teacher": args.teacher, "init": args.init, "width": args.width, "blocks": args.blocks,
                "norm": args.norm, "skip": args.skip, "context": args.context, "unet": args.unet,
                "photos": args.photos, "side": args.side, **floor(pairs)}
        if held_pairs:
            head.update({"held_back": len(held_pairs),
                         **{f"held_back_{k}": v for k, v in floor(held_pairs).items()}})
        print(json.dumps(head), flush=True)
        model = student(args, train)
    except AnimestreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    held_tensors = as_tensors(held_pairs)
    for step, score, seconds in fit(model, as_tensors(pairs), args):
        line = {"step": step, "psnr": score, "s": seconds}
        if held_tensors:
            line["held_back_psnr"] = psnr(model, held_tensors)
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
