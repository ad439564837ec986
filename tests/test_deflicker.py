"""The temporal deflicker filter: steadier in still areas and on what moves, no ghosting where the flow fails."""
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


def _panning(steps: int, shift: int, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    """A textured scene seen by a camera panning ``shift`` px a frame to the right (content moves left)."""
    import cv2

    rng = np.random.default_rng(3)
    h, w = size
    scene = cv2.GaussianBlur(rng.integers(0, 256, (h, w + shift * steps, 3)).astype(np.uint8), (0, 0), 2)
    scene = cv2.normalize(scene, None, 0, 255, cv2.NORM_MINMAX)
    return [scene[:, t * shift:t * shift + w].copy() for t in range(steps)]


def _pan_error(frames: list[np.ndarray], shift: int) -> float:
    """Mean |frame(t) - frame(t-1) moved with the pan|, away from the borders: the warping error of a known
    motion."""
    m = 8
    return float(np.mean([np.abs(b[m:-m, m:-m - shift].astype(int) - a[m:-m, m + shift:-m].astype(int)).mean()
                          for a, b in zip(frames, frames[1:])]))


@pytest.mark.parametrize("flow_side", [256, 48])  # the flow and the blend weights at full size, and on a copy
def test_motion_is_followed_so_moving_texture_flickers_less_and_keeps_its_place(flow_side):
    frames = _panning(24, 2)
    raw = [_flickery_style(5)(x) for x in frames]
    d = Deflicker(_flickery_style(5), flow_side=flow_side)
    steady = [d(x).copy() for x in frames]
    still = Deflicker(_flickery_style(5), motion=False, flow_side=flow_side)
    unmoved = [still(x).copy() for x in frames]
    assert _pan_error(steady, 2) < 0.6 * _pan_error(raw, 2)  # the style's own flicker, mostly gone
    assert _pan_error(unmoved, 2) > 0.9 * _pan_error(raw, 2)  # without the flow, moving texture is left as is
    # no trail: each output is nearer the clean current frame than the raw result is
    def off(outs: list[np.ndarray]) -> float:
        return float(np.mean([np.abs(o.astype(int) - f.astype(int)).mean() for o, f in zip(outs[4:], frames[4:])]))

    assert off(steady) < 0.7 * off(raw)


def _noisy(frames: list[np.ndarray], amplitude: int, seed: int = 9) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(int) + rng.integers(-amplitude, amplitude + 1, f.shape), 0, 255).astype(np.uint8)
            for f in frames]


@pytest.mark.parametrize("flow_side, batch, noise", [(256, 5, 0), (48, 1, 0), (48, 4, 0), (256, 4, 6)])
def test_the_device_filter_matches_the_host_filter(flow_side, batch, noise):
    """The GPU plane path's filter (stream.devicedeflicker), run on the CPU device in batches, gives the host
    filter's frames within rounding: the same flow, warps, weights (and noise floor) and blend."""
    import cv2
    import torch

    from stream.devicedeflicker import DeviceDeflicker

    frames = _noisy(_panning(24, 2), noise) if noise else _panning(24, 2)
    raw = [_flickery_style(5)(x) for x in frames]
    results = iter(raw)
    host = Deflicker(lambda _: next(results).copy(), flow_side=flow_side)
    want = [host(x).astype(int) for x in frames]
    h, w = frames[0].shape[:2]
    dev = DeviceDeflicker(host, w, h, "cpu", full_range=True)
    got = []
    for start in range(0, len(frames), batch):
        chunk = frames[start:start + batch]
        flows = np.empty((len(chunk), dev.small[1], dev.small[0], 2), np.float32)
        dev.flows([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in chunk], flows)
        small = dev.shrink(torch.from_numpy(np.stack(chunk)).permute(0, 3, 1, 2).float())
        styled = torch.from_numpy(np.stack(raw[start:start + batch])).permute(0, 3, 1, 2).float()
        dev.apply(small, styled, torch.from_numpy(flows))
        got += [f.permute(1, 2, 0).round().numpy().astype(int) for f in styled]
    assert (got[0] == raw[0]).all()  # the first frame has no history
    assert max(np.abs(a - b).mean() for a, b in zip(want, got)) <= 1.0
    assert _pan_error(got, 2) < 1.1 * _pan_error(want, 2)


def test_overlap_prepares_on_its_helper_thread_and_changes_no_frame():
    """Live runs prepare each blend on a helper thread while the model runs: the frames are the same, a
    size change or style switch still starts afresh, and the thread ends with close()."""
    import threading

    frames = _panning(8, 2) + _panning(3, 2, size=(64, 80))
    plain = Deflicker(_flickery_style(5))
    want = [plain(x).copy() for x in frames]
    where = []
    with Deflicker(_flickery_style(5), overlap=True) as d:
        prepare = d._prepare
        d._prepare = lambda image: where.append(threading.current_thread().name) or prepare(image)
        got = [d(x).copy() for x in frames]
        assert any(name.startswith("animestream-deflicker") for name in media.animestream_threads())
    assert len(where) == 9 and all(name.startswith("animestream-deflicker") for name in where)  # not frames 0, 8
    assert all((a == b).all() for a, b in zip(want, got))
    assert media.animestream_threads() == []


def test_median_level_is_the_lower_median():
    from stream.deflicker import median_level

    rng = np.random.default_rng(0)
    for size in (1, 2, 7, 100, 4097):
        levels = rng.integers(0, 256, size, dtype=np.uint8)
        assert median_level(levels) == np.sort(levels)[(size - 1) // 2]


def test_the_floor_follows_the_inputs_noise_but_not_what_changes():
    """A noisy handheld input: its noise is not taken for change (steadier than the fixed floor); a clean
    one keeps the fixed floor, frame for frame; and what appears still takes the new result at once."""
    clean = _panning(16, 2)
    noisy = _noisy(clean, 6)
    runs = {}
    for name, frames in (("clean", clean), ("noisy", noisy)):
        for adaptive in (True, False):
            d = Deflicker(_flickery_style(5), adaptive=adaptive)
            runs[name, adaptive] = [d(x).copy() for x in frames], d.last_floor
    assert all((a == b).all() for a, b in zip(runs["clean", True][0], runs["clean", False][0]))
    assert runs["clean", True][1] == 2.0 and 2.0 < runs["noisy", True][1] <= 6.0
    assert _pan_error(runs["noisy", True][0], 2) < 0.8 * _pan_error(runs["noisy", False][0], 2)
    d = Deflicker(lambda x: x.copy())
    still = _noisy([np.full((48, 64, 3), 100, np.uint8)] * 9, 6)
    for x in still[:-1]:
        d(x)
    appeared = still[-1]
    appeared[10:30, 10:30] = 250
    out = d(appeared)
    assert d.last_floor > 2.0 and (out[15:25, 15:25] == 250).all()  # no ghost of the square's absence


def test_a_new_size_starts_afresh_with_the_new_result():
    d = Deflicker(lambda x: x.copy())
    d(np.zeros((32, 48, 3), np.uint8))
    d(np.zeros((32, 48, 3), np.uint8))
    big = np.full((40, 40, 3), 200, np.uint8)
    assert (d(big) == 200).all()


def test_a_style_switch_shows_the_new_style_at_once():
    class Switcher:  # what stream.live.StyleSwitcher looks like to the filter
        style = "a"

        def __call__(self, x):
            return np.full_like(x, 10 if self.style == "a" else 240)

        def reset(self):
            pass

    switcher = Switcher()
    d = Deflicker(switcher)
    frame = np.full((32, 48, 3), 128, np.uint8)
    for _ in range(5):
        assert (d(frame) == 10).all()
    switcher.style = "b"
    assert (d(frame) == 240).all()


def test_a_switch_during_the_engine_call_never_blends_the_two_styles():
    class SwitchesMidCall:  # the other thread switches while this frame is being stylised
        style, calls = "a", 0

        def __call__(self, x):
            self.calls += 1
            out = np.full_like(x, 10 if self.style == "a" else 240)
            if self.calls == 4:
                self.style = "b"  # after this call's result was made in "a"
            return out

        def reset(self):
            pass

    d = Deflicker(SwitchesMidCall())
    frame = np.full((32, 48, 3), 128, np.uint8)
    outs = [int(d(frame)[0, 0, 0]) for _ in range(8)]
    assert outs[:4] == [10] * 4 and outs[4:] == [240] * 4  # the last "a" frame is not history for "b"


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, strength=1.0)
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, threshold=0)
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, threshold=4, floor=4)
    with pytest.raises(ValueError):
        Deflicker(lambda x: x, flow_side=8)


def test_cli_deflicker_keeps_every_frame(cli, clip, tiny_style, tmp_path):
    out = tmp_path / "steady.mp4"
    rc, _, err = cli(clip, out, "--style", tiny_style, "--max-side", "64", "--deflicker", "-q")
    assert rc == 0, err
    assert len(media.probe(out).times) == 30
