"""Make the README's before/after pictures from public-domain photos.

    python docs/make_figures.py [--style paprika]   (the rocket photo needs scikit-image)

Writes docs/before_after_<style>.jpg: one row per photo, the photo next to its stylised version, at
the style's recommended inference cap (512 px, 160 for -lite). Photos: the NASA astronaut photo
(samples/astronaut.jpg) and SpaceX's launch photo of DSCOVR on Falcon 9 (bundled with scikit-image
as skimage.data.rocket), both public domain: sky, trees and water show what a landscape style does.
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
ROW_WIDTH_PX = 512  # each photo is scaled to this width
JPEG_QUALITY = 90


def photos() -> list[np.ndarray]:
    rows = [read_image(ROOT / "samples" / "astronaut.jpg")]
    try:
        from skimage import data
    except ImportError:
        return rows
    return rows + [data.rocket()]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--style", default="paprika")
    args = p.parse_args()
    engine = Engine(args.style, precision="fp32")  # at the style's recommended cap
    rows = []
    for photo in photos():
        h = round(photo.shape[0] * ROW_WIDTH_PX / photo.shape[1])
        photo = cv2.resize(photo, (ROW_WIDTH_PX, h), interpolation=cv2.INTER_AREA)
        gap = np.full((h, GAP_PX, 3), 255, np.uint8)
        rows.append(np.concatenate([photo, gap, engine(photo)], axis=1))
        rows.append(np.full((GAP_PX, rows[-1].shape[1], 3), 255, np.uint8))
    strip = np.concatenate(rows[:-1], axis=0)
    dst = ROOT / "docs" / f"before_after_{args.style}.jpg"
    cv2.imwrite(str(dst), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    print(dst)


if __name__ == "__main__":
    main()
