"""Training and distillation commands, on tiny synthetic data: resumable, exported with a sidecar."""
from __future__ import annotations

import json
import random

import cv2
import numpy as np
import pytest

import media
import torch

from stream import train, weights
from stream.engine import Engine

TINY = ["--width", "0.25", "--blocks", "1", "--crop", "32", "--batch", "2", "--threads", "1"]




@pytest.fixture()
def pairs_dir(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    for i, name in enumerate(("a", "b")):
        photo = media.noise_image(i, 96, 128)
        cv2.imwrite(str(folder / f"{name}_photo.png"), photo)
        cv2.imwrite(str(folder / f"{name}_target.png"), 255 - photo)
    return folder


def test_train_exports_resumes_and_reports_baselines(pairs_dir, tmp_path, capsys):
    common = ["--pairs", str(pairs_dir), "--val", "b", "--name", "toy", "--cache", str(tmp_path / "cache"),
              "--out", str(tmp_path / "w"), *TINY]
    assert train.main([*common, "--steps", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2
    assert train.main([*common, "--steps", "3"]) == 0
    out = capsys.readouterr()
    assert "resumed" in out.err and "at step 2" in out.err
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert meta["training_steps"] == 3
    assert meta["quality"]["val_pairs"] == ["b"]
    assert meta["quality"]["psnr_photo"] < 10  # the target is the negative: the photo is far from it
    assert meta["recipe"]["train_pairs"] == ["a"]
    model = weights.load_model(tmp_path / "w" / "toy.safetensors")
    assert sum(p.numel() for p in model.parameters()) == meta["parameters"]


def test_train_rejects_unknown_validation_pair(pairs_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        train.main(["--pairs", str(pairs_dir), "--val", "zz", "--name", "toy", "--cache", str(tmp_path)])
    assert exc.value.code == 2
    assert "--val 'zz': no such pair" in capsys.readouterr().err


def test_train_can_start_from_an_existing_style(pairs_dir, tiny_style, tiny_model, tmp_path, capsys):
    common = ["--pairs", str(pairs_dir), "--val", "b", "--name", "toy", "--out", str(tmp_path / "w"), *TINY]
    assert train.main([*common, "--cache", str(tmp_path / "c1"), "--init", str(tiny_style), "--steps", "1",
                       "--lr", "1e-12"]) == 0
    started = weights.load_model(tmp_path / "w" / "toy.safetensors").state_dict()
    for key, value in tiny_model.state_dict().items():
        assert torch.allclose(started[key], value, atol=1e-4, rtol=1e-3), key  # fp16 storage
    assert json.loads((tmp_path / "w" / "toy.json").read_text())["recipe"]["init"] == tiny_style.name
    trained = weights.export_style(tiny_model, tmp_path / "styles", "trained", source="test", license="MIT",
                                   training_steps=7, quality={})
    assert train.main([*common, "--cache", str(tmp_path / "c4"), "--init", str(trained), "--steps", "1"]) == 0
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())  # a style's steps count in its successor's
    assert (meta["training_steps"], meta["recipe"]["init_steps"], meta["recipe"]["init"]) == (8, 7, "trained.safetensors")
    with pytest.raises(SystemExit) as exc:
        train.main([*common[:-10], "--cache", str(tmp_path / "c2"), "--init", str(tiny_style), "--steps", "1"])
    assert exc.value.code == 2
    assert "not the same architecture" in capsys.readouterr().err


def test_train_can_continue_another_runs_checkpoint_as_a_new_stage(pairs_dir, tmp_path, capsys):
    common = ["--pairs", str(pairs_dir), "--val", "b", "--name", "toy", "--out", str(tmp_path / "w"), *TINY]
    assert train.main([*common, "--cache", str(tmp_path / "crops"), "--steps", "2"]) == 0
    ckpt = tmp_path / "crops" / "last.ckpt"
    ema = torch.load(ckpt, weights_only=True)["ema"]
    assert train.main([*common, "--cache", str(tmp_path / "whole"), "--crop", "0", "--init", str(ckpt),
                       "--steps", "1", "--lr", "1e-12"]) == 0
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert meta["training_steps"] == 3
    assert (meta["recipe"]["init"], meta["recipe"]["init_steps"], meta["recipe"]["crop"]) == ("crops/last.ckpt", 2, 0)
    started = weights.load_model(tmp_path / "w" / "toy.safetensors").state_dict()
    for key, value in ema.items():
        assert torch.allclose(started[key], value, atol=1e-4, rtol=1e-3), key  # fp16 storage
    assert train.main([*common, "--cache", str(tmp_path / "third"), "--init", str(tmp_path / "whole" / "last.ckpt"),
                       "--steps", "1"]) == 0  # a third stage counts the steps of both before it
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert (meta["training_steps"], meta["recipe"]["init_steps"]) == (4, 3)
    assert train.main([*common, "--cache", str(tmp_path / "third"), "--steps", "2"]) == 0  # resumed, no --init
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert (meta["training_steps"], meta["recipe"]["init_steps"]) == (5, 3)  # the checkpoint kept its lineage
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train.main([*common, "--cache", str(tmp_path / "c3"), "--init", str(tmp_path / "bad.ckpt")])
    assert exc.value.code == 2
    assert "bad.ckpt: not a training checkpoint" in capsys.readouterr().err


def test_whole_image_sampling_keeps_the_pair_aligned_and_uncropped():
    photo = media.noise_image(3, 40, 64)
    levels = train.pyramid([(photo, 255 - photo)], 0, (0.5, 1.0))
    sampler = train.CropSampler(levels, random.Random(1), 0, color_aug=1.0, tone_aug=0.0)
    sizes = set()
    for _ in range(6):
        x, y = sampler.batch(2)
        assert x.shape == y.shape and x.shape[0] == 2
        assert torch.allclose(x, -y, atol=0.01)  # every augmentation hit both (0.01: uint8 resize rounding)
        sizes.add(tuple(x.shape[-2:]))
    assert sizes <= {tuple(t.shape[-2:]) for t, _ in levels} and len(sizes) > 1  # whole levels, several scales


def test_skip_style_starts_as_the_photo_keeps_its_flag_and_must_resume_the_same_way(pairs_dir, tiny_style,
                                                                                      tmp_path, capsys):
    common = ["--pairs", str(pairs_dir), "--val", "b", "--name", "toy", "--out", str(tmp_path / "w"),
              "--cache", str(tmp_path / "c"), *TINY]
    assert train.main([*common, "--skip", "--init", str(tiny_style), "--steps", "1", "--lr", "1e-12"]) == 0
    meta = json.loads((tmp_path / "w" / "toy.json").read_text())
    assert meta["architecture"]["skip"] is True
    assert abs(meta["quality"]["psnr_student"] - meta["quality"]["psnr_photo"]) < 0.05  # untrained: the photo
    engine = Engine(tmp_path / "w" / "toy.safetensors", precision="fp32", device="cpu")
    frame = media.noise_image(7, 48, 64)
    assert np.abs(engine(frame).astype(int) - frame).max() <= 1
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        train.main([*common, "--steps", "2"])
    assert exc.value.code == 2
    assert "started with --skip; resume it the same way" in capsys.readouterr().err


def test_l2_pixel_loss_scores_squared_error_and_is_recorded(pairs_dir, tmp_path, capsys):
    out, target = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    assert train.style_loss(out, target, edge=0, lowpass=0) == pytest.approx(0.5)
    assert train.style_loss(out, target, edge=0, lowpass=0, pixel="l2") == pytest.approx(0.25)
    assert train.main(["--pairs", str(pairs_dir), "--val", "b", "--name", "toy", "--cache", str(tmp_path / "c"),
                       "--out", str(tmp_path / "w"), *TINY, "--steps", "1", "--pixel", "l2"]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "w" / "toy.json").read_text())["recipe"]["pixel"] == "l2"


def test_micro_batches_fit_the_cpu_budget_and_divide_the_batch():
    cpu = torch.device("cpu")
    assert train.micro_batch(4, 384, 384, 32, cpu) == 1  # 9.4 MB a tile: one at a time
    assert train.micro_batch(4, 192, 192, 32, cpu) == 2  # 2.4 MB a tile
    assert train.micro_batch(4, 192, 192, 24, cpu) == 4  # the whole batch fits
    assert train.micro_batch(6, 192, 192, 24, cpu) == 3  # a divisor of the batch, never a ragged last one
    assert train.micro_batch(4, 2048, 2048, 32, cpu) == 1
    assert train.micro_batch(4, 384, 384, 32, torch.device("cuda")) == 4  # only the CPU splits a step


def test_a_step_in_micro_batches_has_the_whole_batchs_gradient(tmp_path):
    """Four tiles one at a time give the gradient and the logged loss of the four at once."""
    torch.manual_seed(0)
    x, y = torch.rand(4, 3, 40, 40) * 2 - 1, torch.rand(4, 3, 40, 40) * 2 - 1
    loss_fn = lambda out, target: train.style_loss(out, target, 0.5, 0.0, "l2")  # noqa: E731
    extra = lambda model, xs, out, ys: (out - xs).abs().mean() * 0.1  # noqa: E731
    grads, totals = [], []
    for micro in (4, 1):
        torch.manual_seed(1)
        run = train.Run(train.Generator(0.25, 1), tmp_path / f"m{micro}", torch.device("cpu"))
        run.model.train()
        run.opt.zero_grad(set_to_none=True)
        totals.append(sum(run._backward(xi, yi, 4, torch.float32, loss_fn, extra)
                          for xi, yi in train.passes(x, y, micro)))
        grads.append(torch.cat([p.grad.flatten() for p in run.model.parameters() if p.grad is not None]))
    assert totals[0] == pytest.approx(totals[1], rel=1e-5)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    assert grads[0].abs().max() > 0
