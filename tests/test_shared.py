"""Checks on the shared media (../shared): skipped cleanly when that folder is absent."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from media import PAPRIKA, SHARED, needs_shared
from stream.quality import baselines, best_grade, half, psnr

PAIRS = SHARED / "media" / "pairs" / "paprika"
STYLE_PAIRS = {"paprika": PAIRS, "hayao": PAIRS.with_name("hayao_v3"), "shinkai": PAIRS.with_name("shinkai_v3"),
               "webtoon-face": PAIRS.with_name("webtoon_face")}


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


@needs_shared
@pytest.mark.parametrize("style", sorted(s for s in STYLE_PAIRS if PAPRIKA.with_name(f"{s}.safetensors").exists()))
def test_shipped_style_beats_the_grade_on_the_pairs_it_never_saw(style):
    """The sidecar's numbers, recomputed: baselines, and the style itself through the engine."""
    from stream.engine import Engine
    pt = PAPRIKA.with_name(f"{style}.safetensors")
    meta = json.loads(pt.with_suffix(".json").read_text())
    stems = meta["quality"]["val_pairs"]
    assert stems and not set(stems) & set(meta["recipe"]["train_pairs"])
    engine = Engine(pt, max_side=0, precision="fp32", device="cpu")
    photo_db, grade_db, student_db = [], [], []
    for stem in stems:
        photo, target = map(half, _pair(stem, STYLE_PAIRS[style]))
        base = baselines(photo, target)
        photo_db.append(base["psnr_photo"])
        grade_db.append(base["psnr_grade"])
        student_db.append(psnr(engine(photo), target))
    assert meta["quality"]["psnr_photo"] == pytest.approx(np.mean(photo_db), abs=0.02)
    assert meta["quality"]["psnr_grade"] == pytest.approx(np.mean(grade_db), abs=0.02)
    assert np.mean(student_db) == pytest.approx(meta["quality"]["psnr_student"], abs=0.05)  # the sidecar is true
    assert np.mean(student_db) > np.mean(grade_db)  # it learned more than a global recolouring
