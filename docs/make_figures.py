"""Make the README's before/after pictures from public-domain photos.

    python docs/make_figures.py --style hayao [--teachers ../shared/teachers]   (needs scikit-image)

Writes docs/before_after_<style>.jpg: one row per photo, the photo next to its stylised version at the
style's recommended inference cap (512 px, 160 for -lite ones, scaled back up), and, with --teachers,
the output of the teacher the style was distilled from, run the same way, so that the two can be
compared. Photos, all public domain: the NASA astronaut photo (samples/astronaut.jpg), and from
scikit-image's bundled data SpaceX's launch of DSCOVR on Falcon 9 (skimage.data.rocket: sky, trees and
water) and Stefan van der Walt's cat Chelsea (skimage.data.chelsea, CC0).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from stream import weights
from stream.engine import Engine, inference_size
from stream.onnxgen import OnnxGenerator, OnnxIO
from stream.sources import read_image

ROOT = Path(__file__).resolve().parent.parent
GAP_PX = 8
ROW_WIDTH_PX = 512  # each photo is scaled to this width
JPEG_QUALITY = 88


def photos() -> list[np.ndarray]:
    from skimage import data  # dev-only: the photos ship with scikit-image

    return [read_image(ROOT / "samples" / "astronaut.jpg"), data.rocket(), data.chelsea()]


def teacher_engine(teachers: Path, style: weights.Style):
    """The style's teacher as a frame callable at the style's cap, or None (no teacher, or not here)."""
    name = style.meta.get("quality", {}).get("teacher")
    manifest = teachers / "teachers.json"
    if not name or not manifest.exists():
        return None
    entries = {t["name"]: t for t in json.loads(manifest.read_text())["teachers"]}
    if name not in entries:  # a lite learned from our own full style
        return Engine(name, max_side=style.recommended_max_side, precision="fp32")
    gen = OnnxGenerator(teachers / entries[name]["file"], OnnxIO.from_manifest(entries[name]))
    cap = style.recommended_max_side or 512

    def run(frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        iw, ih = inference_size(w, h, cap)
        out = gen.stylise(cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_AREA))
        return cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR)

    return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--style", default=weights.DEFAULT_STYLE)
    p.add_argument("--teachers", type=Path, help="teachers.json folder: add the teacher's output to each row")
    p.add_argument("--out", type=Path, help="default: docs/before_after_STYLE.jpg")
    args = p.parse_args()
    style = weights.resolve(args.style)
    engine = Engine(style)  # at the style's recommended cap and default precision, as users run it
    teacher = teacher_engine(args.teachers, style) if args.teachers else None
    rows = []
    for photo in photos():
        h = round(photo.shape[0] * ROW_WIDTH_PX / photo.shape[1])
        photo = cv2.resize(photo, (ROW_WIDTH_PX, h), interpolation=cv2.INTER_AREA)
        gap = np.full((h, GAP_PX, 3), 255, np.uint8)
        cells = [photo, gap, engine(photo).copy()]
        if teacher is not None:
            cells += [gap, teacher(photo)]
        rows.append(np.concatenate(cells, axis=1))
        rows.append(np.full((GAP_PX, rows[-1].shape[1], 3), 255, np.uint8))
    strip = np.concatenate(rows[:-1], axis=0)
    dst = args.out or ROOT / "docs" / f"before_after_{style.name}.jpg"
    cv2.imwrite(str(dst), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    print(dst)


if __name__ == "__main__":
    main()
