"""Checks on the shared media (../shared): skipped cleanly when that folder is absent."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from media import SHARED, needs_shared
from stream.quality import best_grade, half, psnr

PAIRS = SHARED / "media" / "pairs" / "paprika"


def _pair(stem: str, folder: Path = PAIRS) -> tuple[np.ndarray, np.ndarray]:
    photo = cv2.imread(str(folder / f"{stem}_photo.png"))
    target = cv2.imread(str(folder / f"{stem}_target.png"))
    if photo is None or target is None:
        pytest.skip(f"pair {stem} not in {folder}")
    return cv2.cvtColor(photo, cv2.COLOR_BGR2RGB), cv2.cvtColor(target, cv2.COLOR_BGR2RGB)


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
