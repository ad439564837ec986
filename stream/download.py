"""Fetch the official AnimeGANv2 PyTorch checkpoints and import weights files as styles.

The registry is data: name -> git blob id of the published file (sha1 of ``b"blob <size>\\0" + data``,
the id GitHub shows for it). A pull downloads to ``*.part`` in the user's styles folder, verifies
the id, converts the state_dict to a TorchScript style named ``official-NAME`` with a sidecar, and
only then renames it into place: a failed or mismatched download leaves nothing behind.
``ANIMESTREAM_WEIGHTS_URL`` replaces the base URL (a mirror, or a local server in tests).
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import torch

from . import weights
from .errors import DownloadError, WeightsError

BASE_URL = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/"
OFFICIAL_BLOBS = {
    "celeba_distill": "3b7ea61b02254980831cc3bc77af30666dbc999c",
    "face_paint_512_v1": "19c1a1da4d9580186109a2b055d91044e5127de6",
    "face_paint_512_v2": "d75102f8f201ddaf8dbe6b913b1a97585b55f838",
    "paprika": "58086c9db9fc7a9e5c2876ca31b8079599352643",
}
OFFICIAL_LICENSE = ("bryandlee/animegan2-pytorch (MIT); the styles derive from TachibanaYoshino/AnimeGANv2: "
                    "non-commercial use only")
OFFICIAL_PREFIX = "official-"
CHUNK_BYTES = 1 << 16
TIMEOUT_S = 30
STYLE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

Progress = Callable[[int, int | None], None]


def git_blob_id(path: Path) -> str:
    """The git blob id of a file: sha1 of ``b"blob <size>\\0"`` followed by its bytes."""
    h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def base_url() -> str:
    url = os.environ.get("ANIMESTREAM_WEIGHTS_URL", BASE_URL)
    return url if url.endswith("/") else url + "/"


def _check_name(name: str) -> None:
    if not STYLE_NAME.match(name):
        raise WeightsError(f"style name {name!r}: use lowercase letters, digits, '-' and '_' (at most 64)")


def _fetch(url: str, dest: Path, progress: Progress | None) -> None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := response.read(CHUNK_BYTES):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: the server answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"{url}: cannot download ({reason}); are you offline? "
                            "ANIMESTREAM_WEIGHTS_URL can point at a mirror") from None


def pull(name: str, *, progress: Progress | None = None) -> weights.Style:
    """Download official checkpoint ``name``, verify it and register it as style ``official-NAME``."""
    if name.startswith(OFFICIAL_PREFIX):
        name = name[len(OFFICIAL_PREFIX):]
    if name not in OFFICIAL_BLOBS:
        raise DownloadError(f"no official weights called {name!r} (available: {', '.join(OFFICIAL_BLOBS)})")
    folder = weights.user_styles_dir()
    folder.mkdir(parents=True, exist_ok=True)
    url = base_url() + f"{name}.pt"
    part = folder / f"{OFFICIAL_PREFIX}{name}.download.part"
    try:
        _fetch(url, part, progress)
        got, expected = git_blob_id(part), OFFICIAL_BLOBS[name]
        if got != expected:
            raise DownloadError(f"{url}: checksum mismatch (git blob {got}, expected {expected}); "
                                "nothing was kept")
        return _register(weights.load_model(part), OFFICIAL_PREFIX + name, source=url, license=OFFICIAL_LICENSE,
                         extra={"git_blob": expected, "origin": "official"})
    finally:
        part.unlink(missing_ok=True)


def import_style(path: str | os.PathLike, name: str, *, license: str = "unknown (imported file)",
                 io: dict | None = None) -> weights.Style:
    """Register a weights file as a user style called ``name``: an AnimeGANv2-architecture TorchScript
    file or state_dict (stored as safetensors, so it loads on any torch), another TorchScript generator
    (kept as TorchScript), or an ONNX generator (``io``: its layout, channels, range and size multiple,
    as in :class:`stream.onnxgen.OnnxIO`; default: the AnimeGANv3 releases')."""
    _check_name(name)
    src = Path(path)
    extra = {"origin": "imported", "imported_sha256": weights.sha256_of(src)} if src.is_file() else {}
    style = weights.resolve(src)
    if style.format == "onnx":
        from .onnxgen import OnnxGenerator, OnnxIO

        declared = OnnxIO.from_manifest(io if io is not None else style.meta.get("onnx", {}))
        weights.check_generator(OnnxGenerator(src, declared), src)
        meta = _meta(f"imported from {src.name}", license, {**extra, "onnx": declared.to_sidecar()})
        return weights.save_file_style(src, weights.user_styles_dir(), name, meta)
    module = weights.load_model(style)
    weights.check_generator(module, src)
    return _register(module, name, source=f"imported from {src.name}", license=license, extra=extra, src=src)


def _meta(source: str, license: str, extra: dict) -> dict:
    return {"source": source, "license": license, "training_steps": None, "quality": {},
            "recommended_max_side": 512, **extra}


def _register(module: torch.jit.ScriptModule, name: str, *, source: str, license: str, extra: dict,
              src: Path | None = None, dtype: torch.dtype = torch.float32) -> weights.Style:
    """Save ``module`` as user style ``name``: as safetensors when it is our generator, else (a
    TorchScript generator of another architecture, from ``src``) as TorchScript."""
    meta = _meta(source, license, extra)
    try:
        model = weights.eager_generator(module)
    except WeightsError:
        if src is None:
            raise
        return weights.save_file_style(src, weights.user_styles_dir(), name, meta)
    return weights.save_style(model, weights.user_styles_dir(), name, meta, dtype=dtype)
