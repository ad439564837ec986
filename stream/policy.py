"""Which path runs a style here: one table per CPU class, and the rule that reads it.

:data:`POLICY` is data, one row per class of :mod:`stream.cpu`: the precisions ``--precision auto``
tries, fastest first, and how the float path lays out its tensors. :func:`choose` walks a row and
takes the first precision that the style supports and whose quality holds, and says why. The next
CPU class is one more row. Every row's order comes from ``bench/bench.py --isa`` (its ``model``
rows), except where ``measured`` says it is unmeasured.

A style's quality bar is its sidecar's PSNR against its teacher: INT8 is taken only where its
calibration records a PSNR against the same teacher within :data:`MAX_LOSS_DB` of that (the
INT8 numbers are the same on every x86 class: :mod:`stream.quant` uses 7-bit weights everywhere).
A calibration made by a user for a style without a teacher is taken as asked for.

A style's narrower variants (:func:`stream.weights.variants`: students of the same teacher with fewer
channels, whose sidecar names the style in ``variant_of``) are tried first, the narrowest first. Where a
row says ``narrower`` (the classes where the full network misses its speed goals, ``bench/bench.py
--isa``: the ``hayao`` file job on avx2), one runs in the style's place where its own best path here
scores within :data:`MAX_LOSS_DB` of the style's float model against their common teacher. On every other
row one does only where it costs nothing in stills: its path here is no slower a precision than the
style's own and scores at least as well as that path does, so fewer operations buy the same picture.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import weights
from .cpu import CLASSES, CpuClass
from .errors import AnimestreamError
from .weights import Style

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
MAX_LOSS_DB = 0.3  # INT8, or a narrower variant, may cost at most this much PSNR against the teacher, from the
# style's float model's


@dataclass(frozen=True)
class Row:
    """One CPU class: ``auto`` lists the CPU precisions to try, fastest first; ``int8_min_side`` is the
    smallest cap (longest side, pixels) at which INT8 is faster than the next precision (0: at every
    size; a cap of 0, no cap, counts as large); ``channels_last`` is the float path's memory layout
    (oneDNN's blocked kernels want it on x86); ``measured`` names the run the row comes from, or says
    it is unmeasured; ``narrower``: a style's narrower variant may run in its place at up to
    :data:`MAX_LOSS_DB` of loss (on other rows only at none); ``int8_min_width``
    is the narrowest generator (its channel width multiplier) that INT8 runs clearly faster than the
    next precision (0: every width): below it INT8 saves nothing and only adds its frame-to-frame
    quantization noise, which doubles the warping error of an almost still video (``bench/temporal.py``)."""

    auto: tuple[str, ...]
    int8_min_side: int = 0
    int8_min_width: float = 0.0
    channels_last: bool = True
    measured: str = "bench/bench.py --isa"
    narrower: bool = False


# With native bf16, INT8's fixed costs per layer outweigh its faster convolutions on small frames: on AMX
# a 160x120 frame took 11.8 ms in INT8 against 9.3 in bf16 (shinkai), 512x288 83 against 98 ms; on
# AVX512-BF16 the lites ran 38 fps in INT8 against 37 in bf16 at 160 px, 22 against 15 at 256. On AMX a
# half-width network is no faster in INT8 (shinkai: 91.0 against 94.1 ms at 512x512 in bf16, 56.4 against
# 48.1 at 512x288), a 0.75-width one is (hayao-fast: 138.4 against 189.6, 81.8 against 91.4), full width twice
# as fast (hayao: 159.0 against 315.6): bench/model.py, engine-int8 against engine.
POLICY: dict[str, Row] = {
    "amx": Row(("int8", "bf16", "fp32"), int8_min_side=256, int8_min_width=0.75),
    "avx512-bf16": Row(("int8", "bf16", "fp32"), int8_min_side=256),
    "avx512-vnni": Row(("int8", "fp32")),
    "avx512": Row(("int8", "fp32"), measured="unmeasured: no such CPU here; INT8 as on avx2 (no VNNI)", narrower=True),
    "avx2-vnni": Row(("int8", "fp32"), measured="unmeasured: no such CPU here; between avx2 and avx512-vnni",
                     narrower=True),
    "avx2": Row(("int8", "fp32"), narrower=True),
    "baseline": Row(("fp32",), measured="unmeasured: no such CPU here", narrower=True),
    "arm64-bf16": Row(("bf16", "fp32"), channels_last=False, measured="unmeasured: no Arm CPU here", narrower=True),
    "arm64": Row(("fp32",), channels_last=False, measured="unmeasured: no Arm CPU here", narrower=True),
}
assert set(POLICY) == set(CLASSES), "every CPU class has one row"


@dataclass(frozen=True)
class Choice:
    """A path: the ``backend`` name (a key of :data:`stream.backends.BACKENDS`), the ``precision`` it runs
    in, the CPU class it was chosen for, ``why`` (one line per path considered) and the ``variant`` that
    runs in the style's place (None: the style's own weights)."""

    backend: str
    precision: str
    cpu: str
    why: tuple[str, ...] = field(default=())
    variant: Style | None = None


def _int8_verdict(style: Style) -> str | None:
    """None where ``style``'s INT8 path keeps its quality bar, else why not (one phrase)."""
    if not style.calibrated:
        return "no INT8 calibration"
    float_psnr = _quality(style).get("psnr_vs_teacher")
    if not isinstance(float_psnr, (int, float)):
        return None  # a user's own calibration of a style without a teacher: taken as asked for
    int8_psnr = weights.int8_psnr(style)
    if int8_psnr is None:
        return "its INT8 calibration was never scored against the teacher"
    if int8_psnr < float_psnr - MAX_LOSS_DB:
        return (f"INT8 scores {int8_psnr:.2f} dB against the teacher, float {float_psnr:.2f}: more than "
                f"{MAX_LOSS_DB} dB lower")
    return None


def _int8_reason(style: Style, cpu: CpuClass) -> str:
    quality = _quality(style)
    score = weights.int8_psnr(style)
    kernels = "VNNI dot products" if cpu.has_vnni else "no VNNI: 7-bit weights keep oneDNN's 16-bit sums exact"
    floats = weights.float_layer_names(style)
    if floats:
        kernels += f"; {', '.join(floats)} in float"
    if score is None:
        return f"int8: calibrated by its owner ({kernels})"
    return (f"int8: {score:.2f} dB against the teacher, float {quality['psnr_vs_teacher']:.2f} "
            f"(within {MAX_LOSS_DB} dB); {kernels}")


def choose(style: Style, device: torch.device, precision: str, cpu: CpuClass, max_side: int = 0) -> Choice:
    """The path for ``style`` on ``device`` at the requested ``precision`` (one of :data:`PRECISIONS`),
    for frames capped at ``max_side`` pixels (0: no cap).

    ``auto`` is fp16 on CUDA, onnxruntime's fp32 for an ONNX style, and on the CPU the first precision of
    ``cpu``'s row that the style can run within its quality bar (INT8 only from the row's
    ``int8_min_side`` and ``int8_min_width`` up), after its narrower variants by the module's rule (the returned
    ``variant`` then runs in its place). An explicit precision is taken as asked, or refused with one line
    (:class:`~stream.errors.AnimestreamError`) where it cannot run.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    where = "cuda" if device.type == "cuda" else cpu.name
    if style.format == "onnx":
        if precision not in ("auto", "fp32"):
            raise AnimestreamError(f"precision {precision}: an ONNX style runs in fp32 through onnxruntime")
        return Choice("onnxruntime", "fp32", where, ("fp32: an ONNX style runs through onnxruntime",))
    if device.type == "cuda":
        if precision == "int8":
            raise AnimestreamError("precision int8 runs on the CPU; use fp16 on a GPU")
        chosen = "fp16" if precision == "auto" else precision
        return Choice("cuda", chosen, where, (f"{chosen}: {'auto on' if precision == 'auto' else 'asked for, on'} CUDA",))
    if precision == "fp16":
        raise AnimestreamError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    if precision == "int8":
        if not style.calibrated:
            raise AnimestreamError("precision int8: this style has no INT8 calibration; make one with "
                                   "'animestream weights calibrate STYLE --photos FOLDER'")
        return Choice("int8", "int8", where, ("int8: asked for",))
    if precision != "auto":
        return Choice("torch", precision, where, (f"{precision}: asked for",))
    row = POLICY[cpu.name]
    own = _auto(style, row, cpu, max_side)
    why: list[str] = []
    for variant in weights.variants(style):
        picked = _auto(variant, row, cpu, max_side)
        score = _score(variant, picked)
        verdict = _variant_verdict(style, variant, picked.precision, score)
        if verdict is None and not row.narrower:
            verdict = _no_loss_verdict(style, variant, row, own, picked, score)
        if verdict is None:
            reason = _variant_reason(style, variant, picked.precision, score, None if row.narrower else own)
            return Choice(picked.backend, picked.precision, where,
                          (*why, f"{variant.name}, a narrower student: {reason}", *picked.why), variant)
        why.append(f"not {variant.name}: {verdict}")
    return Choice(own.backend, own.precision, where, (*why, *own.why))


def _auto(style: Style, row: Row, cpu: CpuClass, max_side: int) -> Choice:
    """The first precision of ``cpu``'s ``row`` that ``style`` runs within its quality bar."""
    where, why = cpu.name, []
    for candidate in row.auto:
        if candidate == "int8":
            small = 0 < max_side < row.int8_min_side
            width = style.architecture["width"]
            if small:
                verdict = f"at a {max_side} px cap the next path is faster here"
            elif width < row.int8_min_width:
                verdict = f"at {width:g}x width the next path is as fast here, and steadier in motion"
            else:
                verdict = _int8_verdict(style)
            if verdict is None:
                return Choice("int8", "int8", where, (*why, _int8_reason(style, cpu)))
            why.append(f"not int8: {verdict}")
        else:
            note = "native bf16" if candidate == "bf16" else "every CPU runs it"
            return Choice("torch", candidate, where, (*why, f"{candidate}: {note}"))
    raise AssertionError(f"the {where} row has no precision every style runs")


def _score(style: Style, choice: Choice) -> float | None:
    """``style``'s PSNR against its teacher on the path ``choice``, dB (None: not measured)."""
    if choice.precision == "int8":
        return weights.int8_psnr(style)
    value = _quality(style).get("psnr_vs_teacher")
    return float(value) if isinstance(value, (int, float)) else None


def _variant_verdict(style: Style, variant: Style, precision: str, score: float | None) -> str | None:
    """None where ``variant``, scoring ``score`` dB against the teacher in ``precision`` (its path here),
    keeps ``style``'s quality bar, else why not."""
    bar, theirs = _quality(style), _quality(variant)
    if not isinstance(bar.get("psnr_vs_teacher"), (int, float)):
        return f"{style.name} has no PSNR against a teacher to keep"
    if not bar.get("teacher_sha256") or theirs.get("teacher_sha256") != bar.get("teacher_sha256"):
        return f"not distilled from {style.name}'s teacher"
    if score is None:
        return f"its {precision} path was never scored against the teacher"
    if score < bar["psnr_vs_teacher"] - MAX_LOSS_DB:
        return (f"{precision} scores {score:.2f} dB against the teacher, {style.name}'s float "
                f"{bar['psnr_vs_teacher']:.2f}: more than {MAX_LOSS_DB} dB lower")
    return None


def _no_loss_verdict(style: Style, variant: Style, row: Row, own: Choice, picked: Choice,
                     score: float) -> str | None:
    """On a row without ``narrower``: None where ``variant`` costs nothing here, else why not. It must be
    narrower than ``style``, run a precision of ``row`` no slower than ``style``'s own path ``own`` (the row
    lists them fastest first), and score at least as well against the teacher on its path as ``style``
    does on its own: fewer operations at no loss in stills."""
    if variant.architecture["width"] >= style.architecture["width"]:
        return f"not narrower than {style.name}"
    if row.auto.index(picked.precision) > row.auto.index(own.precision):
        return f"its {picked.precision} path is slower here than {style.name}'s {own.precision}"
    theirs = _score(style, own)  # never None: past _variant_verdict the style has a float score (and an INT8
    # path only with an INT8 score of its own)
    if score < theirs:
        return (f"{picked.precision} scores {score:.2f} dB against the teacher, below {style.name}'s own "
                f"{own.precision} here ({theirs:.2f})")
    return None


def _variant_reason(style: Style, variant: Style, precision: str, score: float, own: Choice | None) -> str:
    """Why ``variant`` runs in ``style``'s place: within the bar of ``style``'s float model, or (``own``, the
    style's own path here, given) at least as close to the teacher as that path."""
    width = variant.architecture["width"] / style.architecture["width"]
    against = (f"{style.name}'s float {_quality(style)['psnr_vs_teacher']:.2f} (within {MAX_LOSS_DB} dB)" if own is None
               else f"at least {style.name}'s own {own.precision} here ({_score(style, own):.2f})")
    return f"{precision} scores {score:.2f} dB against the teacher, {against}, with {width:.2g}x the channels"


def _quality(style: Style) -> dict:
    quality = style.meta.get("quality")
    return quality if isinstance(quality, dict) else {}
