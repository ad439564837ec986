"""How far a teacher's output for a tile alone is from the same region of its output for the whole picture:
the ceiling a student trained on tiles labelled alone (``distill --labels tile``) meets when it is scored on
whole pictures, for teachers whose normalisations see the whole picture (instance norm).

    python bench/tilelabels.py [--teachers ../shared/teachers] [--teacher cartoongan_hosoda,animeganv2_hayao]
                               [--photos 4] [--tile 192] [--side 512]

Each of the first ``--photos`` photos of ``../shared/media/photos`` (sorted by name) is scaled so its longest
side is ``--side`` pixels (cut to a multiple of 4), stylised whole, and three ``--tile`` px tiles of it (the
top-left corner, the bottom-right corner, the centre) stylised alone; one JSON line per photo and teacher with
the PSNR (dB, 0-255) of each tile's output against the same region of the whole picture's output, then a
line per teacher with their range and mean.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream.distill import fit_side, load_teacher  # noqa: E402
from stream.quality import psnr  # noqa: E402

SHARED = ROOT.parent / "shared"


def tile_psnrs(teacher, rgb: np.ndarray, tile: int) -> list[float]:
    whole = teacher(rgb)
    h, w = rgb.shape[:2]
    spots = [(0, 0), (h - tile, w - tile), ((h - tile) // 8 * 4, (w - tile) // 8 * 4)]
    return [round(psnr(teacher(np.ascontiguousarray(rgb[y:y + tile, x:x + tile])), whole[y:y + tile, x:x + tile]), 2)
            for y, x in spots]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teachers", type=Path, default=SHARED / "teachers")
    p.add_argument("--teacher", default="cartoongan_hosoda,animeganv2_hayao", help="comma-separated manifest names")
    p.add_argument("--photos", type=int, default=4)
    p.add_argument("--tile", type=int, default=192)
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    photos = sorted((SHARED / "media" / "photos").glob("*.jpg"))[:args.photos]
    for name in args.teacher.split(","):
        teacher = load_teacher(name, args.teachers, None, args.threads)
        every = []
        for path in photos:
            rgb = fit_side(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), args.side)
            h, w = rgb.shape[:2]
            rgb = np.ascontiguousarray(rgb[:h - h % 4, :w - w % 4])
            got = tile_psnrs(teacher, rgb, args.tile)
            every += got
            print(json.dumps({"teacher": name, "photo": path.name, "tile_alone_vs_whole_psnr_db": got}), flush=True)
        print(json.dumps({"teacher": name, "tiles": len(every), "min_db": min(every), "max_db": max(every),
                          "mean_db": round(float(np.mean(every)), 2)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
