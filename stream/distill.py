"""Distil a teacher generator into a style: the student learns to reproduce the teacher's output.

    python -m stream.distill --teacher animeganv3_shinkai_37 --teachers ../shared/teachers \\
        --photos ../shared/media/photos ../shared/media/photos_extra --name shinkai --width 0.5 --skip \\
        --tiles 1 --steps 4000

The teacher is an ONNX generator listed in a ``teachers.json`` manifest (``--teachers`` names its
folder; the manifest says how the model wants its pictures), an ONNX file with ``--io`` naming a
JSON object of that form, or one of our own styles (how a ``-lite`` style learns from its full one).
A teacher defines the target for any photo, so data is not the limit: every training photo is
scaled so its short side is each of ``--sides`` pixels, ``--tiles`` square tiles of ``--tile``
pixels are cut from it at random, and the teacher stylises each tile on its own (``--tile 0``: the
scaled photos whole, one a pass). The student sees
exactly the teacher's input, so its whole-picture normalisations see the same statistics and
nothing needs to be approximated. A teacher whose normalisations differ from the student's (instance
norm: CartoonGAN) paints a tile alone far from how it paints that region of the whole picture (19-24 dB
apart for CartoonGAN Hosoda, 27-34 dB for AnimeGANv2 Hayao, on 192 px tiles: bench/tilelabels.py):
``--labels photo`` runs the teacher on the whole scaled photo and cuts the tiles from its output
instead. Teacher outputs are cached outside the repository (under the teacher's sha256), so they are
computed once per photo, scale and tile.

``--val`` photos (``--val-faces`` of them from a ``face`` category, where a folder has a
``SOURCES.tsv`` with a ``category`` column) are held back, chosen by a hash of their names, and
never trained on. The student's PSNR and SSIM against the teacher on them, both run at
``--eval-side`` pixels on the longest side, go into the style's sidecar.

``--temporal WEIGHT`` adds a temporal term for video: each tile is also moved by a small random warp (a
sub-pixel shift, rotation and zoom, as a camera moves between two frames) and the student's output of the
moved tile should be its output of the tile, moved the same way (mean |difference| on the pixels the warp
keeps inside the tile, times WEIGHT). It costs a second forward and backward pass per step.

Training is resumable (``--cache``, default ``~/.cache/animestream/train/NAME``): the same command
carries on from the latest checkpoint; ``--export`` writes the style from it without training.
bf16 autocast on CPUs with native bf16, CUDA when present.
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import json
import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from . import weights
from .engine import SIDE_MULTIPLE, Engine
from .errors import AnimestreamError
from .fold import FOLDS, folded
from .model import NORMS, UPSAMPLING, Generator
from .onnxgen import OnnxGenerator, OnnxIO
from .quality import psnr, ssim
from .train import (DEFAULT_CACHE, EMA_DECAY, Run, _init_name, _init_weights, _load_init, pick_device, style_loss,
                    to_image, to_tensor)

TILE_PX = 192
SIDES = (192, 288, 384)  # short sides (pixels) the training photos are scaled to before tiling
TILES_PER_SIDE = 4
BATCH = 4
STEPS = 8000
LR = 1e-3
EDGE_WEIGHT = 0.25
VAL_PHOTOS = 32
VAL_FACES = 8
EVAL_SIDE = 512  # longest side (pixels) at which student and teacher are compared
FOLD_PHOTOS = 48  # training photos whose norm statistics start a student of other norms from a single-group style
VAL_DURING_TRAINING = 8  # of the held-back photos, scored every validation step (all of them at export)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# --temporal's random warp of a tile: uniform in +-these (a camera's motion between two frames)
WARP_SHIFT_PX = 2.0  # translation, pixels (sub-pixel: any real value)
WARP_ROTATE_DEG = 2.0  # rotation about the tile's centre, degrees
WARP_SCALE = 0.03  # relative zoom


def fit_side(rgb: np.ndarray, longest: int) -> np.ndarray:
    """``rgb`` resized so its longest side is ``longest``, both sides multiples of SIDE_MULTIPLE
    (what the engine runs a frame at with ``max_side=longest``)."""
    h, w = rgb.shape[:2]
    scale = longest / max(h, w)
    size = tuple(max(SIDE_MULTIPLE, int(round(n * scale / SIDE_MULTIPLE)) * SIDE_MULTIPLE) for n in (w, h))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Photo:
    name: str  # unique across folders: FOLDER/FILE
    path: Path
    category: str  # from the folder's SOURCES.tsv, else ""

    def read(self) -> np.ndarray:
        bgr = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise AnimestreamError(f"{self.path}: unreadable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def find_photos(folders: list[Path]) -> list[Photo]:
    """Every image file in ``folders`` (not recursive), with its category from a ``SOURCES.tsv``
    (columns ``file`` and ``category``) where the folder has one."""
    photos = []
    for folder in folders:
        if not folder.is_dir():
            raise AnimestreamError(f"--photos {folder}: not a folder")
        categories = {}
        sources = folder / "SOURCES.tsv"
        if sources.exists():
            with open(sources, newline="") as f:
                categories = {row["file"]: row.get("category", "") for row in csv.DictReader(f, delimiter="\t")}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in PHOTO_SUFFIXES and not path.name.startswith("."):
                photos.append(Photo(f"{folder.name}/{path.name}", path, categories.get(path.name, "")))
    return photos


def _rank(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def hold_out(photos: list[Photo], count: int, faces: int) -> tuple[list[Photo], list[Photo]]:
    """(training, held back): ``count`` photos chosen by a hash of their names, ``faces`` of them
    (as many as there are, at most) from the ``face`` category. The same photos for the same names."""
    ranked = sorted(photos, key=lambda p: _rank(p.name))
    face = [p for p in ranked if p.category == "face"][:faces]
    rest = [p for p in ranked if p not in face][: max(0, count - len(face))]
    held = set(face + rest)
    return [p for p in photos if p not in held], sorted(held, key=lambda p: p.name)


class Teacher:
    """A generator whose outputs the student learns: ``teacher(rgb) -> rgb`` (H x W x 3 uint8).

    ``period`` (pixels): how its output depends on where a picture starts. A generator that downsamples
    by 4 paints the same content alike when the picture starts 0, 4 or 8 pixels later, differently at 1, 2
    or 3 (its strided convolutions sample another phase: AnimeGANv2 Hayao's output of a picture shifted by
    1-3 px is ~30 dB from its output of the same region unshifted, 53-56 dB at 4 or 8,
    ``python bench/phase.py``). Tiles cut from its output of a whole picture start at multiples of it."""

    def __init__(self, name: str, sha256: str, license: str, fn: Callable[[np.ndarray], np.ndarray],
                 credit: str = "", period: int = 1):
        self.name, self.sha256, self.license, self._fn, self.credit = name, sha256, license, fn, credit
        self.period = period

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return self._fn(rgb)

    def cached(self, cache: Path, key: str, rgb: np.ndarray) -> np.ndarray:
        """The teacher's output for ``rgb``, read from ``cache/teacher-SHA/key.png`` when it is there."""
        path = cache / f"teacher-{self.sha256[:16]}" / f"{key}.png"
        if path.exists():
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None and bgr.shape == rgb.shape:
                return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        out = self(rgb)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.png")
        cv2.imwrite(str(tmp), cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        os.replace(tmp, path)
        return out


def load_teacher(spec: str, teachers: Path | None, io_file: Path | None, threads: int) -> Teacher:
    """A teacher from a manifest name, an ONNX file (with an optional ``--io`` declaration) or a style."""
    entry = None
    if teachers is not None and not spec.endswith(".onnx"):
        manifest = teachers / "teachers.json"
        try:
            entries = {t["name"]: t for t in json.loads(manifest.read_text())["teachers"]}
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AnimestreamError(f"--teachers {teachers}: unreadable teachers.json ({e})") from None
        entry = entries.get(spec)
        if entry is None:
            raise AnimestreamError(f"--teacher {spec!r}: not in {manifest} (have: {', '.join(entries)})")
    if entry is not None or spec.endswith(".onnx"):
        if entry is None:
            path = Path(spec)
            try:
                entry = json.loads(io_file.read_text()) if io_file else {}
            except (OSError, ValueError) as e:
                raise AnimestreamError(f"--io {io_file}: unreadable ({e})") from None
        else:
            path = teachers / entry["file"]
        sha = weights.sha256_of(path)
        if entry.get("sha256") and entry["sha256"] != sha:
            raise AnimestreamError(f"{path}: sha256 does not match its manifest entry")
        io = OnnxIO.from_manifest(entry)
        gen = OnnxGenerator(path, io, threads=threads)
        lic = entry.get("license", {})
        what = entry.get("what", {})
        return Teacher(entry.get("name", path.stem), sha, lic.get("terms", "") if isinstance(lic, dict) else str(lic),
                       gen.stylise, credit=f"{what.get('model', '')}; {what.get('style', '')}".strip("; "),
                       period=io.size_multiple)  # the multiple its input is padded to: its downsampling
    style = weights.resolve(spec)
    engine = Engine(style, max_side=0, precision="fp32", device="cpu", threads=threads or 0)
    return Teacher(style.name, style.sha256, style.meta.get("license", ""), lambda rgb: engine(rgb).copy(),
                   period=SIDE_MULTIPLE)


def tile_offset_multiple(teacher: Teacher, labels: str) -> int:
    """What a tile's offset in its scaled photo is a multiple of: the teacher's period where its label is cut
    from the whole picture's output (``labels="photo"``), any offset where the teacher paints the tile alone."""
    return teacher.period if labels == "photo" else 1


def scale_short(rgb: np.ndarray, short: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = short / min(h, w)
    size = (max(short, int(round(w * scale))), max(short, int(round(h * scale))))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def build_tiles(photos: list[Photo], teacher: Teacher, cache: Path, *, tile: int, sides: tuple[int, ...],
                per_side: int, log: Callable[[str], None],
                labels: str = "tile") -> tuple[torch.Tensor, torch.Tensor]:
    """(photo tiles, teacher tiles) as uint8 N x 3 x tile x tile tensors. Tile positions come from a
    hash of the photo's name, side and tile number, so the same arguments always give the same tiles
    (and cache hits), and a rerun with more ``per_side`` keeps the tiles it had.

    ``labels``: "tile" runs the teacher on each tile alone; "photo" runs it once on the whole scaled
    photo and cuts the teacher's tiles from that (what a teacher with per-picture statistics, such as
    instance norm, paints on the whole picture, which is what the student is scored against), at offsets
    that are multiples of ``teacher.period``, so that every tile's label is painted at the phase the
    student's own tile starts at (and a whole picture is scored at)."""
    if min(sides) < tile:
        raise AnimestreamError(f"--sides {min(sides)} is smaller than --tile {tile}")
    n = len(photos) * len(sides) * per_side
    xs = torch.empty((n, 3, tile, tile), dtype=torch.uint8)
    ys = torch.empty_like(xs)
    i = 0
    for photo, name, side, scaled in _scaled_photos(photos, sides, log, "teacher tiles"):
        h, w = scaled.shape[:2]
        whole = _whole_label(teacher, cache, name, side, scaled) if labels == "photo" else None
        step = tile_offset_multiple(teacher, labels)
        for j in range(per_side):
            rng = random.Random(f"{_rank(photo.name)}/{side}/{j}")  # tile j is the same whatever per_side is
            top, left = rng.randrange((h - tile) // step + 1) * step, rng.randrange((w - tile) // step + 1) * step
            x = np.ascontiguousarray(scaled[top:top + tile, left:left + tile])
            y = (teacher.cached(cache, f"t{tile}/{name}_{side}_{j}", x) if whole is None
                 else np.ascontiguousarray(whole[top:top + tile, left:left + tile]))
            xs[i] = torch.from_numpy(x).permute(2, 0, 1)
            ys[i] = torch.from_numpy(y).permute(2, 0, 1)
            i += 1
    return xs, ys


def _scaled_photos(photos: list[Photo], sides: tuple[int, ...], log: Callable[[str], None], what: str):
    """(photo, its cache name, side, the photo scaled so its short side is ``side``) for every photo and side,
    in that order, logging ``what: k/n photos`` every 50 photos and at the end."""
    for k, photo in enumerate(photos):
        rgb, name = photo.read(), photo.name.replace("/", "__")
        for side in sides:
            yield photo, name, side, scale_short(rgb, side)
        if (k + 1) % 50 == 0 or k + 1 == len(photos):
            log(f"{what}: {k + 1}/{len(photos)} photos")


def _whole_label(teacher: Teacher, cache: Path, name: str, side: int, scaled: np.ndarray) -> np.ndarray:
    """The teacher's output of the whole scaled photo, cached under one key for tiles and whole pictures."""
    return teacher.cached(cache, f"p/{name}_{side}", scaled)


def build_wholes(photos: list[Photo], teacher: Teacher, cache: Path, *, sides: tuple[int, ...],
                 log: Callable[[str], None]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(photos, teacher outputs) as lists of uint8 3 x H x W tensors, one per photo and side: each photo
    scaled so its short side is ``side`` pixels, whole, with the teacher's output of it (the same cached
    labels as ``build_tiles(..., labels="photo")``), so every normalisation the student trains through sees
    the very picture its label was painted from. Both are cut at the bottom and right to multiples of
    ``teacher.period`` and of the engine's :data:`SIDE_MULTIPLE`: at any other size the student's
    downsampled grid no longer lines up with the teacher's (which pads its input to its period), and it
    would learn a label shifted by up to a pixel."""
    xs, ys = [], []
    k = math.lcm(teacher.period, SIDE_MULTIPLE)
    for _photo, name, side, scaled in _scaled_photos(photos, sides, log, "teacher pictures"):
        whole = _whole_label(teacher, cache, name, side, scaled)
        h, w = scaled.shape[0] // k * k, scaled.shape[1] // k * k
        xs.append(torch.from_numpy(np.ascontiguousarray(scaled[:h, :w])).permute(2, 0, 1))
        ys.append(torch.from_numpy(np.ascontiguousarray(whole[:h, :w])).permute(2, 0, 1))
    return xs, ys


class TileSampler:
    """Random batches of (photo, teacher) tiles as float tensors in [-1, 1]. Where ``favoured`` (tile
    indices) is given, ``round(share * n)`` tiles of every batch of ``n`` are drawn from those alone (a
    portrait style's faces), the rest from all tiles."""

    def __init__(self, xs: torch.Tensor, ys: torch.Tensor, rng: random.Random,
                 favoured: list[int] | None = None, share: float = 0.0):
        self.xs, self.ys, self.rng = xs, ys, rng
        self.favoured, self.share = (favoured or []), (share if favoured else 0.0)

    def picks(self, n: int) -> list[int]:
        """The indices of a batch of ``n``."""
        k = round(self.share * n)
        picks = [self.rng.choice(self.favoured) for _ in range(k)]
        return picks + [self.rng.randrange(len(self.xs)) for _ in range(n - k)]

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(self.picks(n))
        return self.xs[idx].float().div(127.5).sub(1.0), self.ys[idx].float().div(127.5).sub(1.0)


class PictureSampler(TileSampler):
    """:class:`TileSampler` over whole pictures of different sizes (:func:`build_wholes`): a batch is a
    list of 1 x 3 x H x W float tensors in [-1, 1] per side, which ``Run.fit`` takes one picture a pass."""

    def batch(self, n: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        idx = self.picks(n)
        return ([self.xs[i][None].float().div(127.5).sub(1.0) for i in idx],
                [self.ys[i][None].float().div(127.5).sub(1.0) for i in idx])


def tiles_of(photos: list[Photo], category: str, per_photo: int) -> list[int]:
    """Indices, in :func:`build_tiles`' order (``per_photo`` tiles a photo), of the tiles of ``photos``
    in ``category``."""
    return [i * per_photo + j for i, ph in enumerate(photos) if ph.category == category for j in range(per_photo)]


def random_warps(n: int, height: int, width: int, rng: random.Random) -> torch.Tensor:
    """``n`` affine transforms (n x 2 x 3, for :func:`torch.nn.functional.affine_grid`, normalised
    coordinates) of a random sub-pixel translation, small rotation and zoom each, drawn from ``rng``; the
    rotation is a true one in pixels whatever the aspect."""
    theta = torch.empty((n, 2, 3))
    for i in range(n):
        angle = np.radians(rng.uniform(-WARP_ROTATE_DEG, WARP_ROTATE_DEG))
        zoom = 1.0 + rng.uniform(-WARP_SCALE, WARP_SCALE)
        tx, ty = (rng.uniform(-WARP_SHIFT_PX, WARP_SHIFT_PX) for _ in range(2))
        c, s = zoom * np.cos(angle), zoom * np.sin(angle)
        theta[i] = torch.tensor([[c, -s * height / width, 2 * tx / width],
                                 [s * width / height, c, 2 * ty / height]])
    return theta


def warp(t: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(``t`` (N x C x H x W) resampled bilinearly through ``theta``, N x 1 x H x W mask of the pixels whose
    every tap lies inside ``t``). Outside, the picture is mirrored, so that a network sees no black border."""
    grid = torch.nn.functional.affine_grid(theta.to(t.device, torch.float32), list(t.shape), align_corners=False)
    out = torch.nn.functional.grid_sample(t, grid.to(t.dtype), mode="bilinear", padding_mode="reflection",
                                          align_corners=False)
    ones = torch.ones((t.shape[0], 1, *t.shape[2:]), device=t.device, dtype=torch.float32)
    inside = torch.nn.functional.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, (inside > 1 - 1e-4).float()


def temporal_loss(model: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """mean |model(warp(x)) - warp(out)| over the pixels and channels valid after the warp, where ``out``
    is ``model(x)``: zero for a model whose output follows its input's motion (what a video needs), large
    for one that paints texture of its own where the input has none. Gradients reach both terms."""
    warped_x, _ = warp(x, theta)
    moved = model(warped_x.contiguous(memory_format=torch.channels_last))
    want, valid = warp(out.float(), theta)
    diff = (moved.float() - want).abs() * valid
    return diff.sum() / (valid.sum() * out.shape[1]).clamp_min(1.0)


def eval_pairs(photos: list[Photo], teacher: Teacher, cache: Path, side: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(photo, teacher output) for each held-back photo at ``side`` pixels on its longest side."""
    pairs = []
    for photo in photos:
        x = fit_side(photo.read(), side)
        pairs.append((x, teacher.cached(cache, f"val{side}/{photo.name.replace('/', '__')}", x)))
    return pairs


@torch.inference_mode()
def student_outputs(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    model.eval()
    device = next(model.parameters()).device
    return [to_image(model(to_tensor(x).unsqueeze(0).to(device))[0].float().cpu()) for x, _ in pairs]


def score(model: torch.nn.Module, pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, list[float]]:
    """Mean PSNR (dB) and SSIM of ``model``'s fp32 outputs against the teacher's, and each pair's PSNR."""
    outs = student_outputs(model, pairs)
    each = [psnr(o, y) for o, (_, y) in zip(outs, pairs)]
    return float(np.mean(each)), float(np.mean([ssim(o, y) for o, (_, y) in zip(outs, pairs)])), each


def change_loss(x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared error of ``out`` against the teacher's ``y``, each pixel weighted by how far the teacher
    moved it from the photo ``x`` (mean |y - x| over the channels, [-1, 1] units): what a style paints of
    its own (a portrait teacher's eyes and brows) counts more than what it leaves near the photo, which
    a squared error over the whole tile drowns."""
    weight = (y.float() - x.float()).abs().mean(dim=1, keepdim=True)
    return (weight * (out.float() - y.float()) ** 2).mean()


def _extra_terms(temporal: float, change: float, rng: random.Random) -> Callable | None:
    """``Run.fit``'s extra loss: ``--temporal`` (one random warp per tile) plus ``--change-weight`` (None
    when both are 0)."""
    if not temporal and not change:
        return None

    def terms(model: torch.nn.Module, x: torch.Tensor, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = change * change_loss(x, out, y) if change else torch.zeros((), device=out.device)
        if temporal:
            total = total + temporal * temporal_loss(model, x, out, random_warps(len(x), x.shape[2], x.shape[3], rng))
        return total
    return terms


def _sampler(args: argparse.Namespace, xs: torch.Tensor, ys: torch.Tensor, rng: random.Random,
             train_photos: list[Photo], val_photos: list[Photo], val_pairs: list) -> tuple[TileSampler, list]:
    """(the tile sampler, the held-back pairs scored during training) of a run: with ``--faces``, that share
    of each batch comes from face photos and the held-back faces are watched; else the first
    :data:`VAL_DURING_TRAINING` held-back photos."""
    kind = TileSampler if args.tile else PictureSampler
    if not args.faces:
        return kind(xs, ys, rng), val_pairs[:VAL_DURING_TRAINING]
    favoured = tiles_of(train_photos, "face", len(args.sides) * (args.tiles if args.tile else 1))
    if not favoured:
        raise AnimestreamError("--faces: no training photo is in a 'face' category (SOURCES.tsv)")
    faces = [pair for ph, pair in zip(val_photos, val_pairs) if ph.category == "face"]
    return kind(xs, ys, rng, favoured, args.faces), (faces or val_pairs)[:VAL_DURING_TRAINING]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stream.distill", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", required=True,
                   help="a name in --teachers' teachers.json, an .onnx file, or one of our styles")
    p.add_argument("--teachers", type=Path, help="folder with teachers.json and the ONNX files it lists")
    p.add_argument("--io", type=Path, help="for an .onnx --teacher: JSON declaring its layout, channels, range, "
                                           "size_multiple (default: NHWC, RGB, [-1, 1], 8)")
    p.add_argument("--photos", type=Path, nargs="+", required=True, help="folders of photos (any content)")
    p.add_argument("--name", required=True, help="style name; exported as weights/NAME.*")
    p.add_argument("--width", type=float, default=1.0, help="student channel width multiplier (default: %(default)s)")
    p.add_argument("--blocks", type=int, default=4, help="inverted residual blocks (default: %(default)s; "
                   "those beyond --init's start as the identity)")
    p.add_argument("--skip", action="store_true", help="the student adds its output to a colour grade of the "
                   "photo and starts as the photo (for teachers that keep most of it)")
    p.add_argument("--upsample", choices=UPSAMPLING, default="align_corners",
                   help="the student's upsampling (asymmetric: TF1's, as the official AnimeGANv2 graphs)")
    p.add_argument("--guided", type=int, default=0, metavar="RADIUS",
                   help="end the student with a guided filter of this radius, guided by the photo (as White-box "
                        "Cartoonization's generator ends; 0: none, the default)")
    p.add_argument("--guided-eps", type=float, default=5e-3,
                   help="the guided filter's regularisation, in the [-1, 1] range squared (default: %(default)s)")
    p.add_argument("--norm", choices=NORMS, default="layer",
                   help="the student's normalisation: one mean and variance per picture (layer, the default), or "
                        "per channel (instance: for teachers built with instance norm, such as CartoonGAN; no "
                        "INT8 path), or none, a per-channel scale and shift only (affine: for teachers without "
                        "normalisation, such as White-box Cartoonization). An --init with single-group norms "
                        "starts either with their statistics fixed at a training average (stream.fold)")
    p.add_argument("--unet", action="store_true",
                   help="encoder-to-decoder skips at full and half resolution (stream.model), started at zero so "
                        "that an --init style starts unchanged; no INT8 path yet")
    p.add_argument("--init", metavar="STYLE", help="start from this style's or run checkpoint's weights (a wider "
                   "one of the same depth: from its most important channels, stream.narrow; a narrower one: its "
                   "channels copied, stream.widen; a shallower one of the same width: its blocks kept and new "
                   "ones started as the identity, stream.deepen)")
    p.add_argument("--variant-of", metavar="STYLE",
                   help="a narrower student of STYLE's teacher: --precision auto runs it in STYLE's place on CPU "
                        "classes whose policy row asks for narrower variants, where it keeps STYLE's quality bar "
                        "(stream.policy)")
    p.add_argument("--steps", type=int, default=STEPS, help="total optimiser steps (default: %(default)s)")
    p.add_argument("--lr", type=float, default=LR, help="peak Adam learning rate (default: %(default)s)")
    p.add_argument("--batch", type=int, default=BATCH, help="tiles per step (default: %(default)s)")
    p.add_argument("--tile", type=int, default=TILE_PX,
                   help="tile side, pixels (default: %(default)s); 0: whole pictures, each photo at each of --sides "
                        "with the teacher's output of all of it (--labels photo), one picture a pass")
    p.add_argument("--sides", type=int, nargs="+", default=list(SIDES),
                   help="short sides (pixels) the photos are scaled to before tiling (default: %(default)s)")
    p.add_argument("--tiles", type=int, default=TILES_PER_SIDE, help="tiles per photo and side (default: %(default)s)")
    p.add_argument("--labels", choices=("tile", "photo"), default="tile",
                   help="what the teacher stylises: each tile alone, or the whole scaled photo with the tiles cut "
                        "from its output (for teachers with per-picture statistics; default: %(default)s)")
    p.add_argument("--edge", type=float, default=EDGE_WEIGHT, help="Sobel-edge L1 weight (default: %(default)s)")
    p.add_argument("--pixel", choices=("l1", "l2"), default="l1", help="pixel loss (default: %(default)s)")
    p.add_argument("--temporal", type=float, default=0.0, metavar="WEIGHT",
                   help="weight of a temporal term: the student's output of a tile moved by a small random "
                        f"warp (+-{WARP_SHIFT_PX:g} px, +-{WARP_ROTATE_DEG:g} deg, +-{100 * WARP_SCALE:g}%% zoom) "
                        "should be its output of the tile, moved the same way (0: off, the default)")
    p.add_argument("--change-weight", type=float, default=0.0, metavar="K",
                   help="add K x the squared error weighted, pixel by pixel, by how far the teacher moved the "
                        "photo there (what it paints of its own: a portrait teacher's eyes; 0: off, the default)")
    p.add_argument("--faces", type=float, default=0.0, metavar="SHARE",
                   help="share of every batch drawn from the tiles of face photos, for a portrait style; "
                        "validation during training then scores the held-back faces (0: no preference, the default)")
    p.add_argument("--val", type=int, default=VAL_PHOTOS, help="photos held back (default: %(default)s)")
    p.add_argument("--val-faces", type=int, default=VAL_FACES, help="of them, faces (default: %(default)s)")
    p.add_argument("--eval-side", type=int, default=EVAL_SIDE,
                   help="longest side (pixels) at which quality is measured, and the style's recommended cap "
                        "(default: %(default)s)")
    p.add_argument("--cache", type=Path, default=None, help=f"checkpoint folder (default: {DEFAULT_CACHE}/NAME)")
    p.add_argument("--out", type=Path, default=Path("weights"), help="where the style is exported")
    p.add_argument("--threads", type=int, default=0, help="torch and teacher CPU threads (0: one per core)")
    p.add_argument("--export", action="store_true", help="only export the latest checkpoint")
    args = p.parse_args(argv)
    _check_args(p, args)
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = args.cache or DEFAULT_CACHE / args.name

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    try:
        photos = find_photos(args.photos)
        if len(photos) <= args.val:
            p.error(f"{len(photos)} photos in --photos, need more than --val {args.val}")
        train_photos, val_photos = hold_out(photos, args.val, args.val_faces)
        teacher = load_teacher(args.teacher, args.teachers, args.io, args.threads)
        val_pairs = eval_pairs(val_photos, teacher, cache.parent / "teachers", args.eval_side)
        device, amp_dtype = pick_device()
        model = Generator(args.width, args.blocks, args.skip, args.upsample, args.guided, args.guided_eps, args.norm,
                          args.unet)
        init_steps = 0
        if args.init:
            init_steps, init_state, init_skip, init_norm = _init_weights(args.init)
            if not (cache / "last.ckpt").exists():
                try:
                    start_from(model, init_state, init_skip, init_norm, train_photos)
                except RuntimeError as e:
                    p.error(f"--init {args.init}: not the same architecture ({str(e).splitlines()[0]})")
        run = Run(model, cache, device, init_steps=init_steps)
        if not args.export:
            if args.tile:
                xs, ys = build_tiles(train_photos, teacher, cache.parent / "teachers", tile=args.tile,
                                     sides=tuple(args.sides), per_side=args.tiles, log=log,
                                     labels=args.labels)
            else:
                xs, ys = build_wholes(train_photos, teacher, cache.parent / "teachers", sides=tuple(args.sides),
                                      log=log)
            log(f"{len(xs)} {f'tiles of {args.tile}px' if args.tile else 'whole pictures'} from "
                f"{len(train_photos)} photos; {len(val_photos)} held back")
            sampler, watched = _sampler(args, xs, ys, run.rng, train_photos, val_photos, val_pairs)
            run.fit(sampler, steps=args.steps, lr=args.lr, batch=args.batch,
                    amp_dtype=amp_dtype, loss_fn=lambda out, y: style_loss(out, y, args.edge, 0.0, args.pixel),
                    validate_fn=lambda m: score(m, watched)[0],
                    extra_loss=_extra_terms(args.temporal, args.change_weight, run.rng))
    except AnimestreamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    print(json.dumps(_export(args, run, teacher, val_pairs, val_photos, len(train_photos))))
    return 0


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit through ``p.error`` (one line, status 2) on a setting out of its range."""
    if args.guided < 0 or args.guided_eps <= 0:
        p.error("--guided must be >= 0 and --guided-eps > 0")
    if not 0 <= args.faces <= 1:
        p.error(f"--faces must be between 0 and 1, not {args.faces}")
    if not args.change_weight >= 0:
        p.error(f"--change-weight must be >= 0, not {args.change_weight}")
    if not args.temporal >= 0:
        p.error(f"--temporal must be >= 0, not {args.temporal}")
    for flag, value in (("--steps", args.steps), ("--batch", args.batch),
                        ("--tiles", args.tiles), ("--eval-side", args.eval_side), ("--val", args.val)):
        if value < 1:
            p.error(f"{flag} must be >= 1, not {value}")
    if args.tile < 0:
        p.error(f"--tile must be >= 1, or 0 for whole pictures, not {args.tile}")
    if not args.tile and args.labels != "photo":
        p.error("--tile 0 trains on whole pictures, labelled whole: it needs --labels photo")


def start_from(model: Generator, state: dict, skip: bool, norm: str, photos: list[Photo]) -> None:
    """Load ``--init`` weights into ``model`` (``state``, ``skip`` and ``norm`` as
    :func:`stream.train._init_weights` reads them): those of a single-group style are first folded for a
    model with other norms (:func:`_folded_init`, over ``photos``). RuntimeError where they do not fit."""
    if model.norm in FOLDS and norm == "layer":
        state, skip = _folded_init(model, state, skip, photos), model.skip
    _load_init(model, state, skip)


def _folded_init(model: Generator, state: dict, skip: bool, photos: list[Photo]) -> dict:
    """``--init`` weights of a single-group style as a start for ``model``, whose norms are another kind
    (:func:`stream.fold.folded`): loaded into a single-group twin of ``model`` (narrowed, given a photo
    grade, as :func:`stream.train._load_init` does), then each norm's statistics fixed at their average
    over :data:`FOLD_PHOTOS` training photos, whole, at :data:`EVAL_SIDE` pixels."""
    twin = Generator.from_architecture({**model.architecture(), "norm": "layer"})
    _load_init(twin, state, skip)
    chosen = random.Random(0).sample(photos, min(FOLD_PHOTOS, len(photos)))
    return folded(twin, [to_tensor(fit_side(ph.read(), EVAL_SIDE)).unsqueeze(0) for ph in chosen], model.norm)


def _export(args: argparse.Namespace, run: Run, teacher: Teacher, val_pairs: list, val_photos: list[Photo],
            train_photos: int) -> dict:
    """Score the run's EMA weights as they ship (rounded to the storage precision) on every held-back photo
    and export them as the style ``args.name``, its quality and recipe in the sidecar; what was exported."""
    ema = run.ema.cpu().float()
    shipped = copy.deepcopy(ema)  # scored as it ships: its tensors rounded to the storage precision
    with torch.no_grad():
        for t in shipped.state_dict().values():
            t.copy_(t.to(weights.STORAGE_DTYPE).float())
    val_psnr, val_ssim, each = score(shipped, val_pairs)
    photo_psnr = float(np.mean([psnr(x, y) for x, y in val_pairs]))
    faces = [(ph.name, v) for ph, v in zip(val_photos, each) if ph.category == "face"]
    quality = {"teacher": teacher.name, "teacher_sha256": teacher.sha256,
               "psnr_vs_teacher": round(val_psnr, 2), "ssim_vs_teacher": round(val_ssim, 4),
               "psnr_photo_vs_teacher": round(photo_psnr, 2),
               "val_photos": [ph.name for ph in val_photos],
               "psnr_per_photo": {ph.name: round(v, 2) for ph, v in zip(val_photos, each)},
               "val_faces": len(faces),
               "resolution": weights.eval_resolution(args.eval_side)}
    if faces:  # what a portrait style is judged on
        quality["face_photos"] = [name for name, _ in faces]
        quality["psnr_faces_vs_teacher"] = round(float(np.mean([v for _, v in faces])), 2)
    recipe = {"tile": args.tile, "sides": args.sides, "tiles_per_side": args.tiles if args.tile else None,
              "labels": args.labels, "batch": args.batch, "lr": args.lr, "pixel": args.pixel, "edge": args.edge,
              "ema_decay": EMA_DECAY, "init": _init_name(args.init), "init_steps": run.init_steps,
              "train_photos": train_photos, "temporal": args.temporal, "faces_share": args.faces,
              "change_weight": args.change_weight,
              "tile_offset_multiple": tile_offset_multiple(teacher, args.labels)}
    if args.temporal:
        recipe["temporal_warp"] = {"shift_px": WARP_SHIFT_PX, "rotate_deg": WARP_ROTATE_DEG, "scale": WARP_SCALE}
    path = weights.export_style(ema, args.out, args.name,
                                source=f"distilled from {teacher.name}" + (f" ({teacher.credit})" if teacher.credit else ""),
                                license=teacher.license or "as the teacher's", training_steps=run.init_steps + run.step,
                                quality=quality, recipe=recipe, recommended_max_side=args.eval_side,
                                extra={"variant_of": args.variant_of} if args.variant_of else None,
                                probe=[to_tensor(x).unsqueeze(0) for x, _ in val_pairs[:VAL_DURING_TRAINING]])
    return {"exported": str(path), "steps": run.step,
            **{k: v for k, v in quality.items() if k not in ("val_photos", "psnr_per_photo", "face_photos")}}


if __name__ == "__main__":
    sys.exit(main())
