"""INT8 inference of the generator on x86 CPUs with VNNI: every convolution but the last in 8-bit integers.

PyTorch's own quantization flows (eager, FX) leave each single-group GroupNorm in float, so every
layer dequantizes its activations and quantizes them again, and that costs more than the INT8
convolutions save (``bench/RESULTS.md``). Here the whole layer stays in ``quint8``:

* reflection padding copies bytes (``uint8`` views of the quantized tensors);
* the convolution is oneDNN's INT8 kernel (per-channel weight scales, activations per tensor), with
  7-bit weights (:data:`WEIGHT_LEVELS`), so that it is right on every CPU class: without VNNI (AVX2,
  AVX-512 before VNNI) oneDNN multiplies uint8 activations by int8 weights with ``vpmaddubsw``, whose
  16-bit sums of two products saturate at 32767 (255 x 127 x 2 does not fit; 255 x 63 x 2 does);
* GroupNorm(1 group) is a per-sample mean and variance, so it is computed on every
  :data:`STATS_STRIDE`-th row and column of the convolution's output and applied as a quantized
  batch norm whose running statistics are those two numbers (a norm-free generator's
  :class:`~stream.model.ChannelAffine` is the same batch norm with the statistics 0 and 1); LeakyReLU
  runs on the quantized tensor;
* one scale per tensor fits every channel because each channel is first scaled (and, before a
  GroupNorm, shifted) to its calibrated range: the factors are folded into the weights of the
  convolution before and after, and into the norm's per-channel statistics, so the float result is
  unchanged;
* the residual blocks' stream shares one gain per channel, so the tensors added to it stay in the
  same units and one scale fits all of its channels too;
* a frame that overflows the calibrated ranges (a picture unlike the calibration photos) has them
  widened for that frame, layer by layer, and the next frame starts from the ranges its previous frame
  needed (:class:`_QNorm`): an :class:`Int8Generator` keeps that state, so, as every backend, it is
  called from one thread at a time;
* the last convolution (1x1, to 3 channels) runs in float on the dequantized features: an 8-bit
  output before tanh would be visibly coarse;
* a calibration may name whole layers that run in fp32 between the INT8 ones (``float_layers``,
  ``animestream weights calibrate --float``): where 8-bit rounding costs a style the most, one layer
  in float buys back a part of INT8's loss (``hayao-fast``'s first residual block: 31.38 -> 31.45 dB
  against its teacher, its float model 31.71; ``bench/teachers.py``).

Activation ranges come from :mod:`stream.calibration`, which runs the float model on photos. Input
and output are those of the float model, RGB NCHW in [-1, 1]; :meth:`Int8Generator.forward_uint8`
takes the frame's bytes instead. Measured in ``bench/int8.py``.
"""
from __future__ import annotations

import warnings
from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from .model import (LEAKY_SLOPE, PACK_LANES, ChannelAffine, ConvNormLReLU, Generator, InvertedResBlock, can_pack,
                    guided_filter, pack, pack_factor, resize_asymmetric, unpack)

STATS_STRIDE = 5  # rows and columns between the pixels GroupNorm's statistics are taken from: odd, so that
# the 2- and 4-pixel periodic patterns of strided and upsampled layers are sampled at every phase
GN_EPS = 1e-5  # nn.GroupNorm's default
RANGE_MARGIN = 1.1  # calibrated ranges are widened by this factor, for inputs unlike the calibration set
Ranges = dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]  # module -> per-channel (min, max) of its output
# Weights are quantized to [-63, 63] per output channel on every CPU class: the same numbers everywhere, and
# no saturation without VNNI. `python bench/int8.py --weight-levels 127,63 --photos 6` (shinkai, PSNR from the
# float model on 6 held-back photos at 512 px): 8-bit weights 47.84 dB with VNNI but 41.63 limited to AVX2
# (38.90 on the sample's frame); 7-bit ones 47.42 on both. Against the teachers (bench/teachers.py) 7-bit INT8
# is within 0.3 dB of float for every shipped calibration, with and without the AVX2 limit alike.
WEIGHT_LEVELS = 63
SATURATED_FRACTION = 1e-3  # of a tensor's sampled values at or past its calibrated range's ends: widen it
MAX_WIDENINGS = 3  # a convolution's output range is doubled at most this many times (8x)
INPUT_SCALE, INPUT_ZERO_POINT = 1 / 127.5, 128  # frame bytes p as (p - 128) / 127.5; the bias adds back 0.5


def _qparams(lo: float, hi: float) -> tuple[float, int]:
    """(scale, zero point) of quint8 covering [lo, hi] (widened to include 0) with RANGE_MARGIN."""
    lo, hi = min(lo, 0.0) * RANGE_MARGIN, max(hi, 0.0) * RANGE_MARGIN
    scale = max(hi - lo, 1e-6) / 255
    return scale, int(min(255, max(0, round(-lo / scale))))


def _gain_qparams(lo: torch.Tensor, hi: torch.Tensor, gain: torch.Tensor) -> tuple[float, int]:
    """:func:`_qparams` of per-channel ranges [lo, hi] once each channel is divided by its ``gain``."""
    return _qparams(float((lo / gain).min()), float((hi / gain).max()))


def _size(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Each channel's calibrated size, max |value| of [lo, hi] (never 0): the gain it is divided by."""
    return torch.maximum(hi, -lo).clamp_min(1e-6)


def int8_layers(model: Generator) -> dict[str, nn.Module]:
    """The layers of ``model`` the INT8 path runs one by one (blocks a to e, in order), by module name
    (``block_c.1``): the ones a calibration can mark to run in float."""
    return {f"{b}.{i}": m for b in ("block_a", "block_b", "block_c", "block_d", "block_e")
            for i, m in enumerate(getattr(model, b))}


def _pad_tuple(pad: nn.ReflectionPad2d) -> tuple[int, int, int, int]:
    p = pad.padding
    return (p, p, p, p) if isinstance(p, int) else tuple(p)  # type: ignore[return-value]


def _bytes(q: torch.Tensor) -> torch.Tensor:
    """A plain uint8 tensor over a quint8 tensor's memory (same sizes and strides; no copy)."""
    return torch.empty(0, dtype=torch.uint8).set_(q.untyped_storage(), q.storage_offset(), q.size(), q.stride())


def _reflect_pad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflection-pad a channels-last quint8 tensor by copying its bytes."""
    left, right, top, bottom = pad
    if not any(pad):
        return x
    n, c, h, w = x.shape
    out = torch._empty_affine_quantized((n, c, h + top + bottom, w + left + right), scale=x.q_scale(),
                                        zero_point=x.q_zero_point(), dtype=torch.quint8,
                                        memory_format=torch.channels_last)
    dst = _bytes(out)
    dst[:, :, top:top + h, left:left + w].copy_(_bytes(x))
    for i in range(1, top + 1):
        dst[:, :, top - i, left:left + w].copy_(dst[:, :, top + i, left:left + w])
    for i in range(1, bottom + 1):
        dst[:, :, top + h - 1 + i, left:left + w].copy_(dst[:, :, top + h - 1 - i, left:left + w])
    for i in range(1, left + 1):
        dst[:, :, :, left - i].copy_(dst[:, :, :, left + i])
    for i in range(1, right + 1):
        dst[:, :, :, left + w - 1 + i].copy_(dst[:, :, :, left + w - 1 - i])
    return out


def _average(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The bytes of (a + b) / 2, rounded, for two quint8 tensors of one scale and zero point: a quantized
    add into twice the scale."""
    return _bytes(torch.ops.quantized.add(a, b, 2 * a.q_scale(), a.q_zero_point()))


def _double(x: torch.Tensor) -> torch.Tensor:
    """:func:`_resize` to twice the size with the asymmetric mapping: every source pixel kept, a pixel
    between two the mean of both, one between four the mean of four (rounded once), the last row and
    column repeated. Within half a level of exact, as the general bilinear kernel, and 2-4x faster."""
    n, c, h, w = x.shape
    out = torch._empty_affine_quantized((n, c, 2 * h, 2 * w), scale=x.q_scale(), zero_point=x.q_zero_point(),
                                        dtype=torch.quint8, memory_format=torch.channels_last)
    src, dst = _bytes(x), _bytes(out)
    dst[:, :, 0::2, 0::2] = src
    dst[:, :, 0::2, 1:2 * w - 1:2] = _average(x[:, :, :, :-1], x[:, :, :, 1:])
    dst[:, :, 1:2 * h - 1:2, 0::2] = _average(x[:, :, :-1], x[:, :, 1:])
    pairs = src[:, :, 1:] + src[:, :, :-1].to(torch.int16)  # each pixel and the one below, summed in 16 bits
    dst[:, :, 1:2 * h - 1:2, 1:2 * w - 1:2] = (pairs[:, :, :, 1:] + pairs[:, :, :, :-1]).add_(2).bitwise_right_shift_(2)
    dst[:, :, -1] = dst[:, :, -2]
    dst[:, :, :, -1] = dst[:, :, :, -2]
    return out


def _resize(x: torch.Tensor, size: list[int], asymmetric: bool) -> torch.Tensor:
    """Bilinear resize of a quint8 tensor (or of a float one, between layers run in float), with the
    generator's mapping (see :mod:`stream.model`)."""
    if not x.is_quantized:
        return resize_asymmetric(x, size) if asymmetric else F.interpolate(x, size=size, mode="bilinear",
                                                                            align_corners=True)
    if not asymmetric:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    n, c, h, w = x.shape
    if list(size) == [2 * h, 2 * w] and h > 1 and w > 1:  # the generator's own upsampling, on sizes of 4k
        return _double(x)
    padded = torch._empty_affine_quantized((n, c, h + 1, w + 1), scale=x.q_scale(), zero_point=x.q_zero_point(),
                                           dtype=torch.quint8, memory_format=torch.channels_last)
    dst = _bytes(padded)  # the last row and column repeated once, by copying bytes
    dst[:, :, :h, :w].copy_(_bytes(x))
    dst[:, :, h, :w].copy_(dst[:, :, h - 1, :w])
    dst[:, :, :, w].copy_(dst[:, :, :, w - 1])
    out = F.interpolate(padded, size=[size[0] + 1, size[1] + 1], mode="bilinear", align_corners=True)
    return out[:, :, : size[0], : size[1]]


class _QConv:
    """One convolution that feeds a GroupNorm: INT8 weights packed for oneDNN, the output's quint8 parameters.

    Each output channel is shifted and scaled so that its calibrated range becomes [-1, 1]: one
    per-tensor scale then fits every channel. :class:`_QNorm` undoes the shift and scale in its
    per-channel statistics, exactly.
    """

    def __init__(self, conv: nn.Conv2d, out_range: tuple[torch.Tensor, torch.Tensor], *,
                 in_gain: torch.Tensor | None = None, extra_bias: torch.Tensor | None = None):
        w = conv.weight.detach().float()
        if in_gain is not None:  # the input's channels arrive divided by in_gain
            w = w * (in_gain.view(-1, 1, 1, 1) if conv.groups > 1 else in_gain.view(1, -1, 1, 1))
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0])
        if extra_bias is not None:
            bias = bias + extra_bias
        lo, hi = out_range
        self.center = (hi + lo) / 2
        self.gain = 2 / (hi - lo).clamp_min(1e-6)
        w = w * self.gain.view(-1, 1, 1, 1)
        bias = (bias - self.center) * self.gain
        w_scale = (w.abs().amax(dim=(1, 2, 3)) / WEIGHT_LEVELS).clamp_min(1e-12)
        qw = torch.quantize_per_channel(w, w_scale.double(), torch.zeros(w.shape[0], dtype=torch.int64), 0,
                                        torch.qint8)
        self.packed = torch.ops.quantized.conv2d_prepack(qw, bias, list(conv.stride), [0, 0], [1, 1], conv.groups)
        self.scale, self.zero_point = _qparams(-1.0, 1.0)

    def __call__(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        """The convolution, its output at ``scale`` (:attr:`scale`, the calibrated one, or a wider one)."""
        return torch.ops.quantized.conv2d(x, self.packed, scale, self.zero_point)


def _batch_norm(y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                scale: float, zero_point: int) -> torch.Tensor:
    """``quantized.batch_norm2d`` of the channels-last quint8 ``y`` with per-channel ``mean`` and ``var``
    (eps already in it). A channel count that is not a multiple of :data:`PACK_LANES` is computed on the
    same bytes seen as the least multiple of it, ``k`` neighbouring pixels side by side, with every
    per-channel vector repeated ``k`` times: the same bytes out, as stream.model.PackedGroupNorm does in
    bf16. 8 channels at 512x512 took 3.88 ms, seen as 32 0.36; 16 at 256x256 1.02 and 0.17 (``amx``
    machine, ``python bench/norms.py``; the same limited to AVX2)."""
    k = pack_factor(y.shape[1], PACK_LANES)
    if can_pack(y, k):
        out = torch.ops.quantized.batch_norm2d(pack(y, k), weight.repeat(k), bias.repeat(k), mean.repeat(k),
                                               var.repeat(k), 0.0, scale, zero_point)
        return unpack(out, y.shape[1])
    return torch.ops.quantized.batch_norm2d(y, weight, bias, mean, var, 0.0, scale, zero_point)


class _QNorm:
    """An equalized :class:`_QConv`, then GroupNorm(1 group) + affine (or the affine alone, for a
    :class:`~stream.model.ChannelAffine`), optionally + LeakyReLU.

    Calibrated ranges hold for pictures like the calibration photos. For one that is not (a flat grey
    sky: dividing by its small deviation amplifies faint texture past every range), this frame's ranges
    are widened where more than :data:`SATURATED_FRACTION` of the sampled values would be clipped: the
    convolution runs again with its range doubled (at most :data:`MAX_WIDENINGS` times), and the norm's
    output takes this frame's sampled range. The usual frame costs two reductions over the sample and a
    few operations on one number per channel.
    """

    def __init__(self, gn: nn.GroupNorm | ChannelAffine, conv: _QConv, norm_range: tuple[torch.Tensor, torch.Tensor],
                 lrelu_range: tuple[torch.Tensor, torch.Tensor] | None, out_gain: torch.Tensor | None = None):
        self.conv = conv
        self.statistics = not isinstance(gn, ChannelAffine)  # else the mean is 0 and the variance 1
        self.center, self.gain = conv.center.view(1, -1, 1, 1), conv.gain
        lo, hi = norm_range
        if lrelu_range is not None:  # divide each channel by its calibrated size; the next conv multiplies back
            self.out_gain = _size(lo, hi)
            self.lrelu: tuple[float, int] | None = _gain_qparams(*lrelu_range, self.out_gain)
        else:  # a residual stream's gain, shared by every tensor added to it (see _QResBlock)
            self.out_gain = out_gain if out_gain is not None else torch.ones_like(hi)
            self.lrelu = None
        self.weight = gn.weight.detach().float() / self.out_gain
        self.bias = gn.bias.detach().float() / self.out_gain
        self.scale, self.zero_point = _gain_qparams(lo, hi, self.out_gain)
        # for the check on each channel's extremes: sampled x (conv output units / gain) normalises to
        # x * weight / gain / std + (center - mean) * weight / std + bias
        self._weight_per_gain = self.weight / self.gain
        self._scale = conv.scale  # the convolution's output scale for the next frame (see _convolve)
        self._center_weight = conv.center * self.weight

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The layer on ``x``, the convolution's (padded) input."""
        y, raw, low, high = self._convolve(x)
        sample = raw / self.gain.view(1, -1, 1, 1) + self.center  # the convolution's own units
        if self.statistics:
            var_t, mean_t = torch.var_mean(sample, unbiased=False)
            mean, var = float(mean_t), float(var_t)
        else:
            mean, var = 0.0, 1.0 - GN_EPS
        (scale, zero_point), lrelu = self._out_params(sample, low, high, mean, var)
        out = _batch_norm(y, self.weight, self.bias, self.gain * (mean - self.center.view(-1)),
                          self.gain ** 2 * (var + GN_EPS), scale, zero_point)
        if lrelu is not None:
            out = torch.ops.quantized.leaky_relu(out, LEAKY_SLOPE, False, *lrelu)
        return out

    def reset(self) -> None:
        """The next frame starts from the calibrated range."""
        self._scale = self.conv.scale

    def _convolve(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The convolution's quint8 output, its sample (every :data:`STATS_STRIDE`-th row and column,
        dequantized) and each channel's sampled min and max; widened while it saturates.

        It starts from the scale the previous frame needed (a video's next frame most likely needs the
        same, and a second convolution costs what the first did), and narrows again, down to the
        calibrated scale, once a frame's sample fits a narrower one."""
        calibrated, zero_point = self.conv.scale, self.conv.zero_point
        scale = self._scale
        while True:
            y = self.conv(x, scale)
            raw = y[:, :, ::STATS_STRIDE, ::STATS_STRIDE].dequantize()
            low, high = raw.amin(dim=(0, 2, 3)), raw.amax(dim=(0, 2, 3))
            lo, hi = float(low.min()), float(high.max())
            lowest, highest = -zero_point * scale, (255 - zero_point) * scale
            if scale >= calibrated * 2 ** MAX_WIDENINGS or (lo > lowest and hi < highest):
                break
            saturated = (raw <= lowest + scale / 2) | (raw >= highest - scale / 2)
            if float(saturated.sum()) <= SATURATED_FRACTION * raw.numel():
                break
            scale *= 2
        # the next frame's: the narrowest of the calibrated scale times 1, 2, 4... (no wider than this
        # frame's) in which this frame's sample fits
        narrowest = calibrated
        while narrowest < scale and not (lo > -zero_point * narrowest and hi < (255 - zero_point) * narrowest):
            narrowest *= 2
        self._scale = narrowest
        return y, raw, low, high

    def _out_params(self, sample: torch.Tensor, low: torch.Tensor, high: torch.Tensor, mean: float,
                    var: float) -> tuple[tuple[float, int], tuple[float, int] | None]:
        """The output's quint8 parameters (the norm's, the LeakyReLU's) for this frame: the calibrated ones,
        or this frame's sampled range where more than :data:`SATURATED_FRACTION` of it falls outside them.
        ``low``, ``high``: each channel's sampled extremes, in the convolution's quint8 units."""
        lo_c, hi_c = -self.zero_point * self.scale, (255 - self.zero_point) * self.scale
        inv_std = (var + GN_EPS) ** -0.5
        offset = torch.add(self.bias, self._center_weight, alpha=inv_std).add_(self.weight, alpha=-mean * inv_std)
        slope = self._weight_per_gain * inv_std
        ends = torch.stack([torch.addcmul(offset, low, slope), torch.addcmul(offset, high, slope)])
        lo, hi = (float(v) for v in torch.aminmax(ends))  # the extremes of every channel, normalised
        if lo >= lo_c and hi <= hi_c:
            return (self.scale, self.zero_point), self.lrelu
        normed = ((sample - mean) * inv_std).mul_(self.weight.view(1, -1, 1, 1)).add_(self.bias.view(1, -1, 1, 1))
        if float(((normed < lo_c) | (normed > hi_c)).sum()) <= SATURATED_FRACTION * normed.numel():
            return (self.scale, self.zero_point), self.lrelu
        # ranges as _qparams takes them (before its margin): the calibrated one, widened to this frame's
        lo, hi = min(lo_c / RANGE_MARGIN, lo), max(hi_c / RANGE_MARGIN, hi)
        lrelu = None
        if self.lrelu is not None:
            l_scale, l_zero = self.lrelu
            lrelu = _qparams(min(lo * LEAKY_SLOPE, -l_zero * l_scale / RANGE_MARGIN),
                             max(hi, (255 - l_zero) * l_scale / RANGE_MARGIN))
        return _qparams(lo, hi), lrelu


class _QLayer:
    """ConvNormLReLU: reflection pad, INT8 conv, GroupNorm, LeakyReLU."""

    def __init__(self, layer: ConvNormLReLU, ranges: Ranges, in_gain: torch.Tensor | None = None,
                 extra_bias: torch.Tensor | None = None):
        pad, conv, gn, _ = layer
        self.pad = _pad_tuple(pad)
        self.conv = _QConv(conv, ranges[conv], in_gain=in_gain, extra_bias=extra_bias)
        self.norm = _QNorm(gn, self.conv, ranges[gn], ranges[layer])
        self.norms = (self.norm,)
        self.out_gain = self.norm.out_gain

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(_reflect_pad(x, self.pad))


class _QResBlock:
    """InvertedResBlock on a residual stream whose channels are divided by ``stream_gain`` (each channel's
    calibrated size over the whole chain of blocks): the block's input arrives so divided (its ``in_gain``),
    its last norm divides by the same gain, so the two add in the same units, and the next layer
    multiplies it back. One per-tensor scale then fits every channel of the stream (per-tensor, the
    blocks scored 24-26 dB from float on their own; the layers around them 28-35)."""

    def __init__(self, block: InvertedResBlock, ranges: Ranges, in_gain: torch.Tensor | None,
                 stream_gain: torch.Tensor):
        expand, depthwise, project, gn = block.layers
        self.expand = _QLayer(expand, ranges, in_gain)
        self.depthwise = _QLayer(depthwise, ranges, self.expand.out_gain)
        self.project = _QConv(project, ranges[project], in_gain=self.depthwise.out_gain)
        self.norm = _QNorm(gn, self.project, ranges[gn], None, out_gain=stream_gain)
        self.norms = (self.expand.norm, self.depthwise.norm, self.norm)
        self.out_gain = stream_gain
        self.residual = block.use_residual
        lo, hi = ranges[block]
        self.scale, self.zero_point = _gain_qparams(lo, hi, stream_gain)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.norm(self.depthwise(self.expand(x)))
        if self.residual:
            out = torch.ops.quantized.add(out, x, self.scale, self.zero_point)
        return out


class _FloatLayer:
    """A layer of the float model run in fp32 between INT8 ones (``float_layers`` of
    :class:`Int8Generator`): a quantized input is dequantized (times the previous layer's gain; the
    frame's bytes read exactly); the output, unless the next layer runs in float too (or this is the
    last), is divided by the gain the next layer expects and quantized to its calibrated range, as the
    INT8 layer it replaces would (a residual block's at the residual stream's gain). Where 8-bit
    rounding costs the most this buys back a part of INT8's loss for the time of one layer in fp32."""

    norms: tuple[_QNorm, ...] = ()

    def __init__(self, module: nn.Module, ranges: Ranges, in_gain: torch.Tensor | None,
                 stream_gain: torch.Tensor | None, *, first: bool, float_out: bool):
        self.module, self.in_gain, self.first, self.float_out = module, in_gain, first, float_out
        if float_out:  # the next layer (or the head) takes it as it is
            self.out_gain: torch.Tensor | None = None
            return
        if isinstance(module, InvertedResBlock):
            assert stream_gain is not None
            self.out_gain = stream_gain
        else:
            self.out_gain = _size(*ranges[module[2]])  # the norm's, as _QNorm divides by it
        self.scale, self.zero_point = _gain_qparams(*ranges[module], self.out_gain)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:  # the frame's bytes p, read as (p - 128) / 127.5: the model wants (p - 127.5) / 127.5
            x = x.dequantize().add_(0.5 * INPUT_SCALE)
        elif x.is_quantized:
            x = x.dequantize()
            if self.in_gain is not None:
                x = x.mul_(self.in_gain.view(1, -1, 1, 1))
        with torch.no_grad():  # as the quantized layers around it: no graph, whoever calls
            y = self.module(x)
        if self.float_out:
            return y
        y = (y / self.out_gain.view(1, -1, 1, 1)).contiguous(memory_format=torch.channels_last)
        return torch.quantize_per_tensor(y, self.scale, self.zero_point, torch.quint8)


def _stream_gain(model: Generator, ranges: Ranges) -> torch.Tensor | None:
    """Each channel's calibrated size (max |value|) on the residual stream of ``model``'s inverted
    residual blocks: every block's output and every tensor added to it (None without blocks)."""
    blocks = [m for m in model.block_c if isinstance(m, InvertedResBlock)]
    if not blocks:
        return None
    sizes = [torch.maximum(hi, -lo) for b in blocks for lo, hi in (ranges[b], ranges[b.layers[3]])]
    return torch.stack(sizes).amax(dim=0).clamp_min(1e-6)


def int8_refusal(model: Generator) -> str | None:
    """Why ``model`` has no INT8 path, in words, or None when it has one. The path folds each norm into
    one mean and variance per picture (single-group GroupNorm, ``norm="layer"``, or none at all:
    ``"affine"``); per-channel norms have none. Calibration and :class:`Int8Generator` both ask this."""
    if model.norm not in ("layer", "affine"):
        return f"a style with per-channel ({model.norm}) norms has no INT8 path (it needs single-group norms or none)"
    if model.unet:
        return "a style with encoder-to-decoder skips (unet) has no INT8 path yet"
    return None


class Int8Generator(nn.Module):
    """A :class:`stream.model.Generator` with INT8 convolutions; see the module docstring. It carries each
    layer's ranges from one frame to the next: call it from one thread at a time."""

    def __init__(self, model: Generator, ranges: Ranges, float_layers: Collection[nn.Module] = ()):
        super().__init__()
        refusal = int8_refusal(model)
        if refusal:
            raise ValueError(refusal)
        layers = list(int8_layers(model).values())
        float_layers = set(float_layers)
        if not float_layers <= set(layers):
            raise ValueError("float_layers must be layers of the model's blocks a to e")
        torch.backends.quantized.engine = "onednn"
        # PyTorch 2.13 marks its quantized tensors deprecated (like torch.jit); they still carry this path.
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel",
                                category=UserWarning)
        first = model.block_a[0]
        # The input's bytes are read as (p - 128) / 127.5, half a level below the true (p - 127.5) / 127.5.
        shift = first[1].weight.detach().float().sum(dim=(1, 2, 3)) * (0.5 * INPUT_SCALE)
        gain: torch.Tensor | None = None

        stream_gain = _stream_gain(model, ranges)

        def build(module: nn.Module, extra_bias: torch.Tensor | None = None) -> _QLayer | _QResBlock | _FloatLayer:
            nonlocal gain
            if module in float_layers:
                after = layers.index(module) + 1
                layer: _QLayer | _QResBlock | _FloatLayer = _FloatLayer(
                    module, ranges, gain, stream_gain, first=module is first,
                    float_out=after == len(layers) or layers[after] in float_layers)
            elif isinstance(module, InvertedResBlock):
                layer = _QResBlock(module, ranges, gain, stream_gain)
            else:
                layer = _QLayer(module, ranges, gain, extra_bias)
            gain = layer.out_gain
            return layer

        self.block_a = [build(first, shift)] + [build(m) for m in model.block_a[1:]]
        self.block_b = [build(m) for m in model.block_b]
        self.block_c = [build(m) for m in model.block_c]
        self.block_d = [build(m) for m in model.block_d]
        self.block_e = [build(m) for m in model.block_e]
        # The last convolution runs in float: quantizing its output to 8 bits before tanh left steps of up
        # to ~3 output levels, which shimmer from frame to frame. It is 1x1 and 3 channels wide: cheap.
        out_w = model.out_layer[0].weight.detach().float()
        self.out_weight = out_w * gain.view(1, -1, 1, 1) if gain is not None else out_w
        self.grade = model.photo_grade  # the photo's colour grade and the guided filter run in float
        self.guided_radius, self.guided_eps = model.guided_radius, model.guided_eps
        self.asymmetric = model.upsample == "asymmetric"

    def reset(self) -> None:
        """Forget the ranges earlier frames needed: the next frame starts from the calibrated ones, as the
        first did (an unrelated picture or stream follows)."""
        for norm in self.norms():
            norm.reset()

    def norms(self) -> list[_QNorm]:
        """Every layer's convolution and norm (:class:`_QNorm`), in order."""
        layers = self.block_a + self.block_b + self.block_c + self.block_d + self.block_e
        return [norm for layer in layers for norm in layer.norms]

    def forward_uint8(self, frame: torch.Tensor) -> torch.Tensor:
        """Stylise ``frame``, 1 x 3 x H x W uint8 RGB (channels-last strides are fastest): fp32 in [-1, 1]."""
        x = torch._make_per_tensor_quantized_tensor(frame.contiguous(memory_format=torch.channels_last),
                                                    INPUT_SCALE, INPUT_ZERO_POINT)
        out = x
        for layer in self.block_a:
            out = layer(out)
        half_size = out.shape[-2:]
        for layer in self.block_b + self.block_c:
            out = layer(out)
        out = _resize(out, [half_size[0], half_size[1]], self.asymmetric)
        for layer in self.block_d:
            out = layer(out)
        out = _resize(out, [frame.shape[-2], frame.shape[-1]], self.asymmetric)
        for layer in self.block_e:
            out = layer(out)
        result = torch.tanh(F.conv2d(out.dequantize() if out.is_quantized else out, self.out_weight))
        photo = frame.float() / 127.5 - 1
        if self.grade is not None:
            result = torch.clamp(result + self.grade(torch.cat([photo, photo * photo], dim=1)), -1.0, 1.0)
        if self.guided_radius > 0:
            result = torch.clamp(guided_filter(photo, result, self.guided_radius, self.guided_eps), -1.0, 1.0)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Same contract as the float generator: RGB NCHW in [-1, 1] -> RGB NCHW in [-1, 1]."""
        frame = ((x.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
        return self.forward_uint8(frame)
