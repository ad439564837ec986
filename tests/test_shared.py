"""Checks on the shared media (../shared): skipped cleanly when that folder is absent."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from media import SHARED, needs_shared
from stream.quality import best_grade, half, psnr, psnr_where, stroke_mask

PAIRS = SHARED / "media" / "pairs" / "paprika"


def _pair(stem: str, folder: Path = PAIRS) -> tuple[np.ndarray, np.ndarray]:
    photo = cv2.imread(str(folder / f"{stem}_photo.png"))
    target = cv2.imread(str(folder / f"{stem}_target.png"))
    if photo is None or target is None:
        pytest.skip(f"pair {stem} not in {folder}")
    return cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), cv2.cvtColor(target, cv2.COLOR_BGR2RGB)


def test_strokes_are_where_the_target_moved_the_photo_most():
    photo = np.full((20, 20, 3), 100, np.uint8)
    target = photo.copy()
    target[2:4, 2:12] = 140  # a stroke of 20 pixels: 5% of 400
    target[10:20] += 3  # and a faint grade elsewhere
    mask = stroke_mask(photo, target)
    assert mask.sum() == 20 and mask[2:4, 2:12].all()
    painted = photo.copy()
    painted[10:20] += 3  # gets the grade right, misses the stroke
    assert psnr(painted, target) > 25 and psnr_where(painted, target, mask) == pytest.approx(psnr(photo[2:4, 2:12],
                                                                                             target[2:4, 2:12]))
    with pytest.raises(ValueError):
        psnr_where(photo, target, mask[:10])


def test_psnr_basics():
    a = np.full((8, 8, 3), 100, np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[0, 0, 0] = 110  # one error of 10 levels in 192 values: MSE = 100/192
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / (100 / 192)))
    with pytest.raises(ValueError):
        psnr(a, a[:4])


@needs_shared
@pytest.mark.parametrize("stem", ["cmp1", "cmp2"])
def test_best_grade_beats_the_untouched_photo(stem):
    photo, target = _pair(stem)
    photo, target = half(photo), half(target)
    assert photo.shape == target.shape
    assert psnr(target, target) == float("inf")
    graded = best_grade(photo, target)
    assert graded.shape == photo.shape and graded.dtype == np.uint8
    assert psnr(graded, target) >= psnr(photo, target)
