"""Make the README's before/after picture from the public-domain sample photo.

    python docs/make_figures.py [--style paprika]

Writes docs/before_after_<style>.png: the NASA astronaut photo (samples/astronaut.jpg, public
domain) next to its stylised version, at the style's recommended inference cap (512 px, 160 for -lite).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stream.engine import Engine
from stream.sources import read_image

ROOT = Path(__file__).resolve().parent.parent
GAP_PX = 8


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--style", default="paprika")
    p.add_argument("--photo", type=Path, default=ROOT / "samples" / "astronaut.jpg")
    args = p.parse_args()
    photo = read_image(args.photo)
    out = Engine(args.style, precision="fp32")(photo)  # at the style's recommended cap
    gap = np.full((photo.shape[0], GAP_PX, 3), 255, np.uint8)
    strip = np.concatenate([photo, gap, out], axis=1)
    dst = ROOT / "docs" / f"before_after_{args.style}.png"
    cv2.imwrite(str(dst), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(dst)


if __name__ == "__main__":
    main()
