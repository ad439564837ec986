"""The GPU file path's parts, run on the CPU: batch sizing under torch's index limit, YUV conversions
against swscale, the plane-based job against the RGB one, the encoder fallback."""
from __future__ import annotations

from fractions import Fraction

import av
from av.video.reformatter import Interpolation
import numpy as np
import pytest
import torch

import media
from stream import batching, yuv
from stream.engine import Engine, inference_size
from stream.errors import OutOfMemoryError

HAYAO = {"width": 1.0, "blocks": 4, "skip": False, "upsample": "asymmetric"}  # weights/hayao.json
SHINKAI = {"width": 0.5, "blocks": 4, "skip": True, "upsample": "align_corners"}
GIB = 2**30
H200_FREE = 139 * GIB
FP16_BYTES = 700  # stream.engine.ACTIVATION_BYTES_PER_PIXEL["fp16"]


def _traced_widest(arch: dict, width: int, height: int) -> int:
    """The largest tensor any layer of the real generator takes or gives, traced on the meta device."""
    from stream.model import Generator

    model = Generator.from_architecture(arch).to("meta")
    widest = [0]

    def hook(_module, inputs, output):
        widest[0] = max([widest[0]] + [t.numel() for t in (*inputs, output) if isinstance(t, torch.Tensor)])

    for module in model.modules():
        if not list(module.children()):
            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.empty(1, 3, height, width, device="meta"))
    return widest[0]


@pytest.mark.parametrize("arch", [HAYAO, SHINKAI, {"width": 0.25, "blocks": 1},
                                  {"width": 0.5, "guided_filter": {"radius": 1, "eps": 0.005}, "skip": True}])
@pytest.mark.parametrize("width, height", [(1920, 1080), (68, 52), (510, 286)])
def test_the_widest_activation_is_the_real_generators(arch, width, height):
    assert batching.widest_activation(arch, width, height) == _traced_widest(arch, width, height)


def _batch(arch, width, height, **kw):
    kw.setdefault("free_bytes", H200_FREE)
    return batching.auto_batch(arch, width, height, bytes_per_pixel=FP16_BYTES * arch["width"], **kw)


def test_1080p_at_full_resolution_never_batches_past_the_index_limit():
    """16 frames of 1080p crashed reflection padding (266 M elements each); the batch stays under 2^31."""
    assert batching.widest_activation(HAYAO, 1920, 1080) * 16 > batching.INDEX_LIMIT
    assert batching.index_limited_batch(HAYAO, 1920, 1080) == 8
    n = _batch(HAYAO, 1920, 1080)
    assert 1 <= n <= 8 and n * batching.widest_activation(HAYAO, 1920, 1080) <= batching.INDEX_LIMIT
    assert _batch(HAYAO, 1920, 1080, requested=16) == 8  # --batch 16 is lowered, not crashed into


def test_frames_capped_at_512_get_the_full_automatic_batch():
    assert _batch(HAYAO, 512, 288) == batching.MAX_AUTO_BATCH
    assert _batch(HAYAO, 512, 512) == batching.MAX_AUTO_BATCH
    assert _batch(HAYAO, 512, 288, free_bytes=GIB) == int(GIB * 0.5 // (512 * 288 * 700))  # memory bound
    assert _batch(HAYAO, 512, 288, free_bytes=None) == 1


def test_4k_runs_one_frame_at_a_time_and_8k_is_refused():
    assert _batch(HAYAO, 3840, 2160) == 1
    assert batching.index_limited_batch(HAYAO, 7680, 4320) == 0
    with pytest.raises(OutOfMemoryError):
        _batch(HAYAO, 7680, 4320)


def test_the_suggested_max_side_is_the_largest_that_fits():
    side = batching.largest_side_that_fits(HAYAO, 7680, 4320, inference_size)
    assert side % 4 == 0 and 4000 < side < 7680
    assert batching.index_limited_batch(HAYAO, *inference_size(7680, 4320, side)) >= 1
    assert batching.index_limited_batch(HAYAO, *inference_size(7680, 4320, side + 4)) == 0


def _device_engine(style, **options) -> Engine:
    engine = Engine(style, precision="fp32", device="cpu", **options)
    engine.resizes_on_device = True  # the seam: the GPU path's sizing, on the CPU
    return engine


def test_an_engine_sizes_its_batch_from_the_frames_it_runs(tiny_style, monkeypatch):
    monkeypatch.setattr("stream.engine.available_memory_bytes", lambda _device: H200_FREE)
    tiny = Engine(tiny_style).spec.architecture
    engine = _device_engine(tiny_style, max_side=0)
    assert engine.batch_size == 1  # no cap and no frame yet: nothing is guessed
    assert engine.fit_batch(1280, 720) == batching.MAX_BATCH_PIXELS // (1280 * 720) == 4
    assert engine.fit_batch(3840, 2160) == 1
    with pytest.raises(OutOfMemoryError, match=r"use --max-side \d+ or less") as refused:
        engine.fit_batch(15360, 8640)
    side = int(str(refused.value).split("--max-side ")[1].split()[0])
    assert batching.index_limited_batch(tiny, *inference_size(15360, 8640, side)) == 1
    capped = _device_engine(tiny_style, max_side=512)
    assert capped.fit_batch(960, 540) == batching.MAX_AUTO_BATCH  # the cap makes the model's frames small
    assert capped.fit_batch(1920, 1080) == 8  # but full-size frames are held on the host: 8 of 1080p per batch
    assert capped.fit_batch(3840, 2160) == 2
    assert capped.fit_batch(15360, 8640) == 1
    pinned = _device_engine(tiny_style, max_side=0, batch=64)
    assert pinned.fit_batch(3840, 2160) == batching.index_limited_batch(tiny, 3840, 2160) == 8


def test_the_automatic_batch_bounds_the_full_size_frames_held_on_the_host():
    assert _batch(HAYAO, 512, 288, frame_pixels=512 * 288) == batching.MAX_AUTO_BATCH
    assert _batch(HAYAO, 512, 288, frame_pixels=1920 * 1080) == 8
    assert _batch(HAYAO, 512, 288, frame_pixels=3840 * 2160) == 2
    assert _batch(HAYAO, 512, 288, frame_pixels=7680 * 4320) == 1
    assert _batch(HAYAO, 512, 288, frame_pixels=3840 * 2160, requested=16) == 16  # --batch is the user's


def test_a_cpu_engine_keeps_batch_one(tiny_style):
    engine = Engine(tiny_style, max_side=0, precision="fp32", device="cpu")
    assert engine.fit_batch(1920, 1080) == engine.batch_size == 1


# -- YUV <-> RGB in torch against swscale (what today's path does on the host)

def _photo(width: int = 96, height: int = 64) -> np.ndarray:
    """A real photograph (the shipped sample), small: skin, sky and sharp edges."""
    import cv2

    bgr = cv2.imread(str(media.ROOT / "samples" / "astronaut.jpg"))
    return np.ascontiguousarray(cv2.resize(bgr, (width, height), interpolation=cv2.INTER_AREA)[..., ::-1])


CASES = [("yuv420p", "ITU601", "MPEG"), ("yuv420p", "ITU709", "MPEG"), ("yuv420p", "ITU709", "JPEG"),
         ("yuvj420p", "ITU601", "JPEG"), ("nv12", "ITU709", "MPEG"), ("yuv420p10le", "ITU709", "MPEG"),
         ("yuv444p", "ITU601", "MPEG")]


@pytest.mark.parametrize("pix_fmt, colorspace, color_range", CASES)
def test_planes_to_rgb_matches_swscale(pix_fmt, colorspace, color_range):
    rgb = _photo()
    decoded = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=pix_fmt, dst_colorspace=colorspace, dst_color_range=color_range)
    decoded.colorspace, decoded.color_range = getattr(av.video.reformatter.Colorspace, colorspace), \
        getattr(av.video.reformatter.ColorRange, color_range)
    # swscale reads the frame's own matrix tag; the range is passed, as a full-range yuv420p needs it said.
    # Its accurate path is the reference; its fast default (today's file jobs) truncates and repeats chroma.
    accurate = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    want = decoded.reformat(format="rgb24", src_color_range=color_range, interpolation=accurate).to_ndarray()
    fast = decoded.reformat(format="rgb24", src_color_range=color_range).to_ndarray().astype(float)
    fmt = yuv.plane_format_of(decoded.format.name, int(decoded.colorspace), int(decoded.color_range))
    assert fmt.matrix == ("bt709" if colorspace == "ITU709" else "bt601")
    assert fmt.full_range == (color_range == "JPEG")
    packed = torch.from_numpy(decoded.to_ndarray().astype(np.int32 if fmt.bits > 8 else np.uint8))[None]
    got = yuv.to_rgb(packed, fmt, 64, 96)[0].permute(1, 2, 0).numpy()
    assert got.shape == want.shape and np.abs(got - want).mean() <= 1.0
    assert np.abs(got - fast).mean() <= 2.5 and abs((got - fast).mean()) <= 2.0
    assert np.abs(got - rgb).mean() < 4  # and the round trip lands near the photo


def test_rgb_to_yuv420p_matches_swscale():
    rgb = np.stack([_photo(), media.frame_image(3, 96, 64)])
    got = yuv.to_yuv420p(torch.from_numpy(rgb).permute(0, 3, 1, 2).float()).numpy()
    for i, image in enumerate(rgb):
        want = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray()
        assert got[i].shape == want.shape and got[i].dtype == np.uint8
        diff = np.abs(got[i].astype(int) - want)
        assert diff[:64].mean() <= 1.0 and diff[64:].mean() <= 1.0  # luma, then both chroma planes


def test_an_unknown_pixel_format_has_no_plane_format():
    assert yuv.plane_format_of("rgb24") is None and yuv.plane_format_of("yuv422p") is None
    with pytest.raises(ValueError):
        yuv.PlaneFormat("yuv420p", matrix="smpte240m")


# -- the plane path of a file job, run on the CPU device

def _seam(style, **options) -> Engine:
    engine = Engine(style, precision="fp32", device="cpu", **options)
    engine.resizes_on_device = True  # what a CUDA engine does, on the CPU
    return engine


def _frames(path) -> list[np.ndarray]:
    return [frame.astype(int) for frame in media.decoded_frames(path)]


@pytest.mark.parametrize("batch", [1, 3])
def test_the_plane_path_matches_the_rgb_path_frame_for_frame(tmp_path, tiny_style, batch, monkeypatch):
    from stream import devicejob
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=7, size=(96, 72), pts=media.VFR_PTS[:7],
                           time_base=Fraction(1, 1000))
    used = []
    monkeypatch.setattr(devicejob.PlaneEngine, "submit", _spy(devicejob.PlaneEngine.submit, used))
    rgb_engine = _seam(tiny_style, max_side=48, batch=batch)
    rgb_engine.planes_on_device = False  # today's path: RGB frames on the host, resized on the device
    today = convert_video(src, tmp_path / "rgb.mp4", rgb_engine, progress=False, crf=0)
    assert not used
    stats = convert_video(src, tmp_path / "yuv.mp4", _seam(tiny_style, max_side=48, batch=batch), progress=False,
                          crf=0)
    assert used and all(isinstance(f, np.ndarray) and f.shape == (108, 96) for f in used)  # planes, not RGB
    assert stats.frames_out == today.frames_out == 7 and stats.extra["batch"] == batch
    want, got = media.probe(tmp_path / "rgb.mp4"), media.probe(tmp_path / "yuv.mp4")
    assert got.times == want.times == media.probe(src).times
    assert got.audio_duration == pytest.approx(want.audio_duration)
    with av.open(str(tmp_path / "rgb.mp4")) as a, av.open(str(tmp_path / "yuv.mp4")) as b:
        packets = [[(p.pts, p.size) for p in f.demux(audio=0) if p.size] for f in (a, b)]
    assert packets[0] == packets[1]  # the sound, copied packet for packet
    for i, (old, new) in enumerate(zip(_frames(tmp_path / "rgb.mp4"), _frames(tmp_path / "yuv.mp4"))):
        assert np.abs(old - new).mean() <= 2.0, i  # float colours in, no truncation: within rounding


def _pan_error(frames: list[np.ndarray], shift: int) -> float:
    """Mean |frame(t) - frame(t-1) moved with the camera's pan|, away from the borders."""
    m = 8
    return float(np.mean([np.abs(b[m:-m, m:-m - shift] - a[m:-m, m + shift:-m]).mean() for a, b in zip(frames, frames[1:])]))


@pytest.mark.parametrize("batch", [1, 4])
def test_deflicker_runs_on_the_plane_path_as_on_the_host(tmp_path, tiny_style, batch, monkeypatch):
    """--deflicker keeps a GPU job on its batched plane path (the filter runs on the device, the flow on the
    host): its frames are the host filter's run over the unfiltered job's, within rounding, and steadier."""
    from stream import devicejob
    from stream.deflicker import Deflicker
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=10, size=(96, 72), pan=2, audio=None)
    used = []
    monkeypatch.setattr(devicejob.PlaneEngine, "submit", _spy(devicejob.PlaneEngine.submit, used))
    stats = convert_video(src, tmp_path / "dev.mp4", Deflicker(_seam(tiny_style, max_side=48, batch=batch)),
                          progress=False, crf=0)
    assert len(used) == 10 and stats.frames_out == 10 and stats.extra["batch"] == batch  # batched planes
    convert_video(src, tmp_path / "raw.mp4", _seam(tiny_style, max_side=48, batch=batch), progress=False, crf=0)
    raw = iter(media.decoded_frames(tmp_path / "raw.mp4"))
    host = Deflicker(lambda _: next(raw))  # the host filter, over the unfiltered job's frames
    want = [host(frame).astype(int) for frame in media.decoded_frames(src)]
    dev, raw = _frames(tmp_path / "dev.mp4"), _frames(tmp_path / "raw.mp4")
    for i, (a, b) in enumerate(zip(want, dev)):
        assert np.abs(a - b).mean() <= 2.0, i  # 1.5 at most when written, rounding adding up over frames
    assert np.abs(dev[-1] - raw[-1]).mean() > 1.0  # the filter ran
    assert _pan_error(dev, 2) < 0.8 * _pan_error(raw, 2)


def test_a_short_last_batch_runs_padded_to_the_jobs_one_shape(tmp_path, tiny_style, monkeypatch):
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=7, size=(96, 72))
    engine = _seam(tiny_style, max_side=48, batch=3)
    shapes = []
    run = engine.stylise_on_device
    monkeypatch.setattr(engine, "stylise_on_device", lambda x: shapes.append(tuple(x.shape)) or run(x))
    stats = convert_video(src, tmp_path / "out.mp4", engine, progress=False)
    assert stats.frames_out == 7 and media.probe(tmp_path / "out.mp4").times == media.probe(src).times
    assert shapes == [(3, 3, 72, 96)] * 3  # 3 + 3 + 1 frames: the last batch padded, its padding dropped


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "nv12", "yuv420p10le", "yuv444p"])
def test_a_plane_engine_warms_up_on_black_frames_of_its_format(tiny_style, pix_fmt):
    from stream.devicejob import PlaneEngine

    planes = PlaneEngine(_seam(tiny_style, max_side=32, batch=3), yuv.PlaneFormat(pix_fmt), 64, 48)
    planes.warm()  # what a CUDA job does before its pipeline starts
    frame = av.VideoFrame.from_ndarray(media.frame_image(1, 64, 48), format="rgb24").reformat(format=pix_fmt)
    out = planes(frame.to_ndarray().view(np.int16) if pix_fmt.endswith("10le") else frame.to_ndarray())
    assert out.shape == (72, 64) and out.dtype == np.uint8  # packed yuv420p, as the encoder takes it


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuvj420p", "nv12", "yuv420p10le", "yuv444p"])
def test_the_device_filter_reads_the_luma_of_every_plane_format(tiny_style, pix_fmt):
    """--deflicker on the plane path takes its flow from each format's luma plane: a noisy panning scene
    comes out steadier than without the filter, from the same first frame."""
    from stream.deflicker import Deflicker
    from stream.devicejob import PlaneEngine

    rng = np.random.default_rng(0)
    scene = media.noise_image(7, 72, 96 + 2 * 9)
    frames = [np.clip(scene[:, 2 * i:2 * i + 96].astype(int) + rng.integers(-3, 4, (72, 96, 3)), 0, 255)
              .astype(np.uint8) for i in range(9)]

    def packed(rgb):
        planes = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt).to_ndarray()
        return planes.view(np.int16) if pix_fmt.endswith("10le") else planes

    def run(deflicker):
        fmt = yuv.plane_format_of(pix_fmt)
        planes = PlaneEngine(_seam(tiny_style, max_side=48, batch=3), fmt, 96, 72, deflicker)
        out = []
        for start in range(0, 9, 3):
            out += [av.VideoFrame.from_ndarray(o.copy(), format="yuv420p").to_ndarray(format="rgb24").astype(int)
                    for o in planes.submit([packed(f) for f in frames[start:start + 3]])()]
        return out

    raw, steady = run(None), run(Deflicker(lambda x: x))
    assert (raw[0] == steady[0]).all()
    assert _pan_error(steady, 2) < 0.5 * _pan_error(raw, 2)  # 0.14-0.37 (4:4:4 keeps more of the noise)


class _Doubling(torch.nn.Module):
    def forward(self, x):
        return x * 2


def test_the_batched_path_runs_the_backends_eager_module_where_it_keeps_one(tiny_style):
    """A CUDA backend scripts its generator for single frames and keeps the eager one for batches (a scripted
    module profiles and compiles on each new shape's first calls, inside a short job's time)."""
    engine = _seam(tiny_style, max_side=0)
    assert engine._batch_module() is engine.module  # a CPU backend keeps none
    engine.backend.eager = _Doubling()
    with torch.inference_mode():
        out = engine.stylise_on_device(torch.full((1, 3, 8, 8), 127.5 * 1.5))  # 0.5 in [-1, 1]
    assert torch.allclose(out, torch.full_like(out, 255.0))  # 2 x 0.5 = 1.0: the eager module ran
    engine.module = torch.nn.Identity()  # a module set on the engine (tests, --compile's plain module) wins
    assert engine._batch_module() is engine.module


def _spy(submit, seen: list):
    def spy(self, frames):
        seen.extend(frames)
        return submit(self, frames)
    return spy


def test_streams_the_plane_path_cannot_take_run_the_rgb_path(tmp_path, tiny_style):
    from stream import devicejob
    from stream.filejob import convert_video

    plain = media.write_clip(tmp_path / "plain.mp4", frames=3, size=(66, 50))
    with devicejob.PlaneSource(plain) as source:
        assert source.plane_format == yuv.PlaneFormat("yuv420p")  # untagged 4:2:0: BT.601, limited range
    rgb = tmp_path / "rgb.mkv"
    with av.open(str(rgb), "w") as out:  # a 4:4:4 RGB stream (libx264rgb): not a format the path reads
        stream = out.add_stream("libx264rgb", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "bgr24"
        for i in range(3):
            frame = av.VideoFrame.from_ndarray(media.frame_image(i, 64, 48), format="rgb24").reformat(format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    with devicejob.PlaneSource(rgb) as source:
        assert source.plane_format is None
    stats = convert_video(rgb, tmp_path / "out.mp4", _seam(tiny_style, max_side=32), progress=False)
    assert stats.frames_out == 3
    assert not devicejob.wants_planes(_seam(tiny_style), tmp_path / "out.gif")
    assert not devicejob.wants_planes(Engine(tiny_style, precision="fp32", device="cpu"), tmp_path / "out.mp4")


# -- --compile: once per style and shape, and only where it pays

class _FakeCompiled(torch.nn.Module):
    """Stands for ``torch.compile(module)`` (whose wrapper keeps the module as ``_orig_mod``): runs it and
    records every input shape, so the tests see what would have compiled."""

    def __init__(self, module, shapes: list):
        super().__init__()
        self._orig_mod, self.shapes = module, shapes

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return self._orig_mod(x)


@pytest.fixture
def fresh_compile_cache(monkeypatch):
    from stream import compiled

    monkeypatch.setattr(compiled, "_modules", {})
    monkeypatch.setattr(compiled, "_warm", set())
    return compiled


def _compiling_engine(style, shapes, **options) -> Engine:
    engine = _seam(style, compile=True, **options)
    engine.module = _FakeCompiled(engine.module, shapes)
    return engine


def test_compiling_is_skipped_for_jobs_too_short_to_earn_it_back(fresh_compile_cache):
    use, note = fresh_compile_cache.worth_compiling(150, 512, 288, warm=False)
    assert not use and "150 frames" in note and "pays from about" in note
    assert fresh_compile_cache.worth_compiling(10**6, 512, 288, warm=False) == (True, "")
    assert fresh_compile_cache.worth_compiling(150, 512, 288, warm=True) == (True, "")  # already paid
    assert fresh_compile_cache.worth_compiling(None, 512, 288, warm=False) == (True, "")  # a live stream
    assert fresh_compile_cache.worth_compiling(4000, 1920, 1080, warm=False)[0]  # full size pays sooner


def test_a_short_job_runs_the_plain_module_and_says_why(tmp_path, tiny_style, fresh_compile_cache):
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=5, size=(96, 72))
    shapes: list = []
    stats = convert_video(src, tmp_path / "out.mp4", _compiling_engine(tiny_style, shapes, max_side=48, batch=2),
                          progress=False)
    assert shapes == [] and stats.frames_out == 5
    assert "not compiled: 5 frames" in stats.extra["compile"] and stats.extra["compile_s"] == 0


def test_a_long_job_compiles_once_per_shape_for_every_engine_of_the_style(tmp_path, tiny_style, fresh_compile_cache,
                                                                       monkeypatch):
    from stream.filejob import convert_video

    monkeypatch.setattr(fresh_compile_cache, "COMPILE_S", 0.0)  # every job earns it back
    src = media.write_clip(tmp_path / "in.mp4", frames=5, size=(96, 72))
    shapes: list = []
    first = _compiling_engine(tiny_style, shapes, max_side=48, batch=2)
    stats = convert_video(src, tmp_path / "a.mp4", first, progress=False)
    assert "compile" not in stats.extra and stats.frames_out == 5
    assert set(shapes) == {(2, 3, 36, 48)}  # the warm-up and every batch, the last one (1 frame) padded
    assert len(shapes) == 1 + 3 and first.compile_s > 0
    later: list = []
    second = _compiling_engine(tiny_style, later, max_side=48, batch=2)  # another file, segment or job
    convert_video(src, tmp_path / "b.mp4", second, progress=False)
    assert later == [] and len(shapes) == 4 + 3 and second.compile_s == 0  # the first engine's, warm already
    assert media.probe(tmp_path / "b.mp4").times == media.probe(tmp_path / "a.mp4").times


# -- on a CUDA machine: the same paths on the GPU

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_on_cuda_1080p_at_full_resolution_runs_at_the_largest_batch_that_fits():
    """16 frames crashed reflection padding ("input tensor must fit into 32-bit index math"); the engine
    lowers --batch 16 to 8, and 8 frames run."""
    engine = Engine("hayao", max_side=0, device="cuda", batch=16)
    assert engine.fit_batch(1920, 1080) == 8
    with torch.inference_mode():
        out = engine.stylise_on_device(torch.zeros(8, 3, 1080, 1920, device="cuda"))
    assert out.shape == (8, 3, 1080, 1920)


@needs_cuda
def test_on_cuda_the_plane_path_matches_the_same_path_on_the_cpu(tmp_path, tiny_style):
    from stream.filejob import convert_video

    src = media.write_clip(tmp_path / "in.mp4", frames=5, size=(96, 72))
    gpu = Engine(tiny_style, max_side=48, precision="fp32", device="cuda")
    assert gpu.resizes_on_device
    stats = convert_video(src, tmp_path / "gpu.mp4", gpu, progress=False, crf=0)
    convert_video(src, tmp_path / "cpu.mp4", _seam(tiny_style, max_side=48), progress=False, crf=0)
    assert stats.frames_out == 5 and stats.extra["device"].startswith("cuda")
    assert media.probe(tmp_path / "gpu.mp4").times == media.probe(tmp_path / "cpu.mp4").times
    for a, b in zip(_frames(tmp_path / "gpu.mp4"), _frames(tmp_path / "cpu.mp4")):
        assert np.abs(a - b).mean() <= 1.0


# -- the encoder: x264 frame-threaded, or a hardware encoder where one opens

def test_auto_falls_back_to_x264_where_no_hardware_encoder_opens(tmp_path, monkeypatch):
    from stream import devicejob

    if devicejob.encoder_opens("h264_nvenc", 64, 48):
        pytest.skip("this machine has an NVENC encoder: the fallback is not reachable here")
    assert devicejob.pick_encoder("auto", 64, 48) == "libx264"
    with pytest.raises(devicejob.SinkError, match="h264_nvenc: it does not open here"):
        devicejob.pick_encoder("h264_nvenc", 64, 48)
    sink = devicejob.PlaneSink(tmp_path / "x.mp4", width=64, height=48, time_base=Fraction(1, 24), rate=Fraction(24))
    try:
        assert sink.encoder == "libx264" and sink._video.codec_context.name == "libx264"
        assert sink._video.codec_context.thread_type.name == "FRAME"  # not PyAV's sliced default
    finally:
        sink.close(keep=False)


@pytest.mark.parametrize("gpu, probed", [("NVIDIA H200", False), ("NVIDIA H100 80GB HBM3", False),
                                         ("NVIDIA A100-SXM4-80GB", False), ("NVIDIA H20", False),
                                         ("NVIDIA GeForce RTX 4090", True), ("NVIDIA L40S", True)])
def test_auto_does_not_try_nvenc_on_gpus_without_a_video_encoder(monkeypatch, gpu, probed):
    from stream import devicejob

    tried = []
    monkeypatch.setattr(devicejob.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devicejob.torch.cuda, "get_device_name", lambda *_a: gpu)
    monkeypatch.setattr(devicejob, "encoder_opens", lambda name, w, h: tried.append(name) or False)
    assert devicejob.pick_encoder("auto", 64, 48) == "libx264"
    assert tried == (["h264_nvenc"] if probed else [])
    with pytest.raises(devicejob.SinkError):  # named outright, it is always tried
        devicejob.pick_encoder("h264_nvenc", 64, 48)


def test_auto_takes_a_hardware_encoder_that_opens(tmp_path, monkeypatch):
    """Where NVENC would open, auto picks it with its own options (MPEG-4 Part 2, which opens here, stands in
    for the hardware: the choice, the options and a playable file are what is checked)."""
    from stream import devicejob

    assert devicejob.hardware_options("h264_nvenc", 18) == {"preset": "p5", "rc": "vbr", "cq": "18", "b": "0"}
    monkeypatch.setattr(devicejob, "HARDWARE_ENCODERS", ("mpeg4",))
    monkeypatch.setattr(devicejob, "ENCODERS", ("auto", "libx264", "mpeg4"))
    monkeypatch.setattr(devicejob, "gpu_without_encoder", lambda: False)  # on an H200 too
    monkeypatch.setattr(devicejob, "hardware_options", lambda name, crf: {"qscale": "4"})
    assert devicejob.pick_encoder("auto", 64, 48) == "mpeg4"
    sink = devicejob.PlaneSink(tmp_path / "y.mp4", width=64, height=48, time_base=Fraction(1, 24), rate=Fraction(24))
    for i in range(3):
        planes = av.VideoFrame.from_ndarray(media.frame_image(i, 64, 48), format="rgb24").reformat(
            format="yuv420p").to_ndarray()
        sink.write(devicejob.Frame(i, planes, i, Fraction(1, 24), 0.0), planes)
    assert sink.encoder == "mpeg4" and dict(sink._video.options) == {"qscale": "4"}
    sink.close(keep=True)
    probe = media.probe(tmp_path / "y.mp4")
    assert probe.video_codec == "mpeg4" and len(probe.times) == 3


def test_the_encoder_flag_names_x264_or_a_hardware_encoder_and_refuses_one_that_does_not_open(
        tmp_path, clip, tiny_style, cli, monkeypatch):
    """``--encoder``: libx264 as asked; a hardware encoder named outright is used on the CPU path too (MPEG-4
    Part 2 stands in for NVENC, as above), and one that does not open is a one-line error with no output."""
    from stream import devicejob

    rc, _, err = cli(clip, tmp_path / "x264.mp4", "--style", tiny_style, "--max-side", 32, "--device", "cpu",
                     "--encoder", "libx264", "-q")
    assert rc == 0, err
    assert media.probe(tmp_path / "x264.mp4").video_codec == "h264"
    if not devicejob.encoder_opens("h264_nvenc", 64, 48):
        rc, _, err = cli(clip, tmp_path / "nvenc.mp4", "--style", tiny_style, "--device", "cpu",
                         "--encoder", "h264_nvenc", "-q")
        assert rc == 1 and err.strip().splitlines() == [
            "animestream: error: encoder h264_nvenc: it does not open here (no such GPU encoder); use libx264 or auto"]
        assert not list(tmp_path.glob("*nvenc*"))
    monkeypatch.setattr(devicejob, "ENCODERS", ("auto", "libx264", "mpeg4"))
    monkeypatch.setattr(devicejob, "hardware_options", lambda name, crf: {"qscale": "4"})
    from stream.engine import Engine
    from stream.filejob import convert_video

    engine = Engine(tiny_style, max_side=32, precision="fp32", device="cpu")
    stats = convert_video(clip, tmp_path / "hw.mp4", engine, encoder="mpeg4", progress=False)
    probe = media.probe(tmp_path / "hw.mp4")
    assert probe.video_codec == "mpeg4" and len(probe.times) == stats.frames_out == 30
    assert devicejob.hardware_encoder("auto", 64, 48, 18) is None  # the CPU path probes no hardware
