"""The temporal deflicker filter: steadier static areas, no ghosting on motion."""
from __future__ import annotations

import numpy as np
import pytest

import media
from stream.deflicker import Deflicker, flicker_ratio


def _flickery_style(seed: int = 0):
    rng = np.random.default_rng(seed)
    return lambda x: np.clip(x.astype(int) + rng.integers(-20, 21, x.shape), 0, 255).astype(np.uint8)


def test_static_noise_flicker_drops_by_more_than_30_percent():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    inputs = [np.clip(base.astype(int) + rng.integers(-3, 4, base.shape), 0, 255).astype(np.uint8)
              for _ in range(30)]
    style = _flickery_style(2)
    raw = [style(x) for x in inputs]
    filtered = Deflicker(_flickery_style(2))
    steady = [filtered(x).copy() for x in inputs]
    assert flicker_ratio(inputs, steady) < 0.7 * flicker_ratio(inputs, raw)


def test_moving_pixels_take_the_new_result_at_once():
    d = Deflicker(lambda x: x.copy())
    still = np.zeros((48, 64, 3), np.uint8)
    moved = still.copy()
    moved[10:30, 10:30] = 255
    d(still)
    out = d(moved)
    assert (out[15:25, 15:25] == 255).all()  # no ghost of the previous frame where things moved
    assert (out[40:, 50:] == 0).all()


def test_no_drift_on_a_static_picture():
    d = Deflicker(lambda x: x.copy())
    frame = np.full((8, 8, 3), 100, np.uint8)
    for _ in range(100):
        out = d(frame)
    assert (out == 100).all()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, strength=1.0)
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, threshold=0)


def test_cli_deflicker_keeps_every_frame(cli, clip, tiny_style, tmp_path):
    out = tmp_path / "steady.mp4"
    rc, _, err = cli(clip, out, "--style", tiny_style, "--max-side", "64", "--deflicker", "-q")
    assert rc == 0, err
    assert len(media.probe(out).times) == 30
