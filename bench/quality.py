"""How close a style comes to its teacher, pair by pair, at half resolution.

    python bench/quality.py --style paprika --pairs ../shared/media/pairs/paprika

Prints one JSON line per aligned pair: PSNR of the style's output, of the untouched photo and of the
photo's best global colour grade (a per-channel quadratic fitted to that very target), all against
the target, and whether the pair was trained on (from the style's sidecar).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from stream.engine import Engine
from stream.quality import baselines, half, psnr
from stream.train import load_pairs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default="paprika")
    p.add_argument("--pairs", type=Path, required=True)
    args = p.parse_args()
    engine = Engine(args.style, max_side=0, precision="fp32")
    trained = set(engine.meta.get("recipe", {}).get("train_pairs", []))
    for stem, (photo, target) in load_pairs(args.pairs).items():
        ph, tg = half(photo), half(target)
        print(json.dumps({"style": engine.style, "pair": stem, "trained_on": stem in trained,
                          "psnr_student": round(psnr(engine(ph), tg), 2), **baselines(ph, tg)}), flush=True)


if __name__ == "__main__":
    main()
