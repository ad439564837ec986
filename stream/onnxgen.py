"""ONNX photo-to-anime generators, run with onnxruntime (the optional extra ``animestream[onnx]``).

Generators exported from other frameworks disagree on everything around the network: tensor layout
(NHWC or NCHW), channel order (RGB or BGR), value range and the multiple their sides must be. An
:class:`OnnxIO` declares those; the defaults are those of the official AnimeGANv3 releases (NHWC,
RGB in [-1, 1], sides a multiple of 8), so those run as downloaded. A style's sidecar keeps the
declaration under ``"onnx"``, in the same form as the ``input``/``output`` entries of a
``teachers.json`` manifest.

:class:`OnnxGenerator` takes and returns what the engine's TorchScript generators do: an RGB NCHW
float tensor in [-1, 1]. It reflect-pads the input to the size multiple and crops the output back.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import WeightsError

LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("RGB", "BGR")
INSTALL_HINT = "pip install 'animestream[onnx]'"


@dataclass(frozen=True)
class OnnxIO:
    """How an ONNX generator wants its pictures (input and output share layout, order and range unless
    ``out_*`` says otherwise). ``batch`` is the fixed batch size of the graph, or 0 when any works."""

    layout: str = "NHWC"
    channels: str = "RGB"
    range: tuple[float, float] = (-1.0, 1.0)
    size_multiple: int = 8
    input_name: str = ""
    output_name: str = ""
    out_layout: str = ""
    out_channels: str = ""
    out_range: tuple[float, float] | None = None
    batch: int = 0

    def __post_init__(self):
        for value, allowed, what in ((self.layout, LAYOUTS, "layout"), (self.channels, CHANNEL_ORDERS, "channels"),
                                     (self.out_layout or self.layout, LAYOUTS, "output layout"),
                                     (self.out_channels or self.channels, CHANNEL_ORDERS, "output channels")):
            if value not in allowed:
                raise WeightsError(f"ONNX {what} must be one of {', '.join(allowed)}, not {value!r}")
        for r in (self.range, self.out_range or self.range):
            if len(r) != 2 or not r[1] > r[0]:
                raise WeightsError(f"ONNX value range must be [low, high] with high > low, not {list(r)}")
        if self.size_multiple < 1:
            raise WeightsError(f"ONNX size_multiple must be >= 1, not {self.size_multiple}")

    @classmethod
    def from_manifest(cls, entry: dict) -> "OnnxIO":
        """From a sidecar's ``"onnx"`` value or a ``teachers.json`` entry (``input`` and ``output``
        objects with ``name``, ``layout``, ``channels``, ``range``, ``size_multiple``, ``batch``)."""
        try:
            if "input" not in entry:  # the flat form this class writes
                known = {k: v for k, v in entry.items() if k in cls.__dataclass_fields__}
                known["range"] = tuple(known.get("range", (-1.0, 1.0)))
                if known.get("out_range") is not None:
                    known["out_range"] = tuple(known["out_range"])
                return cls(**known)
            i, o = entry["input"], entry.get("output", {})
            batch = i.get("batch", 0)
            return cls(layout=i.get("layout", "NHWC"), channels=i.get("channels", "RGB"),
                       range=tuple(i.get("range", (-1.0, 1.0))), size_multiple=int(i.get("size_multiple", 8)),
                       input_name=i.get("name", ""), output_name=o.get("name", ""),
                       out_layout=o.get("layout", ""), out_channels=o.get("channels", ""),
                       out_range=tuple(o["range"]) if "range" in o else None,
                       batch=batch if isinstance(batch, int) else 0)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise WeightsError(f"unreadable ONNX input/output declaration ({e})") from None

    def to_sidecar(self) -> dict:
        d = asdict(self)
        d["range"] = list(self.range)
        d["out_range"] = list(self.out_range) if self.out_range else None
        return d


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise WeightsError(f"ONNX styles need onnxruntime: {INSTALL_HINT}") from None
    return onnxruntime


def _ort_errors(ort) -> tuple[type[BaseException], ...]:
    """onnxruntime's own exception classes (they derive from Exception only), plus the built-ins it raises."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "InvalidProtobuf", "InvalidGraph",
             "RuntimeException", "NotImplemented", "ModelLoaded", "EngineError", "EPFail")
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (OSError, ValueError, RuntimeError)


class OnnxGenerator:
    """An ONNX generator behind the TorchScript generators' interface: ``gen(x)`` with ``x`` an RGB
    NCHW float tensor in [-1, 1] (any batch, any size) returns one of the same shape.

    ``threads`` is onnxruntime's intra-op thread count (0: its default, one per core); ``cuda``
    asks for the CUDA execution provider, used where onnxruntime has it.

    Its threads do not spin once a run ends (``session.intra_op.allow_spinning`` 0): by default they
    keep the cores busy for a while after each run, which is when the pipeline's decoder and encoder,
    or whatever model runs next, need them (``bench/teachers.py``, which alternates teacher and student,
    timed ``shinkai`` at 149.5 ms per 512x512 frame with spinning, in an earlier run, and 116.3 without).
    """

    def __init__(self, path: str | os.PathLike, io: OnnxIO | None = None, *, threads: int = 0, cuda: bool = False):
        ort = _onnxruntime()
        self.path, self.io = Path(path), io or OnnxIO()
        self._errors = _ort_errors(ort)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except _ort_errors(ort) as e:
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            raise WeightsError(f"{self.path}: not a loadable ONNX model ({reason})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise WeightsError(f"{self.path}: an ONNX generator takes one picture, this model takes {len(inputs)} inputs")
        self.input_name = self.io.input_name or inputs[0].name
        self.output_name = self.io.output_name or outputs[0].name
        shape = inputs[0].shape
        self.batch = self.io.batch or (shape[0] if shape and isinstance(shape[0], int) else 0)

    def _to_model(self, x: torch.Tensor) -> np.ndarray:
        io = self.io
        if io.channels == "BGR":
            x = x.flip(1)
        low, high = io.range
        if (low, high) != (-1.0, 1.0):
            x = (x + 1.0) * ((high - low) / 2.0) + low
        if io.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())

    def _from_model(self, y: np.ndarray) -> torch.Tensor:
        io = self.io
        t = torch.from_numpy(y)
        if (io.out_layout or io.layout) == "NHWC":
            t = t.permute(0, 3, 1, 2)
        low, high = io.out_range or io.range
        if (low, high) != (-1.0, 1.0):
            t = (t - low) * (2.0 / (high - low)) - 1.0
        if (io.out_channels or io.channels) == "BGR":
            t = t.flip(1)
        return t

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Stylise an RGB NCHW float batch in [-1, 1]; returns float32 on ``x``'s device."""
        n, _, h, w = x.shape
        k = self.io.size_multiple
        ph, pw = -h % k, -w % k
        xp = x.float()
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            xp = F.pad(xp, (0, pw, 0, ph), mode=mode)
        chunk = self.batch or n
        outs = []
        for start in range(0, n, chunk):
            feed = {self.input_name: self._to_model(xp[start:start + chunk])}
            try:
                y = self.session.run([self.output_name], feed)[0]
            except self._errors as e:
                reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
                raise WeightsError(f"{self.path}: the ONNX model failed on a {h}x{w} picture ({reason})") from None
            outs.append(self._from_model(y))
        out = torch.cat(outs) if len(outs) > 1 else outs[0]
        if out.shape[-2] < h or out.shape[-1] < w:
            raise WeightsError(f"{self.path}: the ONNX model returned {tuple(out.shape)} for a "
                               f"{h}x{w} input: not a same-size picture generator")
        return out[:, :, :h, :w].to(x.device)

    def stylise(self, rgb: np.ndarray) -> np.ndarray:
        """One H x W x 3 RGB uint8 picture in, the stylised one out (a new array)."""
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0).float().div(127.5).sub(1.0)
        y = self(x)[0]
        return y.clamp(-1, 1).add(1).mul(127.5).round().byte().permute(1, 2, 0).numpy()
