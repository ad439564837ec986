"""How close a style comes to its teacher, pair by pair, at half resolution.

    python bench/quality.py --style shinkai --pairs ../shared/media/pairs/shinkai_v3
    python bench/quality.py --checkpoint ~/.cache/animestream/train/NAME/last.ckpt --weights model \
        --pairs ../shared/media/pairs/paprika

Prints one JSON line per aligned pair: PSNR of the style's output, of the untouched photo and of the
photo's best global colour grade (a per-channel quadratic fitted to that very target), all against
the target; ``psnr_student_graded``, the same grade fitted to the style's own output (how much of
what is left is global colour); and whether the pair was trained on (from the style's sidecar).
``--checkpoint`` scores a training checkpoint instead of a style: its EMA weights (what gets
shipped) or, with ``--weights model``, the raw ones. ``--precision`` runs a style as the engine
would at that precision (int8 needs the style's calibration). ``--tile N`` runs the model on N x N tiles
instead of the whole image (the remainder at the right and bottom is left out of every score): the
generator's GroupNorm layers normalise over what they are given, so this shows what a model
trained on N x N crops does on the statistics it was trained with.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from stream.engine import PRECISIONS, Engine
from stream.model import Generator
from stream.quality import baselines, best_grade, half, psnr
from stream.train import load_pairs, read_checkpoint, to_image, to_tensor


def _checkpoint_model(path: Path, key: str):
    """The ``key`` weights of a training checkpoint as an fp32 callable on RGB uint8 images."""
    state = read_checkpoint(path)
    model = Generator(state.get("width", 1.0), state.get("blocks", 4), state.get("skip", False))
    model.load_state_dict(state[key])
    model.eval()

    @torch.inference_mode()
    def run(image):
        return to_image(model(to_tensor(image).unsqueeze(0))[0])

    return run, f"{path.parent.name}@{state['step']}:{key}"


def _whole_tiles(image, tile: int):
    """The part of ``image`` covered by whole ``tile`` x ``tile`` tiles."""
    h, w = image.shape[:2]
    return image[: h - h % tile, : w - w % tile]


def _tiled(run, image, tile: int):
    """``run`` applied to each ``tile`` x ``tile`` tile of ``image`` on its own."""
    out = image.copy()
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            out[y:y + tile, x:x + tile] = run(image[y:y + tile, x:x + tile].copy())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="shinkai")
    p.add_argument("--checkpoint", type=Path, help="a training checkpoint (last.ckpt) instead of a style")
    p.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights of --checkpoint")
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--tile", type=int, default=0, help="run on tiles of this side, pixels (0: whole image)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="the style's precision (default: %(default)s; auto is what the CLI runs)")
    args = p.parse_args()
    if args.checkpoint:
        run, name = _checkpoint_model(args.checkpoint, args.weights)
        trained: set[str] = set()
    else:
        engine = Engine(args.style, max_side=0, precision=args.precision)
        run, name = engine, engine.style
        trained = set(engine.meta.get("recipe", {}).get("train_pairs", []))
    for stem, (photo, target) in load_pairs(args.pairs).items():
        ph, tg = half(photo), half(target)
        if args.tile:
            ph, tg = (_whole_tiles(a, args.tile) for a in (ph, tg))
            out = _tiled(run, ph, args.tile)
        else:
            out = run(ph).copy()
        print(json.dumps({"style": name, "pair": stem, "trained_on": stem in trained if trained else None,
                          "tile": args.tile or None,
                          "psnr_student": round(psnr(out, tg), 2),
                          "psnr_student_graded": round(psnr(best_grade(out, tg), tg), 2),
                          **baselines(ph, tg)}), flush=True)


if __name__ == "__main__":
    main()
