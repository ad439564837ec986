"""Styles are data: a registry of named TorchScript generators, each with a JSON sidecar.

A style ``NAME`` is a pair of files in a styles folder::

    NAME.pt    TorchScript module (torch.jit.load loads it), RGB NCHW in [-1, 1] -> same
    NAME.json  sidecar: name, architecture, source, license, training_steps, quality, sha256, ...

Folders searched, first match wins: ``$ANIMESTREAM_HOME/styles`` (else the XDG cache dir) for
styles the user imported or pulled, then the built-in ``weights/`` folder of this project.
:func:`load_model` also accepts a path: a TorchScript file, or an official-format AnimeGANv2
``state_dict`` (loaded with ``weights_only=True``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import StyleNotFoundError, WeightsError
from .model import Generator

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_STYLE = "paprika"
ARCHITECTURE = "AnimeGANv2 generator"
HASH_CHUNK_BYTES = 1 << 20
RANGES_SUFFIX = ".ranges"  # INT8 calibration beside a style's .pt (stream/quant.py); valid for those weights only


def user_home() -> Path:
    """Per-user data folder: ``$ANIMESTREAM_HOME``, else ``$XDG_CACHE_HOME/animestream``."""
    env = os.environ.get("ANIMESTREAM_HOME")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "animestream"


def user_styles_dir() -> Path:
    return user_home() / "styles"


@dataclass(frozen=True)
class Style:
    """A registered style: its TorchScript file and the sidecar metadata."""

    name: str
    path: Path
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def origin(self) -> str:
        """``built-in``, ``official`` (pulled), ``imported`` or ``user``."""
        if self.path.parent == BUILTIN_DIR:
            return "built-in"
        return self.meta.get("origin", "user")

    @property
    def recommended_max_side(self) -> int | None:
        return self.meta.get("recommended_max_side")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_sidecar(pt: Path) -> dict:
    side = pt.with_suffix(".json")
    try:
        return json.loads(side.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise WeightsError(f"{side}: unreadable style sidecar ({e})") from None


def list_styles() -> list[Style]:
    """Every registered style, user styles first; a name appears once (the first found wins)."""
    seen: dict[str, Style] = {}
    for folder in (user_styles_dir(), BUILTIN_DIR):
        if not folder.is_dir():
            continue
        for pt in sorted(folder.glob("*.pt")):
            if pt.stem not in seen and pt.with_suffix(".json").exists():
                seen[pt.stem] = Style(pt.stem, pt, _read_sidecar(pt))
    return list(seen.values())


def find_style(name: str) -> Style:
    """The registered style called ``name``; :class:`StyleNotFoundError` lists the known ones."""
    for style in list_styles():
        if style.name == name:
            return style
    known = ", ".join(s.name for s in list_styles()) or "none"
    raise StyleNotFoundError(f"unknown style {name!r} (known styles: {known}; or give a path to a .pt file)")


def resolve(name_or_path: str | os.PathLike) -> tuple[Path, dict]:
    """Map a style name or a weights path to ``(file, sidecar)``; sidecar is ``{}`` for bare files."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix or os.sep in text or path.exists():
        if not path.exists():
            raise WeightsError(f"{path}: weights file not found")
        return path, _read_sidecar(path) if path.with_suffix(".json").exists() else {}
    style = find_style(text)
    return style.path, style.meta


def _generator_from_state_dict(state: object, path: Path) -> Generator:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a TorchScript module or an AnimeGANv2 state_dict")
    model = Generator()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "shape mismatch"
        raise WeightsError(f"{path}: not an AnimeGANv2 generator state_dict ({first})") from None
    return model.eval()


def load_model(name_or_path: str | os.PathLike = DEFAULT_STYLE) -> torch.jit.ScriptModule:
    """Load a style by name or path as a TorchScript module on the CPU, in eval mode.

    Accepts a registered style name, a TorchScript file (``torch.jit.trace(...).save`` or
    ``torch.jit.script(...).save``) or an official-format ``state_dict``. A sidecar with a
    ``sha256`` is checked against the file. Raises :class:`WeightsError` with one line naming the
    file and what was expected, or :class:`StyleNotFoundError`.
    """
    path, meta = resolve(name_or_path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, expected a .pt weights file")
    if meta.get("sha256") and sha256_of(path) != meta["sha256"]:
        raise WeightsError(f"{path}: sha256 does not match its sidecar {path.with_suffix('.json').name} "
                           "(file changed or corrupt)")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file, expected TorchScript or an AnimeGANv2 state_dict")
    if not zipfile.is_zipfile(path):
        raise WeightsError(f"{path}: not a PyTorch archive, expected TorchScript or an AnimeGANv2 state_dict")
    with zipfile.ZipFile(path) as zf:
        is_script = any(n.split("/", 2)[1:2] == ["constants.pkl"] or "/code/" in n for n in zf.namelist())
    try:
        if is_script:
            module = torch.jit.load(str(path), map_location="cpu")
        else:
            module = torch.jit.script(_generator_from_state_dict(
                torch.load(path, map_location="cpu", weights_only=True), path))
    except WeightsError:
        raise
    except (RuntimeError, ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise WeightsError(f"{path}: corrupt or unreadable weights ({reason})") from None
    return module.eval()


def eager_generator(module: torch.nn.Module) -> Generator:
    """An eager fp32 :class:`Generator` with ``module``'s architecture and weights (``module`` is a
    loaded style); for tools that rewrite or quantize the forward pass."""
    model = Generator(getattr(module, "width", 1.0), getattr(module, "blocks", 4), getattr(module, "skip", False))
    model.load_state_dict({k: v.float() for k, v in module.state_dict().items()})
    return model.eval()


def export_style(model: Generator, folder: Path, name: str, *, source: str, license: str,
                 training_steps: int, quality: dict, recipe: dict | None = None,
                 recommended_max_side: int = 512) -> Path:
    """Script ``model`` to ``folder/name.pt`` and write its sidecar ``folder/name.json``."""
    meta = {"name": name, "architecture": ARCHITECTURE,
            "width": getattr(model, "width", 1.0), "blocks": getattr(model, "blocks", 4),
            "skip": getattr(model, "skip", False),
            "parameters": sum(p.numel() for p in model.parameters()),
            "source": source, "license": license, "training_steps": training_steps,
            "quality": quality, "recipe": recipe or {}, "recommended_max_side": recommended_max_side}
    return save_style(torch.jit.script(model.eval()), folder, name, meta)


def save_style(module: torch.jit.ScriptModule, folder: Path, name: str, meta: dict) -> Path:
    """Save ``module`` as ``folder/name.pt`` with ``meta`` plus its sha256 as the sidecar.

    Both files are written in a staging folder and renamed into place at the end, so a failure
    leaves no style, or the previous one, behind; the previous one's INT8 calibration is removed.
    Returns the ``.pt`` path.
    """
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        pt = staging / f"{name}.pt"
        module.save(str(pt))
        write_sidecar(pt, {**meta, "sha256": sha256_of(pt)})
        os.replace(pt, folder / pt.name)
        os.replace(pt.with_suffix(".json"), folder / f"{name}.json")
        (folder / f"{name}{RANGES_SUFFIX}").unlink(missing_ok=True)  # calibrated for the weights just replaced
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / f"{name}.pt"


def write_sidecar(pt: Path, meta: dict) -> None:
    """Write ``meta`` as the JSON sidecar of the style file ``pt``."""
    pt.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n")
