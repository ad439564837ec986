"""The distillation command: a teacher's outputs on tiles, held-back photos, resumable, exported as a style."""
from __future__ import annotations

import json

import cv2
import pytest

import media
import torch

from stream import distill, weights
from stream.onnxgen import OnnxGenerator, OnnxIO




@pytest.fixture()
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = ["file\tcategory"]
    for i in range(12):
        cv2.imwrite(str(folder / f"p{i:02d}.jpg"), media.noise_image(10 + i, 90 + 4 * i, 120))
        rows.append(f"p{i:02d}.jpg\t{'face' if i % 3 == 0 else 'city'}")
    (folder / "SOURCES.tsv").write_text("\n".join(rows) + "\n")
    (folder / "notes.txt").write_text("not a photo")
    return folder


def test_the_onnx_teacher_runs_as_its_manifest_declares(onnx_teachers):
    folder, model = onnx_teachers
    entry = json.loads((folder / "teachers.json").read_text())["teachers"][0]
    gen = OnnxGenerator(folder / "tiny.onnx", OnnxIO.from_manifest(entry))
    x = torch.rand(2, 3, 30, 42) * 2 - 1  # sides not a multiple of 4: padded, then cropped back
    with torch.no_grad():
        want = model.net(torch.nn.functional.pad(x, (0, 2, 0, 2), mode="reflect"))[:, :, :30, :42]
    torch.testing.assert_close(gen(x), want, atol=1e-4, rtol=1e-3)


def test_hold_out_is_stable_and_takes_faces(photos):
    found = distill.find_photos([photos])
    assert len(found) == 12 and all(p.category for p in found)
    train, held = distill.hold_out(found, 5, 2)
    assert len(held) == 5 and sum(p.category == "face" for p in held) == 2
    assert not set(train) & set(held) and len(train) == 7
    assert distill.hold_out(list(reversed(found)), 5, 2)[1] == held  # by name, not by order


def test_distill_from_an_onnx_teacher_exports_a_style_that_matches_it(onnx_teachers, photos, tmp_path, capsys):
    folder, _ = onnx_teachers
    args = ["--teacher", "tiny_teacher", "--teachers", str(folder), "--photos", str(photos), "--name", "toy",
            "--val", "3", "--val-faces", "1", "--eval-side", "64", "--steps", "2", "--width", "0.25", "--blocks", "1",
            "--tile", "32", "--sides", "32", "48", "--tiles", "2", "--batch", "2", "--threads", "1",
            "--cache", str(tmp_path / "runs" / "toy"), "--out", str(tmp_path / "w")]
    assert distill.main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    q = meta["quality"]
    assert q["teacher"] == "tiny_teacher" and q["teacher_sha256"] == weights.sha256_of(folder / "tiny.onnx")
    assert q["psnr_vs_teacher"] == printed["psnr_vs_teacher"] > 5 and 0 < q["ssim_vs_teacher"] <= 1
    assert len(q["val_photos"]) == 3 and q["val_faces"] == 1 and q["resolution"] == "longest side 64 px"
    (face,) = q["face_photos"]  # what a portrait style is judged on: the held-back faces alone
    assert face in q["val_photos"] and q["psnr_faces_vs_teacher"] == q["psnr_per_photo"][face]
    assert meta["license"] == "test-only" and "tiny_teacher" in meta["source"]
    assert meta["recipe"]["train_photos"] == 9 and meta["recommended_max_side"] == 64
    assert meta["storage_change"]["mean_levels"] < 0.5
    # Every training tile was stylised once and cached; no held-back photo was ever tiled.
    tiles = sorted(p.name for p in (tmp_path / "runs" / "teachers").glob("teacher-*/t32/*.png"))
    assert len(tiles) == 9 * 2 * 2
    assert not any(name.split("/")[-1] in t for name in q["val_photos"] for t in tiles)
    style = weights.resolve(tmp_path / "w" / "toy.safetensors")
    assert style.architecture == {"width": 0.25, "blocks": 1, "skip": False, "upsample": "align_corners"}
    # Resumed: two more steps, nothing stylised again.
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "teachers").rglob("*.png")}
    args[args.index("--steps") + 1] = "4"
    assert distill.main(args) == 0
    assert "resumed" in capsys.readouterr().err
    assert json.loads((tmp_path / "w" / "toy.json").read_text())["training_steps"] == 4
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_distill_a_lite_style_from_one_of_ours_with_tf_upsampling_a_guided_filter_instance_norms_and_skips(
        tiny_style, photos, tmp_path, capsys):
    args = ["--teacher", str(tiny_style), "--photos", str(photos), "--name", "toy-lite", "--val", "2",
            "--val-faces", "0", "--eval-side", "48", "--steps", "1", "--width", "0.25", "--blocks", "1",
            "--upsample", "asymmetric", "--skip", "--guided", "1", "--guided-eps", "0.01", "--norm", "instance",
            "--unet", "--init", str(tiny_style), "--tile", "32",
            "--sides", "32", "--tiles", "1", "--variant-of", "tiny",
            "--batch", "2", "--threads", "1", "--cache", str(tmp_path / "c"), "--out", str(tmp_path / "w")]
    assert distill.main(args) == 0
    meta = json.loads((tmp_path / "w" / "toy-lite.json").read_text())
    assert meta["variant_of"] == "tiny"  # what stream.policy reads
    assert meta["quality"]["teacher"] == "tiny" and meta["quality"]["teacher_sha256"] == weights.sha256_of(tiny_style)
    assert meta["architecture"]["upsample"] == "asymmetric" and meta["architecture"]["skip"]
    assert meta["architecture"]["guided_filter"] == {"radius": 1, "eps": 0.01}
    assert meta["architecture"]["norm"] == "instance"  # started from single-group weights: the same tensors
    model = weights.load_model(tmp_path / "w" / "toy-lite.safetensors")
    assert model.upsample == "asymmetric" and model.guided_radius == 1 and model.norm == "instance" and model.unet
    assert meta["architecture"]["unet"] is True
    # The run cannot be resumed as another network.
    args[args.index("--norm") + 1] = "layer"
    assert distill.main(args) == 1
    assert "started with --norm instance; resume it the same way" in capsys.readouterr().err
    args[args.index("--norm") + 1] = "instance"
    args[args.index("--guided") + 1] = "0"
    assert distill.main(args) == 1
    assert "guided filter radius 1; resume it the same way" in capsys.readouterr().err
    args[args.index("--guided") + 1] = "1"
    args.remove("--unet")
    assert distill.main(args) == 1
    assert "started with --unet; resume it the same way" in capsys.readouterr().err


def test_distill_needs_more_photos_than_it_holds_back(tiny_style, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "only.jpg"), media.noise_image(0, 64, 64))
    with pytest.raises(SystemExit) as exc:
        distill.main(["--teacher", str(tiny_style), "--photos", str(photos), "--name", "x", "--cache", str(tmp_path)])
    assert exc.value.code == 2
    assert "1 photos in --photos, need more than --val 32" in capsys.readouterr().err


def test_distill_refuses_to_hold_back_nothing_and_unknown_teachers(onnx_teachers, photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        distill.main(["--teacher", "x", "--photos", str(photos), "--name", "x", "--val", "0"])
    assert exc.value.code == 2 and "--val must be >= 1, not 0" in capsys.readouterr().err
    rc = distill.main(["--teacher", "nope", "--teachers", str(onnx_teachers[0]), "--photos", str(photos),
                       "--name", "x", "--val", "2", "--cache", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert rc == 1 and "'nope': not in" in err and "tiny_teacher" in err and err.count("\n") == 1


class _Pointwise(torch.nn.Module):
    """A 1x1 convolution: whatever moves the input moves its output the same way."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.conv(x)


class _Painter(torch.nn.Module):
    """Adds a fixed texture of its own at fixed pixels: it stays put when the input moves."""

    def __init__(self):
        super().__init__()
        self.texture = torch.nn.Parameter(torch.rand(1, 3, 32, 32) * 2 - 1)

    def forward(self, x):
        return x + self.texture


def test_temporal_loss_is_zero_for_an_equivariant_model_and_not_for_one_that_paints_in_place():
    import random

    torch.manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 36, 36) * 2 - 1, 5, 1)  # smooth 32x32 tiles
    theta = distill.random_warps(4, 32, 32, random.Random(1))
    assert torch.equal(theta, distill.random_warps(4, 32, 32, random.Random(1)))  # same draws from the same rng
    assert not torch.allclose(theta[0], theta[1])
    assert (theta[:, 0, 2].abs() * 16).max() <= distill.WARP_SHIFT_PX + 1e-6  # pixels, normalised by 2 / W
    moved, valid = distill.warp(x, theta)
    assert moved.shape == x.shape and 0.6 < valid.mean() < 1  # a margin moves out, most of the tile stays
    identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]).repeat(4, 1, 1)
    same, everywhere = distill.warp(x, identity)
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    assert everywhere.min() == 1
    pointwise, painter = _Pointwise(), _Painter()
    with torch.no_grad():
        assert distill.temporal_loss(pointwise, x, pointwise(x), theta) < 1e-5
        assert distill.temporal_loss(painter, x, painter(x), identity) < 1e-6  # nothing moved
    loss = distill.temporal_loss(painter, x, painter(x), theta)
    assert loss > 0.05  # the texture sits still while the picture moves: about |t - warp(t)|
    loss.backward()
    assert painter.texture.grad.abs().sum() > 0  # the term trains the model


def test_distill_with_a_temporal_term_runs_resumes_and_records_it(onnx_teachers, photos, tmp_path, capsys,
                                                                  monkeypatch):
    calls = []
    real = distill.temporal_loss

    def spy(model, x, out, theta):
        calls.append((tuple(x.shape), tuple(theta.shape)))
        return real(model, x, out, theta)

    monkeypatch.setattr(distill, "temporal_loss", spy)
    args = ["--teacher", "tiny_teacher", "--teachers", str(onnx_teachers[0]), "--photos", str(photos), "--name",
            "steady", "--val", "3", "--val-faces", "1", "--eval-side", "48", "--steps", "2", "--width", "0.25",
            "--blocks", "1", "--tile", "32", "--sides", "32", "--tiles", "1", "--batch", "2", "--threads", "1",
            "--temporal", "0.5", "--cache", str(tmp_path / "runs" / "steady"), "--out", str(tmp_path / "w")]
    assert distill.main(args) == 0
    assert calls == [((2, 3, 32, 32), (2, 2, 3))] * 2  # once a step, one warp per tile
    recipe = json.loads((tmp_path / "w" / "steady.json").read_text())["recipe"]
    assert recipe["temporal"] == 0.5 and recipe["temporal_warp"] == {
        "shift_px": distill.WARP_SHIFT_PX, "rotate_deg": distill.WARP_ROTATE_DEG, "scale": distill.WARP_SCALE}
    args[args.index("--steps") + 1] = "3"
    assert distill.main(args) == 0
    assert "resumed" in capsys.readouterr().err and len(calls) == 3
    assert json.loads((tmp_path / "w" / "steady.json").read_text())["training_steps"] == 3
    with pytest.raises(SystemExit) as exc:
        distill.main(args[:-4] + ["--temporal", "-1"])
    assert exc.value.code == 2 and "--temporal must be >= 0, not -1.0" in capsys.readouterr().err


def test_photo_labels_cut_the_teachers_tiles_from_its_whole_picture(photos, tmp_path):
    """A teacher with per-picture statistics (here: minus the picture's mean, as instance norm does) paints a
    tile alone differently from the same region of the whole photo; ``labels="photo"`` gives the latter."""
    import numpy as np

    def centred(rgb):
        return np.clip(rgb.astype(np.float32) - rgb.mean(axis=(0, 1)) + 128, 0, 255).astype(np.uint8)

    teacher = distill.Teacher("centred", "0" * 64, "", centred)
    found = distill.find_photos([photos])[:2]
    args = {"tile": 32, "sides": (64,), "per_side": 2, "log": lambda _m: None}
    xs, ys_tile = distill.build_tiles(found, teacher, tmp_path / "cache", labels="tile", **args)
    xs2, ys_photo = distill.build_tiles(found, teacher, tmp_path / "cache", labels="photo", **args)
    assert torch.equal(xs, xs2) and len(xs) == 4  # the same tiles of the photos
    for i, photo in enumerate(found):
        whole = centred(distill.scale_short(photo.read(), 64))
        for j in range(2):
            tile_x = xs[2 * i + j].permute(1, 2, 0).numpy()
            # where the tile sits in the scaled photo: find it
            scaled = distill.scale_short(photo.read(), 64)
            hits = [(t, l) for t in range(scaled.shape[0] - 31) for l in range(scaled.shape[1] - 31)
                    if np.array_equal(scaled[t:t + 32, l:l + 32], tile_x)]
            top, left = hits[0]
            assert np.array_equal(ys_photo[2 * i + j].permute(1, 2, 0).numpy(), whole[top:top + 32, left:left + 32])
            assert np.array_equal(ys_tile[2 * i + j].permute(1, 2, 0).numpy(), centred(tile_x))
    assert not torch.equal(ys_tile, ys_photo)


def test_photo_labels_are_cut_at_the_teachers_phase(photos, tmp_path):
    """A teacher that downsamples by 8 paints the same content differently when a picture starts 1-7 px later:
    tiles cut from its whole-picture output start at multiples of 8, those it labels alone anywhere."""
    import numpy as np

    teacher = distill.Teacher("same", "0" * 64, "", lambda rgb: rgb.copy(), period=8)
    found = distill.find_photos([photos])[:4]
    args = {"tile": 24, "sides": (72, 80), "per_side": 3, "log": lambda _m: None}
    offsets = {"photo": [], "tile": []}
    for labels in offsets:
        xs, _ = distill.build_tiles(found, teacher, tmp_path / "cache", labels=labels, **args)
        i = 0
        for photo in found:
            for side in args["sides"]:
                scaled = distill.scale_short(photo.read(), side)
                for _j in range(args["per_side"]):
                    tile = xs[i].permute(1, 2, 0).numpy()
                    i += 1
                    offsets[labels] += [(t, l) for t in range(scaled.shape[0] - 23) for l in range(scaled.shape[1] - 23)
                                        if np.array_equal(scaled[t:t + 24, l:l + 24], tile)][:1]
    assert len(offsets["photo"]) == len(offsets["tile"]) == 24
    assert all(t % 8 == 0 and l % 8 == 0 for t, l in offsets["photo"])
    assert any(t % 8 or l % 8 for t, l in offsets["tile"])  # labelled alone: any offset
    assert len(set(offsets["photo"])) > 4  # still spread over the picture


def test_an_onnx_teachers_phase_is_the_multiple_it_pads_to(onnx_teachers):
    folder, _ = onnx_teachers
    manifest = json.loads((folder / "teachers.json").read_text())["teachers"]
    for entry in manifest:
        teacher = distill.load_teacher(entry["name"], folder, None, 1)
        assert teacher.period == entry.get("input", {}).get("size_multiple", 8)


def test_whole_pictures_keep_each_photo_whole_with_the_labels_photo_tiles_are_cut_from(photos, tmp_path):
    """``build_wholes``: every photo at every side, whole but for the rows and columns beyond a multiple of the
    teacher's period and the engine's 4, labelled with the teacher's output of all of it, read from the same
    cache entries as ``labels="photo"``; the sampler gives them as a list."""
    import random

    import numpy as np

    calls = []

    def centred(rgb):
        calls.append(rgb.shape)
        return np.clip(rgb.astype(np.float32) - rgb.mean(axis=(0, 1)) + 128, 0, 255).astype(np.uint8)

    teacher = distill.Teacher("centred", "0" * 64, "", centred)
    found = distill.find_photos([photos])[:3]
    distill.build_tiles(found, teacher, tmp_path / "cache", tile=32, sides=(40, 64), per_side=1,
                        log=lambda _m: None, labels="photo")
    labelled = len(calls)
    xs, ys = distill.build_wholes(found, teacher, tmp_path / "cache", sides=(40, 64), log=lambda _m: None)
    assert len(calls) == labelled == 6  # nothing stylised again: the whole-picture labels are shared
    assert len(xs) == len(ys) == 6
    cut = 0
    for i, photo in enumerate(found):
        for j, side in enumerate((40, 64)):
            scaled = distill.scale_short(photo.read(), side)
            h, w = scaled.shape[0] // 4 * 4, scaled.shape[1] // 4 * 4  # the engine's multiple (the teacher's: 1)
            cut += (h, w) != scaled.shape[:2]
            assert xs[2 * i + j].shape == (3, h, w) and min(h, w) > side - 4
            assert np.array_equal(xs[2 * i + j].permute(1, 2, 0).numpy(), scaled[:h, :w])
            assert np.array_equal(ys[2 * i + j].permute(1, 2, 0).numpy(), centred(scaled)[:h, :w])
    assert cut and len({tuple(x.shape) for x in xs}) > 2  # photos of different sizes stay as they are
    teacher.period = 8
    xs8, ys8 = distill.build_wholes(found, teacher, tmp_path / "cache", sides=(40, 64), log=lambda _m: None)
    assert all(x.shape[1] % 8 == 0 and x.shape[2] % 8 == 0 and x.shape == y.shape for x, y in zip(xs8, ys8))
    batch_x, batch_y = distill.PictureSampler(xs, ys, random.Random(0)).batch(4)
    assert isinstance(batch_x, list) and len(batch_x) == len(batch_y) == 4
    for x, y in zip(batch_x, batch_y):
        assert x.shape == y.shape and x.shape[0] == 1 and x.dtype == torch.float32
        assert -1 <= float(x.min()) and float(x.max()) <= 1


def test_distill_on_whole_pictures_trains_resumes_and_records_it(onnx_teachers, photos, tmp_path, capsys):
    folder, _ = onnx_teachers
    args = ["--teacher", "tiny_teacher", "--teachers", str(folder), "--photos", str(photos), "--name", "toy",
            "--val", "3", "--eval-side", "48", "--steps", "2", "--width", "0.25", "--blocks", "1",
            "--tile", "0", "--sides", "40", "--labels", "photo", "--batch", "3", "--threads", "1",
            "--cache", str(tmp_path / "runs" / "toy"), "--out", str(tmp_path / "w")]
    assert distill.main(args) == 0
    assert "8 whole pictures from 8 photos" in capsys.readouterr().err
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert meta["recipe"]["tile"] == 0 and meta["training_steps"] == 2
    assert meta["recipe"]["tiles_per_side"] is None  # no tiles are cut from whole pictures
    assert len(list((tmp_path / "runs" / "teachers").glob("teacher-*/p/*.png"))) == 8
    args[args.index("--steps") + 1] = "3"
    assert distill.main(args) == 0
    assert "resumed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        distill.main([*args[:-2], "--labels", "tile"])
    assert exc.value.code == 2 and "--tile 0 trains on whole pictures" in capsys.readouterr().err


def test_faces_share_draws_that_share_of_every_batch_from_face_tiles(photos):
    import random

    found = distill.find_photos([photos])
    tiles = distill.tiles_of(found, "face", 3)  # p00, p03, p06, p09 are faces: 3 tiles each
    assert tiles == [t for i in (0, 3, 6, 9) for t in (3 * i, 3 * i + 1, 3 * i + 2)]
    xs = torch.arange(36, dtype=torch.uint8).view(36, 1, 1, 1).expand(36, 3, 2, 2).contiguous()
    sampler = distill.TileSampler(xs, xs, random.Random(0), tiles, 0.5)
    drawn = [int(v) for _ in range(200) for v in sampler.batch(4)[0][:, 0, 0, 0].add(1).mul(127.5).round()]
    firsts = [drawn[i] for i in range(0, len(drawn), 4)] + [drawn[i] for i in range(1, len(drawn), 4)]
    assert set(firsts) <= set(tiles)  # two of every four from face tiles
    rest = [drawn[i] for i in range(2, len(drawn), 4)] + [drawn[i] for i in range(3, len(drawn), 4)]
    assert set(rest) - set(tiles) and 0.2 < sum(t in tiles for t in rest) / len(rest) < 0.5  # the rest: any tile
    plain = distill.TileSampler(xs, xs, random.Random(0))
    assert len({int(v) for _ in range(50) for v in plain.batch(4)[0][:, 0, 0, 0].add(1).mul(127.5).round()}) > 20


def test_distill_with_faces_watches_the_held_back_faces_and_records_the_share(onnx_teachers, photos, tmp_path,
                                                                              capsys, monkeypatch):
    scored = []
    real = distill.score

    def spy(model, pairs):
        scored.append(len(pairs))
        return real(model, pairs)

    monkeypatch.setattr(distill, "score", spy)
    args = ["--teacher", "tiny_teacher", "--teachers", str(onnx_teachers[0]), "--photos", str(photos), "--name",
            "portrait", "--val", "4", "--val-faces", "2", "--eval-side", "48", "--steps", "2", "--width", "0.25",
            "--blocks", "1", "--tile", "32", "--sides", "32", "--tiles", "1", "--batch", "2", "--threads", "1",
            "--faces", "0.5", "--change-weight", "2", "--cache", str(tmp_path / "runs" / "portrait"), "--out",
            str(tmp_path / "w")]
    assert distill.main(args) == 0
    assert scored == [2, 4]  # during training the 2 held-back faces, at export all 4 held back
    meta = json.loads((tmp_path / "w" / "portrait.json").read_text())
    assert meta["recipe"]["faces_share"] == 0.5 and meta["recipe"]["change_weight"] == 2
    assert meta["quality"]["val_faces"] == 2
    with pytest.raises(SystemExit) as exc:
        distill.main(args[:-4] + ["--change-weight", "-1"])
    assert exc.value.code == 2 and "--change-weight must be >= 0, not -1.0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        distill.main(args[:-4] + ["--faces", "1.5"])
    assert exc.value.code == 2 and "--faces must be between 0 and 1, not 1.5" in capsys.readouterr().err
    capsys.readouterr()
    no_faces = tmp_path / "city"
    no_faces.mkdir()
    for f in photos.glob("*.jpg"):
        (no_faces / f.name).write_bytes(f.read_bytes())
    rc = distill.main(args[:args.index("--photos") + 1] + [str(no_faces)] + args[args.index("--photos") + 2:]
                      + ["--cache", str(tmp_path / "runs" / "city")])
    err = capsys.readouterr().err
    assert rc == 1 and "--faces: no training photo is in a 'face' category" in err


def test_change_loss_counts_errors_where_the_teacher_moved_the_photo():
    x = torch.zeros(1, 3, 4, 4)
    y = x.clone()
    y[:, :, 0, 0] = 0.8  # the teacher paints one pixel; the rest stays the photo
    missed_stroke = x.clone()  # a student that keeps the photo everywhere
    off_elsewhere = y.clone()
    off_elsewhere[:, :, 3, 3] = 0.8  # paints the stroke, and an error where the teacher left the photo
    assert distill.change_loss(x, y, y) == 0
    assert distill.change_loss(x, off_elsewhere, y) == 0  # the photo's own pixels weigh nothing
    assert distill.change_loss(x, missed_stroke, y) == pytest.approx(0.8 * 0.8 ** 2 / 16)
    both = distill._extra_terms(0.0, 10.0, None)
    assert both(None, x, missed_stroke, y) == pytest.approx(10 * 0.8 ** 3 / 16)
    assert distill._extra_terms(0.0, 0.0, None) is None


def test_a_norm_free_student_starts_from_a_single_group_style_with_its_statistics_folded_in(
        tiny_style, photos, tmp_path, capsys):
    args = ["--teacher", str(tiny_style), "--photos", str(photos), "--name", "toy-affine", "--val", "3",
            "--val-faces", "0", "--eval-side", "64", "--steps", "1", "--lr", "1e-12", "--width", "0.25",
            "--blocks", "1", "--norm", "affine", "--init", str(tiny_style), "--tile", "32", "--sides", "32",
            "--tiles", "1", "--batch", "2", "--threads", "1", "--cache", str(tmp_path / "c"),
            "--out", str(tmp_path / "w")]
    assert distill.main(args) == 0
    meta = json.loads((tmp_path / "w" / "toy-affine.json").read_text())
    assert meta["architecture"]["norm"] == "affine"
    model = weights.load_model(tmp_path / "w" / "toy-affine.safetensors")
    assert model.norm == "affine" and not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    # Without folding, the same tensors with the statistics dropped paint something else entirely.
    naive = distill.Generator(0.25, 1, norm="affine")
    naive.load_state_dict(weights.load_model(tiny_style).state_dict())
    val = distill.eval_pairs(distill.hold_out(distill.find_photos([photos]), 3, 0)[1],
                             distill.load_teacher(str(tiny_style), None, None, 1), tmp_path / "c2", 64)
    folded_psnr = meta["quality"]["psnr_vs_teacher"]  # the teacher is the single-group style itself
    assert folded_psnr > 28 and distill.score(naive, val)[0] < folded_psnr - 10
