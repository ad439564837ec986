"""Styles are data: this module owns a style's files, their names, their sidecar and their hashes.

A style ``NAME`` is a weights file and a JSON sidecar in a styles folder::

    NAME.safetensors  the generator's tensors (fp16 for the built-ins); any torch loads them
    NAME.json         sidecar: name, architecture (width, blocks, skip, upsample), source, license,
                      training_steps, quality, recommended_max_side, sha256 of the weights file
    NAME.ranges       optional INT8 calibration (safetensors), valid for that sha256 only

A style may instead be ``NAME.onnx`` (run by onnxruntime; the sidecar's ``onnx`` object declares its
layout, channel order, range and size multiple, see :mod:`stream.onnxgen`) or ``NAME.pt``
(TorchScript, for generators of other architectures imported by the user).

Loading builds our :class:`~stream.model.Generator` from the sidecar, loads the tensors and scripts
it with ``torch.jit.script`` on the running torch, so a style saved by one torch version loads on
any other (TorchScript archives do not: they carry the saving version's operator set).

Folders searched, first match wins: the user's styles folder (``$ANIMESTREAM_HOME/styles``, else the
platform's cache folder, e.g. ``~/.cache/animestream/styles``) for styles imported or pulled, then
the built-in ones installed with the package. :func:`resolve` turns a name or a path into a
:class:`Style`, hashing its file once; everything else takes that :class:`Style`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import StyleNotFoundError, StyleWarning, WeightsError
from .model import UPSAMPLING, Generator
from .quant import int8_layers

DEFAULT_STYLE = "hayao"
DEFAULT_LIVE_STYLE = "hayao-lite"  # a live source with no style named: the default's real-time sibling
LITE_MAX_SIDE = 256  # pixels: a style recommended at this cap or below is a real-time (-lite) one
ARCHITECTURE = "AnimeGANv2 generator"
HASH_CHUNK_BYTES = 1 << 20
SIDECAR_SUFFIX = ".json"
RANGES_SUFFIX = ".ranges"  # INT8 calibration beside a style's weights (stream/quant.py); valid for those weights only
WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".pt")  # in the order a folder is searched for NAME.*
STORAGE_DTYPE = torch.float16  # how exported styles store their tensors: half the bytes, < 0.5 level of change
FORMATS = ("safetensors", "onnx", "torchscript", "state_dict")


def _builtin_dir() -> Path:
    """The built-in styles: the top-level ``weights/`` folder of the project, which a wheel installs as the
    package data ``stream.builtin_styles``; a checkout (run in place or installed editable) has it beside
    the package."""
    spec = importlib.util.find_spec("stream.builtin_styles")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]).resolve()
    return Path(__file__).resolve().parent.parent / "weights"


BUILTIN_DIR = _builtin_dir()


def user_home() -> Path:
    """Per-user data folder: ``$ANIMESTREAM_HOME``, else the platform's user cache folder for animestream
    (``$XDG_CACHE_HOME/animestream`` or ``~/.cache/animestream`` on Linux, ``~/Library/Caches/animestream``
    on macOS, ``%LOCALAPPDATA%\\animestream\\Cache`` on Windows)."""
    env = os.environ.get("ANIMESTREAM_HOME")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("animestream", appauthor=False))


def user_styles_dir() -> Path:
    return user_home() / "styles"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Style:
    """A style: its weights file, sidecar metadata and what follows from them.

    Made by :func:`resolve` (which checks the file against the sidecar's sha256 once, and sets
    ``sha256``) or :func:`list_styles` (which reads sidecars only: ``sha256`` is the sidecar's).
    """

    name: str
    path: Path
    meta: dict = field(default_factory=dict, compare=False)
    sha256: str = ""
    format: str = "safetensors"  # one of FORMATS
    verified: bool = field(default=False, compare=False)  # sha256 computed from the file by resolve()

    @property
    def origin(self) -> str:
        """``built-in``, ``official`` (pulled), ``imported`` or ``user``."""
        if self.path.parent == BUILTIN_DIR:
            return "built-in"
        return self.meta.get("origin", "user")

    @property
    def recommended_max_side(self) -> int | None:
        return self.meta.get("recommended_max_side")

    @property
    def eval_side(self) -> int | None:
        """The longest side, in pixels, at which the sidecar's ``quality`` figures were measured (its
        ``resolution``, as :func:`eval_resolution` writes it); None where the sidecar does not say one."""
        words = str(self.meta.get("quality", {}).get("resolution", "")).split()
        return int(words[-2]) if len(words) >= 2 and words[-1] == "px" and words[-2].isdigit() else None

    @property
    def architecture(self) -> dict:
        """Our generator's parameters: ``width``, ``blocks``, ``skip``, ``upsample`` and, where it has them,
        ``guided_filter`` (``radius``, ``eps``), ``norm`` (other than a single group) and ``unet``:
        :meth:`stream.model.Generator.architecture`'s form."""
        arch = self.meta.get("architecture")
        arch = arch if isinstance(arch, dict) else self.meta  # sidecars before 0.2 kept them at the top level
        out = {"width": float(arch.get("width", 1.0)), "blocks": int(arch.get("blocks", 4)),
               "skip": bool(arch.get("skip", False)), "upsample": arch.get("upsample", "align_corners")}
        if isinstance(arch.get("guided_filter"), dict):
            out["guided_filter"] = dict(arch["guided_filter"])
        if arch.get("norm", "layer") != "layer":
            out["norm"] = str(arch["norm"])
        if arch.get("unet"):
            out["unet"] = True
        return out

    @property
    def lite(self) -> bool:
        """A reduced-width style meant for real time at a small cap (its thread count differs): ``width`` < 1
        and a ``recommended_max_side`` of at most :data:`LITE_MAX_SIDE` in its sidecar."""
        cap = self.meta.get("recommended_max_side")
        return (self.format in ("safetensors", "state_dict") and self.architecture["width"] < 1.0
                and isinstance(cap, int) and 0 < cap <= LITE_MAX_SIDE)

    @property
    def ranges_path(self) -> Path:
        """Where this style's INT8 calibration lives (it may not exist)."""
        return self.path.with_suffix(RANGES_SUFFIX)

    @property
    def calibrated(self) -> bool:
        return self.format != "onnx" and self.ranges_path.exists()


def eval_resolution(side: int) -> str:
    """A sidecar's ``quality.resolution`` for figures measured with the longest side at ``side`` pixels
    (``longest side 512 px``): the text :attr:`Style.eval_side` reads back."""
    return f"longest side {side} px"


def _sidecar_path(weights_file: Path) -> Path:
    return weights_file.with_suffix(SIDECAR_SUFFIX)


def read_sidecar(weights_file: Path) -> dict:
    """The sidecar of ``weights_file``, ``{}`` if it has none; :class:`WeightsError` if unreadable."""
    side = _sidecar_path(weights_file)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{side}: unreadable style sidecar ({e})") from None
    if not isinstance(meta, dict):
        raise WeightsError(f"{side}: unreadable style sidecar (not a JSON object)")
    return meta


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix == ".onnx":
        return "onnx"
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            if any(n.split("/", 2)[1:2] == ["constants.pkl"] or "/code/" in n for n in zf.namelist()):
                return "torchscript"
    return "state_dict"


def list_styles() -> list[Style]:
    """Every registered style, user styles first; a name appears once (the first found wins).

    A style whose sidecar cannot be read is left out with a :class:`~stream.errors.StyleWarning` naming
    it, and so is a user styles folder that cannot be read: one broken file never hides the others.
    """
    seen: dict[str, Style] = {}
    for folder in (user_styles_dir(), BUILTIN_DIR):
        try:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in WEIGHT_SUFFIXES) if folder.is_dir() else []
        except OSError as e:
            warnings.warn(f"{folder}: cannot read the styles folder ({e.strerror or e})", StyleWarning, stacklevel=2)
            continue
        for path in sorted(files, key=lambda p: WEIGHT_SUFFIXES.index(p.suffix.lower())):
            try:
                if path.stem in seen or path.name.startswith(".") or not _sidecar_path(path).exists():
                    continue
                meta = read_sidecar(path)
            except (WeightsError, OSError) as e:
                warnings.warn(f"skipping a style: {e}", StyleWarning, stacklevel=2)
                continue
            seen[path.stem] = Style(path.stem, path, meta, meta.get("sha256", ""), _format_of(path))
    return list(seen.values())


def variants(style: Style) -> list[Style]:
    """The registered styles whose sidecar names ``style`` in ``variant_of`` (students of its teacher with
    fewer channels, :mod:`stream.policy`), narrowest first (sidecars read, files not hashed yet)."""
    found = [s for s in list_styles() if s.meta.get("variant_of") == style.name and s.name != style.name]
    return sorted(found, key=lambda s: (s.architecture["width"], s.name))


def find_style(name: str) -> Style:
    """The registered style called ``name`` (sidecar read, file not hashed yet)."""
    for style in list_styles():
        if style.name == name:
            return style
    known = ", ".join(s.name for s in list_styles()) or "none"
    raise StyleNotFoundError(f"unknown style {name!r} (known styles: {known}; or give a path to a "
                             ".safetensors, .onnx or .pt file)")


def resolve(name_or_path: str | os.PathLike | Style) -> Style:
    """The :class:`Style` for a style name, a weights path or a :class:`Style`, its file checked
    against the sidecar's sha256 (hashed once here; a Style already resolved is returned as is)."""
    if isinstance(name_or_path, Style) and name_or_path.verified:
        return name_or_path
    if isinstance(name_or_path, Style):
        style = name_or_path
    else:
        text = os.fspath(name_or_path)
        path = Path(text)
        if path.suffix or os.sep in text or (os.altsep and os.altsep in text) or path.exists():
            if path.is_dir():
                raise WeightsError(f"{path}: is a folder, expected a weights file")
            if not path.exists():
                raise WeightsError(f"{path}: weights file not found")
            meta = read_sidecar(path) if path.suffix.lower() in WEIGHT_SUFFIXES else {}
            style = Style(meta.get("name") or path.stem, path, meta, meta.get("sha256", ""), _format_of(path))
        else:
            style = find_style(text)
    try:
        if style.path.stat().st_size == 0:
            raise WeightsError(f"{style.path}: empty file, expected a style's weights")
        digest = sha256_of(style.path)
    except OSError as e:
        raise WeightsError(f"{style.path}: cannot read it ({e.strerror or e})") from None
    if style.meta.get("sha256") and digest != style.meta["sha256"]:
        raise WeightsError(f"{style.path}: sha256 does not match its sidecar {_sidecar_path(style.path).name} "
                           "(file changed or corrupt)")
    return dataclasses.replace(style, sha256=digest, verified=True)


def _read_tensors(style: Style) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(style.path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{style.path}: corrupt or unreadable weights ({str(e).splitlines()[0][:160]})") from None


def _load_into(model: Generator, state: dict, path: Path) -> Generator:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a TorchScript module or an AnimeGANv2 state_dict")
    try:
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0] if str(e) else "shape mismatch"
        raise WeightsError(f"{path}: not this generator's tensors ({first})") from None
    return model.eval()


def generator_for(style: Style) -> Generator:
    """An untrained :class:`Generator` of ``style``'s architecture (from its sidecar)."""
    arch = style.architecture
    if arch["upsample"] not in UPSAMPLING:
        raise WeightsError(f"{_sidecar_path(style.path)}: unknown upsampling {arch['upsample']!r}")
    try:
        return Generator.from_architecture(arch)
    except (ValueError, TypeError) as e:
        raise WeightsError(f"{_sidecar_path(style.path)}: bad architecture ({e})") from None


def eager_generator(style: Style | torch.nn.Module) -> Generator:
    """An eager fp32 :class:`Generator` with the style's weights, for tools that rewrite or quantize the
    forward pass (INT8, calibration, training). Also accepts a loaded TorchScript generator."""
    if isinstance(style, torch.nn.Module):
        module = style
        model = Generator(getattr(module, "width", 1.0), getattr(module, "blocks", 4), getattr(module, "skip", False),
                          getattr(module, "upsample", "align_corners"), getattr(module, "guided_radius", 0),
                          getattr(module, "guided_eps", 0.0), getattr(module, "norm", "layer"),
                          getattr(module, "unet", False))
        return _load_into(model, dict(module.state_dict()), Path("<module>"))
    if style.format == "safetensors":
        return _load_into(generator_for(style), _read_tensors(style), style.path)
    if style.format == "onnx":
        raise WeightsError(f"{style.path}: an ONNX style has no PyTorch weights (INT8, export and training "
                           "need a .safetensors or .pt style)")
    return eager_generator(load_model(style))


def load_model(name_or_path: str | os.PathLike | Style = DEFAULT_STYLE) -> torch.jit.ScriptModule:
    """A style's generator as a TorchScript module on the CPU, in eval mode, fp32.

    Accepts a registered style name, a :class:`Style`, a ``.safetensors`` style file (with its
    sidecar), a TorchScript file, or an official-format AnimeGANv2 ``state_dict``. Our generators are
    scripted here, by the running torch. Raises :class:`WeightsError` with one line naming the file
    and what was expected, or :class:`StyleNotFoundError`.
    """
    style = resolve(name_or_path)
    path = style.path
    if style.format == "onnx":
        raise WeightsError(f"{path}: an ONNX style runs through onnxruntime, not as TorchScript")
    if style.format == "safetensors":
        return torch.jit.script(eager_generator(style))
    try:
        if style.format == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()
        if not zipfile.is_zipfile(path):
            raise WeightsError(f"{path}: not a PyTorch archive, expected TorchScript, an AnimeGANv2 "
                               "state_dict or .safetensors")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return torch.jit.script(_load_into(Generator(), state, path))
    except WeightsError:
        raise
    except (RuntimeError, ValueError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise WeightsError(f"{path}: corrupt or unreadable weights ({reason})") from None


PROBE_SHAPE = (1, 3, 24, 32)  # a small picture every supported generator must map to its own shape


def check_generator(run, path: Path) -> None:
    """Refuse, with one line, a model that is not a picture-to-picture generator: ``run`` (a TorchScript
    module or an ONNX generator) must map a 1 x 3 x 24 x 32 picture to one of the same shape."""
    x = torch.zeros(PROBE_SHAPE).uniform_(-1, 1)
    try:
        with torch.inference_mode():
            y = run(x)
    except (RuntimeError, ValueError, TypeError, IndexError, WeightsError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise WeightsError(f"{path}: not a picture-to-picture generator (a 24x32 picture failed: {reason})") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != PROBE_SHAPE or not y.is_floating_point():
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise WeightsError(f"{path}: not a picture-to-picture generator (a 1x3x24x32 picture gave {got})")


def onnx_generator(style: Style, *, threads: int = 0, cuda: bool = False):
    """The :class:`~stream.onnxgen.OnnxGenerator` of an ONNX style, declared by its sidecar's ``onnx``."""
    from .onnxgen import OnnxGenerator, OnnxIO

    io = OnnxIO.from_manifest(style.meta["onnx"]) if isinstance(style.meta.get("onnx"), dict) else OnnxIO()
    return OnnxGenerator(style.path, io, threads=threads, cuda=cuda)


def _stage(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _commit(staging: Path, folder: Path, name: str, weights_name: str) -> Path:
    """Move a staged style into ``folder``, replacing any earlier ``name`` in every format."""
    for suffix in WEIGHT_SUFFIXES + (RANGES_SUFFIX,):
        if suffix != Path(weights_name).suffix:
            (folder / f"{name}{suffix}").unlink(missing_ok=True)
    os.replace(staging / weights_name, folder / weights_name)
    os.replace(staging / f"{name}{SIDECAR_SUFFIX}", folder / f"{name}{SIDECAR_SUFFIX}")
    (folder / f"{name}{RANGES_SUFFIX}").unlink(missing_ok=True)  # calibrated for the weights just replaced
    return folder / weights_name


def save_style(model: Generator, folder: Path, name: str, meta: dict, *, dtype: torch.dtype = STORAGE_DTYPE) -> Style:
    """Save ``model`` as ``folder/name.safetensors`` (tensors in ``dtype``) with ``meta``, its
    architecture and sha256 as the sidecar. Both files are written in a staging folder and renamed into
    place at the end, so a failure leaves no style, or the previous one, behind; the previous one's INT8
    calibration is removed."""
    from safetensors.torch import save_file

    staging = _stage(folder, name)
    try:
        weights_file = staging / f"{name}.safetensors"
        state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(weights_file), metadata={"format": "pt", "architecture": ARCHITECTURE})
        os.chmod(weights_file, 0o644)  # safetensors writes owner-only; a style is as readable as its sidecar
        sidecar = dict(meta)
        sidecar.update(name=name, architecture=model.architecture(),
                       parameters=sum(p.numel() for p in model.parameters()), storage=str(dtype).split(".")[-1],
                       sha256=sha256_of(weights_file))
        write_sidecar(weights_file, sidecar)
        path = _commit(staging, folder, name, weights_file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolve(path)


def save_file_style(src: Path, folder: Path, name: str, meta: dict) -> Style:
    """Copy an ONNX or TorchScript file as style ``name`` with ``meta`` (plus its sha256) as sidecar."""
    suffix = ".onnx" if src.suffix.lower() == ".onnx" else ".pt"
    staging = _stage(folder, name)
    try:
        weights_file = staging / f"{name}{suffix}"
        shutil.copyfile(src, weights_file)
        write_sidecar(weights_file, {**meta, "name": name, "sha256": sha256_of(weights_file)})
        path = _commit(staging, folder, name, weights_file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return resolve(path)


@torch.inference_mode()
def storage_change(model: Generator, images: list[torch.Tensor], dtype: torch.dtype = STORAGE_DTYPE) -> dict:
    """How much storing ``model``'s tensors in ``dtype`` changes its output on ``images`` (1 x 3 x H x W
    in [-1, 1]), in output levels (0..255): the mean and the largest absolute difference."""
    stored = Generator.from_architecture(model.architecture()).eval()
    stored.load_state_dict({k: v.to(dtype).float() for k, v in model.state_dict().items()})
    model = model.eval()
    diffs = [((model(x.float()) - stored(x.float())).abs() * 127.5) for x in images]
    return {"storage": str(dtype).split(".")[-1], "images": len(images),
            "mean_levels": round(float(torch.cat([d.flatten() for d in diffs]).mean()), 4),
            "max_levels": round(float(max(d.max() for d in diffs)), 3)}


def export_style(model: Generator, folder: Path, name: str, *, source: str, license: str,
                 training_steps: int, quality: dict, recipe: dict | None = None,
                 recommended_max_side: int = 512, extra: dict | None = None,
                 probe: list[torch.Tensor] | None = None) -> Path:
    """Save a trained ``model`` as style ``name`` in ``folder`` (see :func:`save_style`); returns the weights
    path. With ``probe`` images, what fp16 storage changes in the output on them is measured and recorded
    in the sidecar (``storage_change``)."""
    model = model.float().eval()
    meta = {"name": name, "kind": ARCHITECTURE, "source": source, "license": license,
            "training_steps": training_steps, "quality": quality, "recipe": recipe or {},
            "recommended_max_side": recommended_max_side, **(extra or {})}
    if probe:
        meta["storage_change"] = storage_change(model, probe)
    return save_style(model, folder, name, meta).path


def export_torchscript(style: Style, out: Path) -> Path:
    """Write ``style``'s generator as a TorchScript file (``torch.jit.load`` loads it on this torch
    version and later ones), atomically."""
    module = load_model(style)
    part = out.with_name(f".{out.name}.part")
    try:
        module.save(str(part))
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out


def write_sidecar(weights_file: Path, meta: dict) -> None:
    """Write ``meta`` as the JSON sidecar of the style file ``weights_file``."""
    _sidecar_path(weights_file).write_text(json.dumps(meta, indent=1) + "\n")


# INT8 calibration files: the ranges of every quantized tensor, keyed by module name, for one sha256.

FLOAT_LAYERS_KEY = "float_layers"  # calibration metadata: comma-separated layers the INT8 path runs in float


def check_float_layers(style: Style, model: Generator, names: Sequence[str]) -> None:
    """:class:`WeightsError`, naming the choices, unless every name is one of :func:`~stream.quant.int8_layers`."""
    unknown = sorted(set(names) - set(int8_layers(model)))
    if unknown:
        raise WeightsError(f"{style.name}: no layer {', '.join(unknown)} to run in float "
                           f"(one of {', '.join(int8_layers(model))})")


def save_ranges(style: Style, model: Generator, ranges: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]],
                *, images: int, float_layers: Sequence[str] = ()) -> Path:
    """Write ``ranges`` (per module: per-channel min and max) as ``style``'s calibration; atomic.
    ``float_layers``: names of :func:`~stream.quant.int8_layers` its INT8 path runs in float (:class:`WeightsError`
    for any other name)."""
    from safetensors.torch import save_file

    check_float_layers(style, model, float_layers)
    names = {m: n for n, m in model.named_modules()}
    tensors = {names[m]: torch.stack([r[0].float(), r[1].float()]).contiguous() for m, r in ranges.items()}
    meta = {"style_sha256": style.sha256, "images": str(images)}
    if float_layers:
        meta[FLOAT_LAYERS_KEY] = ",".join(float_layers)
    out = style.ranges_path
    part = out.with_name(f".{out.name}.part")
    try:
        save_file(tensors, str(part), metadata=meta)
        os.chmod(part, 0o644)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    return out


def ranges_metadata(style: Style) -> dict[str, str]:
    """The metadata of ``style``'s INT8 calibration (empty where it has none or it is unreadable): the
    weights' ``style_sha256``, the ``images`` it was measured on and, once measured against the style's
    teacher (:func:`record_int8_quality`), ``psnr_vs_teacher`` and ``ssim_vs_teacher`` of the INT8 path."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(style.ranges_path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return {}


def int8_psnr(style: Style) -> float | None:
    """The INT8 path's PSNR against the style's teacher, dB, as measured on the held-back photos and
    recorded in its calibration; None where not measured (or the calibration is of other weights)."""
    meta = ranges_metadata(style)
    if meta.get("style_sha256") != style.sha256 or "psnr_vs_teacher" not in meta:
        return None
    try:
        return float(meta["psnr_vs_teacher"])
    except ValueError:
        return None


def record_int8_quality(style: Style, psnr: float, ssim: float) -> Path:
    """Record the INT8 path's PSNR (dB) and SSIM against the teacher in ``style``'s calibration; atomic."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = style.ranges_path
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(psnr_vs_teacher=f"{psnr:.2f}", ssim_vs_teacher=f"{ssim:.4f}")
    part = path.with_name(f".{path.name}.part")
    try:
        save_file(tensors, str(part), metadata=meta)
        os.chmod(part, 0o644)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
    return path


def load_ranges(style: Style, model: Generator) -> dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """``style``'s INT8 calibration for ``model``; :class:`WeightsError` if stale, unreadable or of
    another architecture."""
    from safetensors import SafetensorError, safe_open

    path = style.ranges_path
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            data = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: unreadable INT8 calibration ({str(e).splitlines()[0][:120]})") from None
    if meta.get("style_sha256") != style.sha256:
        raise WeightsError(f"{path}: INT8 calibration of another version of this style; calibrate it again")
    modules = dict(model.named_modules())
    try:
        ranges = {modules[n]: (r[0], r[1]) for n, r in data.items()}
    except (KeyError, IndexError):
        raise WeightsError(f"{path}: INT8 calibration does not fit this style's architecture") from None
    return ranges


def float_layer_names(style: Style) -> list[str]:
    """The names (:func:`~stream.quant.int8_layers`) of the layers ``style``'s INT8 calibration runs in float: none
    for most styles, and none where it has no calibration."""
    return [n for n in ranges_metadata(style).get(FLOAT_LAYERS_KEY, "").split(",") if n]


def load_float_layers(style: Style, model: Generator) -> list[nn.Module]:
    """The layers of ``model`` that ``style``'s INT8 calibration runs in float (none for most styles);
    :class:`WeightsError` if it names one ``model`` does not have."""
    names = float_layer_names(style)
    layers = int8_layers(model)
    if not set(names) <= set(layers):
        raise WeightsError(f"{style.ranges_path}: INT8 calibration does not fit this style's architecture")
    return [layers[n] for n in names]
