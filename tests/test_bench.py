"""The benchmark scripts' own logic (their measurements are run by hand, never timed in tests)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

import media

from stream import train

ROOT = Path(__file__).resolve().parents[1]


def test_plot_prints_one_json_line_per_style_and_cap(tiny_style, tmp_path):
    png = tmp_path / "fps.png"
    done = subprocess.run([sys.executable, "bench/plot.py", "--styles", str(tiny_style), "--caps", "32,64",
                           "--repeats", "2", "--png", str(png)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    points = [r for r in rows if "fps" in r]
    assert [(r["max_side"], r["frame"]) for r in points] == [(32, "640x480"), (64, "640x480")]
    assert all(r["fps"] > 0 for r in points)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no plot" in done.stderr and not png.exists()
    else:
        assert png.stat().st_size > 1000


def test_live_specs_take_an_optional_cap():
    sys.path.insert(0, str(ROOT))
    from bench.bench import _live_spec
    assert _live_spec("shinkai@256") == ("shinkai", 256, 0, False)
    assert _live_spec("shinkai-lite") == ("shinkai-lite", None, 0, False)
    assert _live_spec("hayao-lite@160/2") == ("hayao-lite", 160, 2, False)
    assert _live_spec("hayao-lite@160/2+deflicker") == ("hayao-lite", 160, 2, True)
    with pytest.raises(ValueError, match="deflicker"):
        _live_spec("hayao-lite+sharpen")


def test_the_live_runner_can_run_with_deflicker(tiny_style, tmp_path):
    done = subprocess.run([sys.executable, "bench/bench.py", "--one", "live", "--style", str(tiny_style), "--cap", "32",
                           "--deflicker", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout.splitlines()[-1])
    assert row["config"] == "live" and row["deflicker"] is True and row["frames_out"] > 0 and row["fps"] > 0
    assert 0 < row["model_ms_p50"] < row["latency_ms_p50"]  # the model's share of a frame's latency


def test_quality_scores_a_style_and_a_training_checkpoint(tiny_style, tmp_path):
    import cv2
    import numpy as np

    from stream import train
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        photo = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (128, 96))
        cv2.imwrite(str(pairs / f"{name}_photo.png"), photo)
        cv2.imwrite(str(pairs / f"{name}_target.png"), 255 - photo)
    assert train.main(["--pairs", str(pairs), "--val", "b", "--name", "toy", "--cache", str(tmp_path / "c"),
                       "--out", str(tmp_path / "w"), "--width", "0.25", "--blocks", "1", "--crop", "32",
                       "--batch", "2", "--steps", "1", "--threads", "1"]) == 0
    checkpoint = ["--checkpoint", str(tmp_path / "c" / "last.ckpt"), "--weights", "model"]
    tiled = ["--style", str(tiny_style), "--tile", "32"]
    for extra in (tiled, ["--style", str(tiny_style)], checkpoint):
        done = subprocess.run([sys.executable, "bench/quality.py", "--pairs", str(pairs), *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        rows = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["pair"] for r in rows] == ["a", "b"]
        for r in rows:
            assert r["psnr_photo"] < 10 and r["psnr_grade"] > r["psnr_photo"]
            assert r["psnr_student_graded"] >= r["psnr_student"] - 0.01  # a fitted grade never makes it worse
            assert r["tile"] == (32 if extra is tiled else None)
    assert rows[0]["style"] == "c@1:model"


def test_forward_variants_match_the_reference(tiny_style):
    done = subprocess.run([sys.executable, "bench/variants.py", "--style", str(tiny_style), "--size", "64x48",
                           "--repeat", "1", "--precision", "fp32", "--variants", "reference,padfree,rows,batch4"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["variant"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"reference", "padfree", "rows", "batch4"}
    assert rows["batch4"]["max_abs_diff"] < 1e-5  # each frame normalised on its own, as alone
    assert rows["padfree"]["max_abs_diff"] < 1e-4  # the same sums, only without the padded copy
    assert 0.0 <= rows["rows"]["max_abs_diff"] < 1e-4  # bands of 32 rows: 48 rows cross one band edge
    assert all(r["ms_median"] > 0 for r in rows.values())


@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor compiles C++ and needs g++")
def test_inductor_variant_compiles_and_matches_the_reference(tiny_style):
    done = subprocess.run([sys.executable, "bench/variants.py", "--style", str(tiny_style), "--size", "64x48",
                           "--repeat", "1", "--precision", "fp32", "--variants", "inductor"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = map(json.loads, done.stdout.splitlines())
    assert row["variant"] == "inductor" and row["max_abs_diff"] < 1e-3 and row["ms_median"] > 0


def test_int8_bench_quantizes_and_stays_close_to_fp32(tiny_style):
    done = subprocess.run([sys.executable, "bench/int8.py", "--style", str(tiny_style), "--size", "64x48",
                           "--repeat", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["config"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"bf16", "int8_fx", "int8_engine"}
    for name in ("int8_fx", "int8_engine"):
        assert rows[name]["op_ms"]["quantized::conv2d"] > 0  # the convolutions really ran in INT8
        assert 20 < rows[name]["psnr_vs_fp32"] < rows["bf16"]["psnr_vs_fp32"]  # quantized, yet the same picture
    assert "quantized::batch_norm2d" in rows["int8_engine"]["op_ms"]  # GroupNorm stayed in INT8


def test_onnxrt_bench_runs_three_configurations_or_says_what_it_needs(tiny_style):
    done = subprocess.run([sys.executable, "bench/onnxrt.py", "--style", str(tiny_style), "--size", "64x48",
                           "--repeat", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        assert done.returncode == 2 and "pip install -e '.[bench]'" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    rows = {r["config"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {"bf16", "ort_fp32", "ort_int8"}
    assert rows["ort_fp32"]["psnr_vs_fp32"] > 60  # the same network, exported
    assert 20 < rows["ort_int8"]["psnr_vs_fp32"] < rows["ort_fp32"]["psnr_vs_fp32"]


def test_forward_variants_keep_a_skip_styles_photo_grade(tmp_path):
    import torch

    from stream import weights
    from stream.model import Generator
    model = Generator(0.25, 1, skip=True)
    with torch.no_grad():
        model.out_layer[0].weight.normal_(0, 0.1)  # a trained-looking output on top of the photo
        model.photo_grade.bias.fill_(0.2)
    pt = weights.export_style(model, tmp_path, "toyskip", source="test", license="MIT", training_steps=1,
                              quality={})
    done = subprocess.run([sys.executable, "bench/variants.py", "--style", str(pt), "--size", "64x48",
                           "--repeat", "1", "--precision", "fp32", "--variants", "reference,padfree,rows"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {r["variant"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert rows["padfree"]["max_abs_diff"] < 1e-4 and rows["rows"]["max_abs_diff"] < 1e-4


def test_flicker_bench_reports_excess_change_and_the_lag_of_each_filter_setting(tiny_style, clip, tmp_path):
    done = subprocess.run([sys.executable, "bench/flicker.py", "--video", str(clip), "--frames", "12",
                           "--max-side", "32", "--styles", str(tiny_style), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["frames"] == 12 and row["flicker"] > 0 and 0 <= row["excess_pct"] <= 100
    settings = row["deflicker"]
    assert [s["name"] for s in settings] == ["default", "fixed", "still", "before", "stronger"]
    assert (settings[0]["strength"], settings[0]["threshold"], settings[0]["motion"]) == (0.9, 8.0, True)
    assert settings[0]["adaptive"] and not settings[1]["adaptive"]
    assert (settings[3]["strength"], settings[3]["threshold"], settings[3]["motion"]) == (0.7, 10.0, False)
    assert [set(s["lag"]) for s in settings] == [{"10-30", "30-255"}] * len(settings)
    assert row["max_side"] == 32
    assert (tmp_path / f"deflicker_{tiny_style.stem}_{row['precision']}_32_{clip.stem}.png").stat().st_size > 1000


def test_flicker_bench_measures_a_distilled_styles_teacher_beside_it(onnx_teachers, tiny_model, clip, tmp_path):
    from stream import weights

    folder, _ = onnx_teachers
    style = weights.export_style(tiny_model, tmp_path, "student", source="test", license="MIT", training_steps=1,
                                 quality={"teacher": "tiny_teacher"})
    done = subprocess.run([sys.executable, "bench/flicker.py", "--video", str(clip), str(clip), "--frames", "8",
                           "--max-side", "32", "--styles", str(style), "--teachers", str(folder), "--out",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["style"], r["teacher"]) for r in rows] == [(str(style), False), ("tiny_teacher", True)] * 2
    assert all(r["flicker"] > 0 for r in rows) and rows[0]["flicker"] != rows[1]["flicker"]
    assert {r["max_side"] for r in rows} == {32}  # the teacher runs at the student's cap


def _lossless_clip(path: Path, frames: list) -> Path:
    """H.264 at qp 0 (lossless in YUV): a clip's frames decode exactly the same each time they repeat."""
    import av
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=24)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt, video.options = "yuv444p", {"qp": "0", "preset": "ultrafast"}
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
    return path


def test_temporal_bench_warping_error_is_zero_when_still_and_flow_explains_a_translation(onnx_teachers, tiny_model,
                                                                                         tmp_path):
    from media import noise_image
    from stream import weights

    scene = noise_image(3, 64, 160)
    still = _lossless_clip(tmp_path / "still.mp4", [scene[:, :96]] * 6)
    moving = _lossless_clip(tmp_path / "moving.mp4", [scene[:, 2 * i:2 * i + 96] for i in range(6)])  # 2 px/frame
    style = weights.export_style(tiny_model, tmp_path, "student", source="test", license="MIT", training_steps=1,
                                 quality={"teacher": "tiny_teacher"})
    done = subprocess.run([sys.executable, "bench/temporal.py", "--video", str(still), str(moving), "--frames", "6",
                           "--side", "96", "--styles", str(style), "--teachers", str(onnx_teachers[0]),
                           "--deflicker"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r.get("clip", next(iter(r))) for r in rows] == ["still.mp4"] * 3 + ["moving.mp4"] * 3 + ["table",
                                                                                                    "targets"]
    s_in, s_style, s_teacher, m_in, m_style, m_teacher, table, targets = rows
    # A still clip: nothing moves, nothing changes, in the input or any output.
    assert s_in["frames"] == 6 and s_in["size"] == [96, 64] and s_in["input"]["frame_diff"] == 0
    assert s_in["input"]["warp_error"] < 0.05 and s_in["input"]["occluded_pct"] < 1
    assert s_style["warp_error"] < 0.05 and s_teacher["warp_error"] < 0.05
    # Moving by 2 px a frame: the frames differ a lot, the flow explains nearly all of it.
    assert m_in["input"]["frame_diff"] > 10 and m_in["input"]["warp_error"] < 0.1
    assert m_in["input"]["occluded_pct"] < 10  # the columns that enter the picture
    assert (m_style["style"], m_style["teacher"], m_teacher["style"], m_teacher["teacher"]) == (
        str(style), False, "tiny_teacher", True)
    assert m_style["vs_input"] > 100  # a stride-4 random network is not shift-equivariant; the input nearly is
    assert m_style["vs_teacher"] == pytest.approx(m_style["warp_error"] / m_teacher["warp_error"], abs=2e-3)
    assert m_style["flicker"] > 0 and 0 <= m_style["excess_pct"] <= 100
    assert s_style["flicker"] is None and s_style["vs_input"] is None  # 0 / 0: no ratio, and valid JSON
    for name in ("deflicker", "deflicker_fixed", "deflicker_before"):
        assert set(m_style[name]["lag"]) == {"10-30", "30-255"} and m_style[name]["warp_error"] > 0
        assert m_style[name]["ghost"] >= 0 and s_style[name]["ghost"] == 0  # a still clip drops no pixel
    assert table["table"]["moving.mp4"] == {"input": m_in["input"]["warp_error"],
                                            str(style): [m_style["warp_error"], m_teacher["warp_error"]]}
    # still: 0 <= 1.1 x 0 and 0 <= 0.7 x 0 is met; moving: a random network misses by far
    assert targets["checked"] == 2 and not targets["met"] and [m["clip"] for m in targets["misses"]] == [
        "moving.mp4"]
    assert targets["pairs_met"] == 1 and 1 <= targets["pairs_met_with_deflicker"] <= 2
    assert 1 <= targets["pairs_met_with_deflicker_before"] <= 2
    assert 1 <= targets["pairs_met_with_deflicker_fixed"] <= 2


def test_temporal_bench_refuses_a_missing_clip_in_one_line(onnx_teachers, tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    import temporal
    assert temporal.main(["--video", str(tmp_path / "nope.mp4"), "--teachers", str(onnx_teachers[0])]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"error: --video {tmp_path / 'nope.mp4'}: no such file\n"


def test_excess_change_counts_only_change_beyond_the_inputs():
    import numpy as np
    sys.path.insert(0, str(ROOT))
    from bench.flicker import excess_change
    rng = np.random.default_rng(0)
    moving = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(4)]
    assert excess_change(moving, moving) == 0.0  # output follows the input exactly
    still = [np.full((8, 8, 3), 100, np.uint8)] * 4
    assert excess_change(still, moving) == 1.0  # all change is the style's own
    quarter = [m // 4 for m in moving]  # the output changes about 4x as much as the input
    assert 0.5 < excess_change(quarter, moving) < 1.0


def test_model_bench_counts_flops_and_says_where_the_engines_time_goes():
    done = subprocess.run([sys.executable, "bench/model.py", "--sizes", "32,64x32", "--repeats", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[0]["matmul_gflops"]["fp32"] > 0
    timed = [r for r in rows if "ms_per_frame" in r]
    assert {r["variant"] for r in timed} >= {"eager-fp32", "script-fp32"}
    assert {r["variant"] for r in timed} >= {"engine-int8", "engine-int8-plain-norm"}  # shinkai's INT8 path, every x86 class
    if any("ops_ms" in r for r in rows):  # a CPU with bf16: the engine beside its own baseline
        assert {r["variant"] for r in timed} >= {"engine", "engine-plain-norm"}
    square, wide = ([r for r in timed if r["size"] == size] for size in (32, "64x32"))
    assert all(r["gflop_per_frame"] == square[0]["gflop_per_frame"] > 0 for r in square)
    assert wide[0]["gflop_per_frame"] == 2 * square[0]["gflop_per_frame"]  # twice the pixels
    for profile in (r for r in rows if "ops_ms" in r):  # on CPUs with bf16
        assert 0 < profile["conv_share"] <= 1 and profile["conv_gflops"] > 0
        assert "mkldnn_convolution" in profile["ops_ms"]


def test_trainstep_bench_times_every_micro_batch_size_and_names_the_picked_one():
    done = subprocess.run([sys.executable, "bench/trainstep.py", "--widths", "0.25,0.5", "--tiles", "24,40",
                           "--batch", "4", "--steps", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    head, *rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert head["batch"] == 4 and head["cpu_class"]
    assert [(r["width"], r["tile"]) for r in rows] == [(0.25, 24), (0.25, 40), (0.5, 24), (0.5, 40)]
    for r in rows:
        assert set(r["s_per_step"]) == {"4", "2", "1"} and all(s > 0 for s in r["s_per_step"].values())
        assert r["speedup"] == round(r["s_per_step"]["4"] / r["s_per_step"][str(r["picked"])], 2)
        channels = train.widest_channels(train.Generator(r["width"]))  # the full-resolution layers' width
        assert r["picked"] == train.micro_batch(4, r["tile"], r["tile"], channels, torch.device("cpu"))


def test_norms_bench_times_both_paths_and_the_packed_ones_agree():
    done = subprocess.run([sys.executable, "bench/norms.py", "--shapes", "8x32,32x16", "--repeats", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = {(r["channels"], r["path"]): r for r in map(json.loads, done.stdout.splitlines())}
    assert set(rows) == {(8, "bf16"), (8, "int8"), (32, "bf16"), (32, "int8")}
    assert all(r["plain_ms"] > 0 and r["packed_ms"] > 0 for r in rows.values())
    assert rows[8, "int8"]["max_diff_steps"] == rows[32, "int8"]["max_diff_steps"] == 0  # the same bytes
    assert rows[8, "bf16"]["max_diff_rel"] < 0.02 and rows[32, "bf16"]["max_diff_rel"] == 0  # 32: not packed


def test_affine_bench_times_a_norm_free_style_folded_and_not_beside_a_single_group_one(tiny_style, tiny_model,
                                                                                      tmp_path):
    from stream import weights
    from stream.fold import folded
    from stream.model import Generator

    affine = Generator(width=0.25, blocks=1, norm="affine")
    affine.load_state_dict(folded(tiny_model, [torch.rand(1, 3, 48, 64) * 2 - 1]))
    path = weights.export_style(affine, tmp_path, "flat", source="test", license="MIT", training_steps=0, quality={})
    done = subprocess.run([sys.executable, "bench/affine.py", "--styles", f"{path},{tiny_style}", "--size", "64x48",
                           "--repeats", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {(r["style"], r["precision"]) for r in rows} >= {("flat", "fp32"), ("tiny", "fp32")}
    for r in rows:
        assert r["ms"] > 0 and r["size"] == "64x48" and r["cpu_class"]
        assert (r["unfolded_ms"] > 0) if r["norm"] == "affine" else (r["unfolded_ms"] is None)
    assert {r["norm"] for r in rows} == {"affine", "layer"}


def test_model_bench_times_the_compiled_generator_and_its_compile_time():
    done = subprocess.run([sys.executable, "bench/model.py", "--sizes", "32", "--repeats", "2", "--compiled"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    timed = {r["variant"]: r for r in map(json.loads, done.stdout.splitlines()) if "ms_per_frame" in r}
    (compiled,) = [r for name, r in timed.items() if name.startswith("compiled-")]
    assert compiled["ms_per_frame"] > 0 and compiled["compile_s"] > compiled["ms_per_frame"] / 1000
    assert compiled["gflop_per_frame"] == timed["eager-fp32"]["gflop_per_frame"]
    assert "compile_s" not in timed["eager-fp32"]


def test_serve_bench_times_both_services_and_reads_their_peak_rss():
    done = subprocess.run([sys.executable, "bench/serve.py", "--cap", "64", "--requests", "4", "--clients", "2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    seed, ours, ratios = [json.loads(line) for line in done.stdout.splitlines()]
    assert (seed["service"], ours["service"]) == ("seed", "animestream")
    for row in (seed, ours):
        assert row["refused"] == 0 and row["qps"] > 0 and 0 < row["latency_s_p50"] <= row["latency_s_p95"]
        assert 150 < row["peak_rss_mb"] < 4000  # torch alone is ~200 MB
    assert ratios["speedup_single"] == round(seed["single_s_p50"] / ours["single_s_p50"], 2)


def _run_beside_tiny_teacher(script: str, model, name: str, teachers: Path, tmp_path: Path, *args: str,
                             faces: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``bench/SCRIPT`` on ``model``, installed as the user style ``name`` distilled from the tiny ONNX
    teacher, with two held-back photos (``faces`` of them listed as faces)."""
    import os

    import cv2

    from media import frame_image
    from stream import weights

    home, photos = tmp_path / "home", tmp_path / "media" / "photos"
    photos.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(photos / f"p{i}.png"), frame_image(i, 80, 60))
    quality = {"teacher": "tiny_teacher", "resolution": "longest side 64 px", "psnr_vs_teacher": 10.0,
               "val_photos": ["photos/p0.png", "photos/p1.png"], "face_photos": list(faces)}
    weights.export_style(model, home / "styles", name, source="test", license="MIT", training_steps=1,
                         quality=quality)
    return subprocess.run([sys.executable, f"bench/{script}", "--teachers", str(teachers), "--photos-root",
                           str(tmp_path / "media"), "--styles", name, "--threads", "1", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, ANIMESTREAM_HOME=str(home)))


def test_teachers_bench_sets_each_style_beside_its_teacher(onnx_teachers, tiny_model, tmp_path):
    done = _run_beside_tiny_teacher("teachers.py", tiny_model, "student", onnx_teachers[0], tmp_path,
                                    "--repeat", "2", faces=("photos/p1.png",))
    assert done.returncode == 0, done.stderr
    row, summary = [json.loads(line) for line in done.stdout.splitlines()]
    assert (row["style"], row["teacher"], row["photos"], row["resolution"]) == ("student", "tiny_teacher", 2, 64)
    assert row["psnr"] > 0 and 0 < row["ssim"] <= 1 and row["student_ms"] > 0 and row["teacher_ms"] > 0
    assert row["faster"] == pytest.approx(row["teacher_ms"] / row["student_ms"], rel=0.02)
    assert row["faces"] == 1 and row["psnr_faces"] > 0 and row["psnr_faces"] != row["psnr"]  # p1 alone
    assert row["psnr_strokes"] > 0 and row["psnr_strokes_photo"] > 0 and row["psnr_faces_strokes"] > 0
    assert row["psnr_strokes_photo"] < row["psnr_photo"]  # where the teacher moved the photo most
    assert summary == {"summary": {"student": {"psnr": row["psnr"], "faster": row["faster"]}}}


def test_bands_bench_splits_a_students_error_and_sees_its_teachers_own_detail(onnx_teachers, tmp_path):
    folder, teacher = onnx_teachers  # the teacher's own network as the student: its error is rounding alone
    done = _run_beside_tiny_teacher("bands.py", teacher.net, "same", folder, tmp_path)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert (row["style"], row["teacher"], row["photos"], row["resolution"]) == ("same", "tiny_teacher", 2, 64)
    assert row["psnr"] > 40 and 0 <= row["fine_share"] <= 1
    assert row["detail_student"] == pytest.approx(row["detail_teacher"], rel=0.02)
    assert row["detail_teacher"] != pytest.approx(row["detail_photo"], rel=0.1)  # it paints its own
    assert row["psnr_colour_fit"] >= row["psnr"]  # a colour map fitted by least squares can only come closer


def test_bands_colour_fit_undoes_a_colour_cast_and_nothing_else():
    """A picture given a colour cast (a 3x3 mix and an offset) is mapped back exactly; noise is not."""
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from bands import colour_fit

    rng = np.random.default_rng(4)
    target = rng.uniform(0, 255, (24, 32, 3))
    cast = target @ np.array([[0.8, 0.1, 0.0], [0.05, 0.9, 0.1], [0.0, 0.2, 0.7]]) + np.array([12.0, -5.0, 30.0])
    assert np.abs(colour_fit(cast, target) - target).max() < 1e-6
    noisy = target + rng.normal(0, 10, target.shape)
    left = colour_fit(noisy, target) - target
    assert 8 < np.sqrt(np.mean(left ** 2)) < 10  # noise is not a colour map: nearly all of it stays


def test_bands_fine_part_is_what_a_blur_removes():
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from bands import fine

    flat = np.full((32, 32, 3), 100.0, np.float32)
    assert np.abs(fine(flat, 2.0)).max() < 1e-3
    checks = np.indices((32, 32)).sum(0) % 2 * 255.0
    stripes = np.repeat((np.arange(32) // 16 * 255.0)[None, :, None], 32, 0).repeat(3, 2).astype(np.float32)
    fine_checks = fine(np.repeat(checks[..., None], 3, 2).astype(np.float32), 2.0)
    assert np.mean(fine_checks ** 2) > 0.9 * np.var(checks)  # one-pixel detail: nearly all fine
    assert np.mean(fine(stripes, 2.0) ** 2) < 0.1 * np.var(stripes)  # 16 px bands: mostly broad


def test_gpu_bench_runs_its_code_on_the_cpu(tiny_style, tmp_path):
    """bench/gpu.py is run for real only on a GPU; --quick checks every code path of it on the CPU."""
    done = subprocess.run([sys.executable, "bench/gpu.py", "--device", "cpu", "--quick", "--style", str(tiny_style),
                           "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows[0]["matmul_peak_tflops"] > 0
    stages = {r["stage"] for r in rows if "stage" in r}
    assert stages >= {"decode", "upload+convert", "model", "download", "encode", "bottleneck"}
    assert stages <= {"decode", "upload+convert", "model", "download", "encode", "bottleneck", "host cores"}
    assert all(r["fps"] > 0 for r in rows if "stage" in r and "fps" in r)
    assert {r["rss_mb"] for r in rows if "rss_mb" in r} == {"unset", "lazy"}  # RSS per start-up step, both ways
    models = [r for r in rows if "model" in r]
    assert models and all(r["fps"] > 0 and r["precision"] == "fp32" for r in models)
    jobs = [r for r in rows if "path" in r]
    assert {(r["file"], r["cap"], r["path"]) for r in jobs} == {
        ("1080p", "cap512", "planes"), ("1080p", "cap512", "today"), ("1080p", "full", "planes"),
        ("1080p", "full", "today"), ("4k", "cap512", "planes"), ("1080p60", "cap512", "planes"),
        ("1080p", "cap512+compile", "planes")}
    assert all(r["frames"] in (10, 40) and r["job_fps"] > 0 for r in jobs)
    same = [r["same_frames_timestamps_sound"] for r in rows if "same_frames_timestamps_sound" in r]
    assert len(same) == 2 and all(same)  # the plane path keeps today's frames, timestamps and sound
    (live,) = [r for r in rows if "live" in r]
    assert live["frames"] > 0 and live["latency_ms_p95"] > 0
    assert set(rows[-1]["targets"]) >= {"file_fps_1080p_cap512", "file_fps_1080p_full", "file_fps_4k_cap512",
                                        "model_fps_512_compiled", "peak_rss_mb", "same_frames_timestamps_sound"}


def test_batch_bench_times_the_cli_and_ray_side_by_side(tiny_style, tmp_path):
    pytest.importorskip("ray")
    done = subprocess.run([sys.executable, "bench/batch.py", "--clips", "2", "--seconds", "0.25", "--style",
                           str(tiny_style), "--max-side", "32", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r.get("config") for r in rows[:3]] == ["sequential", "batch_workers_1", "batch_workers_2"]
    assert all(r["frames"] == 12 and r["wall_s"] > 0 for r in rows[:3])
    assert set(rows[3]) == {"ray_overhead_1_worker", "goal", "met", "cores"}
    assert sorted(p.name for p in (tmp_path / "batch2").iterdir()) == ["clip00.mp4", "clip01.mp4"]


def test_bench_runs_a_cpu_class_beside_its_teacher(onnx_teachers, tiny_model, clip, tmp_path):
    """bench/bench.py --isa avx2: every child runs under the class's limits and says which class it saw, and
    the teacher row times the style beside its teacher."""
    import os

    from stream import weights

    home = tmp_path / "home"
    weights.export_style(tiny_model, home / "styles", "student", source="test", license="MIT", training_steps=1,
                         quality={"teacher": "tiny_teacher", "psnr_vs_teacher": 10.0})
    done = subprocess.run([sys.executable, "bench/bench.py", "--input", str(clip), "--style", "student", "--caps", "32",
                           "--frames", "4", "--live", "", "--memory-cap", "0", "--model-size", "0", "--isa",
                           "avx2", "--teachers", str(onnx_teachers[0]), "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=dict(os.environ, ANIMESTREAM_HOME=str(home)))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["isa"], r["config"]) for r in rows if "config" in r] == [
        ("avx2", "seed"), ("avx2", "animestream"), ("avx2", "teacher")]
    for r in rows:
        if "config" in r and r["cpu_class"].split()[0] not in ("arm64", "arm64-bf16", "baseline"):
            assert r["cpu_class"].startswith("avx2")  # the child ran as the AVX2 class
    teacher = next(r for r in rows if r.get("config") == "teacher")
    assert teacher["teacher"] == "tiny_teacher" and teacher["faster"] == pytest.approx(
        teacher["teacher_ms"] / teacher["student_ms"], rel=0.02)
    (summary,) = [r for r in rows if r.get("summary")]
    assert summary["isa"] == "avx2" and summary["speedup_32"] > 0
    (targets,) = [r for r in rows if "targets" in r]
    assert targets["isa"] == "avx2" and "faster_than_teacher" in targets["targets"]
    assert rows[-1] == {"all_classes_met": targets["all_met"], "isa": ["avx2"]}
    wrong = subprocess.run([sys.executable, "bench/bench.py", "--isa", "avx2,z80"], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    assert wrong.returncode == 2 and "--isa z80: one of native, avx2, avx512" in wrong.stderr


def test_bench_compares_each_row_with_the_baseline_checkouts():
    sys.path.insert(0, str(ROOT))
    from bench.bench import _against_baseline
    before = {("animestream", 512): {"fps": 2.0}, ("live", "hayao-lite"): {"fps": 10.0},
              ("teacher", None): {"student_ms": 300.0}}
    now = {("animestream", 512): {"fps": 3.0}, ("live", "hayao-lite"): {"fps": 25.0},
           ("teacher", None): {"student_ms": 200.0}}
    assert _against_baseline(now, before) == {"animestream_512_fps": [2.0, 3.0, 1.5],
                                              "live_hayao-lite_fps": [10.0, 25.0, 2.5],
                                              "teacher_ms": [300.0, 200.0, 1.5]}


def test_deflicker_bench_times_each_mode_at_each_size(tmp_path):
    clip = media.write_clip(tmp_path / "pan.mp4", frames=6, size=(96, 64), pan=2, audio=None)
    done = subprocess.run([sys.executable, "bench/deflicker.py", "--video", str(clip), "--frames", "5",
                           "--sizes", "96x64,48x32"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["size"], r["mode"]) for r in rows[:-1]] == [
        (size, mode) for size in ("96x64", "48x32") for mode in ("motion", "fixed", "still")]
    assert all(r["frames"] == 5 and r["ms_per_frame"] > 0 and r["moves"] >= 0 for r in rows[:-1])
    assert rows[0]["moves"] > 0  # panning: the filter blends in some of the previous frame
    assert set(rows[-1]) == {"seconds", "threads"}


def _strided(k: int):
    """A stand-in teacher that downsamples by ``k``: the picture sampled every ``k``-th pixel and blown back
    up to its size, so it paints by its phase modulo ``k``."""
    import numpy as np

    def run(rgb):
        h, w = rgb.shape[:2]
        return np.ascontiguousarray(np.repeat(np.repeat(rgb[::k, ::k], k, 0), k, 1)[:h, :w])
    return run


def test_phase_bench_sees_a_generator_paint_by_its_downsampling_phase():
    """A picture sampled every 4th pixel and blown back up: shifted by 4 it paints the same, by 1-3 it does not;
    a pixelwise teacher paints the same at any shift."""
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from phase import shifted_psnr

    strided = _strided(4)
    rgb = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    rgb = cv2.GaussianBlur(rgb, (0, 0), 2.0)  # detail a few pixels across, as in a photo
    whole = strided(rgb)
    assert shifted_psnr(strided, rgb, whole, 4, 8) == shifted_psnr(strided, rgb, whole, 8, 8) == float("inf")
    assert all(shifted_psnr(strided, rgb, whole, k, 8) < 40 for k in (1, 2, 3))
    assert shifted_psnr(lambda x: 255 - x, rgb, 255 - rgb, 3, 8) == float("inf")


def test_phase_bench_splits_a_students_error_into_the_teachers_phase_painting_and_the_rest():
    """The phase average of a teacher that paints by phase is not its output; of a pixelwise one it is. A
    student that paints that average has all its error in the phase part; one that paints the teacher's
    phase-0 output exactly has none."""
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from phase import phase_average, split_rows

    strided = _strided(4)

    class Named:
        def __init__(self, fn):
            self.fn, self.name = fn, "t"

        def __call__(self, rgb):
            return self.fn(rgb)

    rgb = cv2.GaussianBlur(np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    assert np.array_equal(phase_average(lambda x: 255 - x, rgb, 4), 255.0 - rgb)
    teacher = Named(strided)
    average = phase_average(teacher, rgb, 4)
    runners = {"average": lambda x: np.clip(phase_average(teacher, x, 4).round(), 0, 255).astype(np.uint8),
               "same": strided}
    head, like_average, like_teacher = split_rows(teacher, "p", rgb, strided(rgb), 4, ["average", "same"], runners, 8)
    assert head["teacher_vs_average"] < 40 and not np.allclose(average, strided(rgb))
    assert like_average["vs_average"] > 45 and like_average["phase_share"] > 0.95
    assert like_teacher["vs_teacher"] == float("inf") and like_teacher["phase_share"] == 0.0


def test_phase_bench_step_averages_only_the_shifts_a_coarser_student_cannot_tell_apart():
    """With ``--step 4`` a period-8 average keeps the shifts 0 and 4 alone: a teacher that downsamples by 4
    paints those alike, so its average is its own output; one that downsamples by 8 does not."""
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from phase import main, phase_average

    strided = _strided
    rgb = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (96, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    assert np.array_equal(phase_average(strided(4), rgb, 8, step=4), strided(4)(rgb).astype(np.float64))
    by8 = phase_average(strided(8), rgb, 8, step=4)[8:, 8:]
    assert np.abs(by8 - strided(8)(rgb)[8:, 8:]).mean() > 2  # the shift of 4 paints another phase
    assert not np.allclose(by8, phase_average(strided(8), rgb, 8)[8:, 8:])  # and it is not every shift's mean
    with pytest.raises(SystemExit):
        main(["--average", "8", "--step", "3"])


def test_phase_bench_runs_a_style_as_its_teacher_runs_padded_not_resized(tiny_style, tiny_model):
    import numpy as np
    sys.path.insert(0, str(ROOT / "bench"))
    from phase import padded_runner

    run = padded_runner(str(tiny_style))
    rgb = np.random.default_rng(2).integers(0, 256, (61, 83, 3), dtype=np.uint8)
    out = run(rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().div(127.5).sub(1.0)
    with torch.no_grad():
        want = tiny_model.float().eval()(torch.nn.functional.pad(x, (0, 1, 0, 3), mode="reflect"))[:, :, :61, :83]
    want = want[0].clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - want.astype(int)).max() <= 1  # the stored weights are fp16


def _capacity(teachers: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """bench/capacity.py against the tiny ONNX teacher on 4 small photos, one of them held back."""
    from media import frame_image

    photos = tmp_path / "media" / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        cv2.imwrite(str(photos / f"p{i}.png"), frame_image(i * 5, 48, 40))
    return subprocess.run([sys.executable, "bench/capacity.py", "--teacher", "tiny_teacher", "--teachers",
                           str(teachers), "--photos-root", str(tmp_path / "media"), "--val", "1", "--val-faces",
                           "0", "--side", "32", "--threads", "1", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_capacity_bench_fits_a_student_to_a_teacher_on_the_photos_it_trains_on(onnx_teachers, tmp_path):
    """A student of the teacher's own architecture, from random weights, comes closer to it step by step;
    the floor says how far the teacher is from each photo, and from it under its best colour map, on the
    photos it trains on and on the held-back ones; it is scored on a held-back photo too, where it has learnt
    the teacher's own behaviour (its architecture), so it comes closer there as well."""
    done = _capacity(onnx_teachers[0], tmp_path, "--init", "none", "--width", "0.25", "--blocks", "1",
                     "--photos", "2", "--steps", "40", "--every", "20", "--lr", "3e-3", "--held-back-floor",
                     "--eval-side", "40", "--held-back", "1")
    assert done.returncode == 0, done.stderr
    held, head, *rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert (held["held_back"], held["resolution"]) == (1, 40)
    assert held["psnr_photo_colour_fit"] >= held["psnr_photo"]
    assert (head["teacher"], head["photos"], head["blocks"], head["init"]) == ("tiny_teacher", 2, 1, "none")
    assert head["psnr_photo_colour_fit"] >= head["psnr_photo"]  # least squares can only come closer
    assert head["held_back"] == 1
    assert (head["held_back_psnr_photo"], head["held_back_psnr_photo_colour_fit"]) == (
        held["psnr_photo"], held["psnr_photo_colour_fit"])  # the only held-back photo, at the same size
    assert [r["step"] for r in rows] == [0, 20, 40]
    assert rows[-1]["psnr"] > rows[0]["psnr"] + 3  # it learns what it is scored on
    assert rows[-1]["held_back_psnr"] > rows[0]["held_back_psnr"] + 2
    assert rows[-1]["held_back_psnr"] != rows[-1]["psnr"]


def test_capacity_bench_starts_a_skip_student_as_the_photo(onnx_teachers, tmp_path):
    """With ``--skip`` the student's first output is the photo itself, so it starts at the photo's score (with
    ``--unet`` as well: its skips start at zero)."""
    done = _capacity(onnx_teachers[0], tmp_path, "--init", "none", "--width", "0.25", "--blocks", "1",
                     "--photos", "2", "--steps", "0", "--skip", "--unet", "--held-back", "1", "--eval-side", "40")
    assert done.returncode == 0, done.stderr
    head, start = [json.loads(line) for line in done.stdout.splitlines()]
    assert head["skip"] is True and head["unet"] is True  # the skips start at zero: still the photo
    assert abs(start["psnr"] - head["psnr_photo"]) <= 0.02
    assert abs(start["held_back_psnr"] - head["held_back_psnr_photo"]) <= 0.02


def test_capacity_bench_says_in_one_line_when_there_are_too_few_training_photos(onnx_teachers, tmp_path):
    done = _capacity(onnx_teachers[0], tmp_path, "--photos", "5", "--steps", "1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: 3 training photos, fewer than --photos 5"]
    done = _capacity(onnx_teachers[0], tmp_path, "--photos", "2", "--held-back", "2", "--steps", "1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["error: --held-back 2: only 1 photos are held back"]


def test_context_branch_starts_as_its_generator_and_sets_each_channel_from_the_whole_picture(monkeypatch):
    """``--context``'s student computes its generator's function until trained; trained, its branch scales
    and shifts each channel by amounts that follow the picture (two pictures get two different ones)."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from capacity import WithContext

    from stream.model import Generator

    torch.manual_seed(0)
    generator = Generator(0.25, blocks=1)
    model = WithContext(generator)
    x, y = torch.rand(1, 3, 32, 48) * 2 - 1, torch.rand(1, 3, 32, 48) - 1
    with torch.no_grad():
        assert torch.equal(model(x), generator(x))
    opt = torch.optim.Adam(model.mlp.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.mse_loss(model(torch.cat([x, y])), torch.cat([x.flip(1), y.flip(1)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.97  # only the branch trains, and it brings the output closer
    with torch.no_grad():
        (sx, tx), (sy, ty) = (model.films(generator.block_b(generator.block_a(z)))[0] for z in (x, y))
    assert sx.shape == (1, generator.block_c[-1][1].out_channels, 1, 1)
    assert (sx - sy).abs().max() > 1e-3 and (tx - ty).abs().max() > 1e-3

