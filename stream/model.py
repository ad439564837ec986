"""The AnimeGANv2 generator.

Tensor names and shapes match the public PyTorch checkpoints (bryandlee/animegan2-pytorch), so
``Generator().load_state_dict(torch.load(path), strict=True)`` works on them.

Input and output are RGB, NCHW, float in [-1, 1]. Every normalisation is a single-group GroupNorm
(``norm="layer"``: one mean and variance per picture, over all channels and pixels), so results do not
depend on the batch size. ``norm="instance"`` normalises each channel over the picture instead
(``GroupNorm(C, C)``, what CartoonGAN's instance norm does), with the same parameters and state_dict keys:
for students of teachers built that way, whose output hangs on each channel's statistics over the whole
picture. ``norm="affine"`` has no statistics at all, only the per-channel scale and shift (same keys
again): for teachers without normalisation (White-box Cartoonization's network), whose output at a
pixel hangs on its neighbourhood alone, so a tile is painted exactly as that region of the whole picture
(:func:`stream.fold.folded` starts one from a single-group style). The single-group and the affine
norms have an INT8 path (:mod:`stream.quant`), the per-channel one has not. ``width`` and ``blocks``
shrink the network for the ``-lite`` styles; the defaults are the official architecture (2,143,552
parameters).

``skip=True`` is for styles that stay close to the photo (AnimeGANv3 Hayao and Shinkai keep most of
it), which a plain generator has to learn to redraw from scratch before it can learn the style: the
output becomes ``clamp(photo_grade(x) + tanh(last conv), -1, 1)``, where ``photo_grade`` is a
per-pixel quadratic colour transform of the input (a 1x1 convolution of ``[x, x*x]``, 21 parameters)
and the last convolution starts at zero, so an untrained network returns the photo. The grade
carries the full-resolution photo past the generator's 4x bottleneck, where a global colour shift
would otherwise blur.

``guided_radius`` > 0 ends the network with He et al.'s guided filter, as White-box Cartoonization
does: the output is redrawn as a local affine function of the photo (per channel, over windows of
``2 * guided_radius + 1`` pixels, regularised by ``guided_eps``), so edges and fine texture come from
the photo itself and the network only has to get flat regions and their colours right.

``unet=True`` adds encoder-to-decoder skips, as a U-Net (and AnimeGANv3's generator) has them: the
full-resolution features after ``block_a``'s first layer, through a 1x1 convolution (``from_full``), are
added to the input of ``block_e``'s second layer, and ``block_a``'s half-resolution output (through
``from_half``) to that of ``block_d``'s second layer, so the decoder paints fine detail from features
that never went down to a quarter of the picture. Both convolutions start at zero, so a network started
from a style's weights starts as that style. No INT8 path yet.

``upsample`` is how the two 2x upsamplings map output pixels onto the input: ``"align_corners"``
(the PyTorch ports' ``align_corners=True``) or ``"asymmetric"`` (TensorFlow 1's legacy
``resize_bilinear``, source = destination x in/out, what the official AnimeGANv2 graphs use).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
UPSAMPLING = ("align_corners", "asymmetric")
NORMS = ("layer", "instance", "affine")  # GroupNorm(1, C), GroupNorm(C, C), or ChannelAffine(C)
UNET_KEYS = ("from_full.weight", "from_half.weight")  # a unet=True generator's skips, which start at zero


class ChannelAffine(nn.Module):
    """``x * weight + bias`` per channel (NCHW): a norm's affine without its statistics, so the output
    at a pixel depends on its neighbourhood only. Parameters named as ``nn.GroupNorm``'s."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


def norm_layer(channels: int, norm: str = "layer") -> nn.Module:
    """The generator's normalisation of ``channels`` channels: one group (``"layer"``), one per channel
    (``"instance"``), or none (``"affine"``), with a per-channel affine every time."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {norm!r}")
    if norm == "affine":
        return ChannelAffine(channels)
    return nn.GroupNorm(1 if norm == "layer" else channels, channels, affine=True)


def _folded_conv(conv: nn.Conv2d, affine: ChannelAffine) -> nn.Conv2d:
    """``conv`` followed by ``affine`` as one convolution with a bias."""
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, bias=True).to(conv.weight.device, conv.weight.dtype)
    with torch.no_grad():
        out.weight.copy_(conv.weight * affine.weight.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(affine.bias)
        out.bias.copy_(bias * affine.weight + affine.bias)
    return out


def with_folded_affines(model: nn.Module) -> nn.Module:
    """Fold every :class:`ChannelAffine` into the convolution before it (in place): the same function
    within float rounding, one pass over each layer's output fewer (the norm-free ``cartoon`` at 512x384
    on 2 ``avx512-bf16`` cores, ``bench/affine.py``: bf16 132.8 -> 119.0 ms; in fp32 the difference is
    within run-to-run noise). For inference only: the folded network no longer has a norm's parameters
    to train or save."""
    for child in model.children():
        seq = child.layers if isinstance(child, InvertedResBlock) else child
        if isinstance(seq, nn.Sequential):
            for i in range(1, len(seq)):
                if isinstance(seq[i], ChannelAffine) and isinstance(seq[i - 1], nn.Conv2d):
                    seq[i - 1], seq[i] = _folded_conv(seq[i - 1], seq[i]), nn.Identity()
        with_folded_affines(child)
    return model


def resize_asymmetric(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Bilinear resize with TensorFlow 1's legacy mapping: output pixel ``j`` samples the input at
    ``j * in / out`` (clamped at the last pixel). That is ``align_corners=True`` on the input with
    its last row and column repeated once, to one more pixel than asked, minus that last pixel."""
    padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
    out = F.interpolate(padded, size=[size[0] + 1, size[1] + 1], mode="bilinear", align_corners=True)
    return out[:, :, : size[0], : size[1]]


def _box_sum(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Sums over (2 * radius + 1)^2 windows (zero outside the picture), channel by channel: a depthwise
    convolution in channels-last, several times faster here than ``avg_pool2d``."""
    k = 2 * radius + 1
    ones = torch.ones(x.shape[1], 1, k, k, dtype=x.dtype, device=x.device)
    return F.conv2d(x.contiguous(memory_format=torch.channels_last), ones, padding=radius, groups=x.shape[1])


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s guided filter of ``src`` by ``guide`` (both N x C x H x W, channel by channel; windows
    of ``2 * radius + 1`` pixels, cut at the picture's edges), in fp32 whatever their dtype
    (``E[x^2] - E[x]^2`` needs it), returned in ``src``'s dtype."""
    x, y = guide.float(), src.float()
    count = _box_sum(torch.ones_like(x[:, :1]), radius)
    means = _box_sum(torch.cat([x, y, x * x, x * y], dim=1), radius) / count
    mean_x, mean_y, mean_xx, mean_xy = means.chunk(4, dim=1)
    a = (mean_xy - mean_x * mean_y) / (mean_xx - mean_x * mean_x + eps)
    b = mean_y - a * mean_x
    mean_a, mean_b = (_box_sum(torch.cat([a, b], dim=1), radius) / count).chunk(2, dim=1)
    return (mean_a * x + mean_b).to(src.dtype)


class GroupNorm1(nn.Module):
    """``nn.GroupNorm(1, C)`` computed as one parallel reduction: ``var_mean`` over (C, H, W), then the
    per-channel affine. Same parameters (``weight``, ``bias``) and state_dict keys, same result within
    float rounding.

    For CUDA: PyTorch computes a single group's statistics in one thread block, so one of a GPU's
    many multiprocessors did the work (95% of the GPU time, ``../shared/gpu/README.md``). On the CPU
    ``nn.GroupNorm`` is 10-50x faster than this, so the CPU keeps it.
    """

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        if norm.num_groups != 1 or not norm.affine:
            raise ValueError("GroupNorm1 replaces affine single-group GroupNorm layers only")
        self.weight, self.bias, self.eps = norm.weight, norm.bias, float(norm.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
        shape = [1, -1, 1, 1]
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight.view(shape) + self.bias.view(shape)


def with_parallel_group_norm(model: nn.Module) -> nn.Module:
    """Replace every single-group ``nn.GroupNorm`` in ``model`` with :class:`GroupNorm1` (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.GroupNorm) and child.num_groups == 1 and child.affine:
            setattr(model, name, GroupNorm1(child))
        else:
            with_parallel_group_norm(child)
    return model


PACK_LANES = 32  # channels a per-channel CPU kernel wants a multiple of (bf16 and quantized GroupNorm)


def pack_factor(channels: int, lanes: int = PACK_LANES) -> int:
    """How many neighbouring pixels to set side by side so that ``channels`` become a multiple of
    ``lanes`` (1: already one)."""
    return lanes // math.gcd(channels, lanes)


def can_pack(x: torch.Tensor, k: int) -> bool:
    """Whether :func:`pack` applies: ``k`` > 1, a width that ``k`` divides, channels-last memory."""
    return k > 1 and x.shape[3] % k == 0 and x.is_contiguous(memory_format=torch.channels_last)


def pack(x: torch.Tensor, k: int) -> torch.Tensor:
    """The channels-last ``N x C x H x W`` ``x``'s memory seen as ``N x C*k x H x W/k`` (``k`` neighbouring
    pixels side by side), no copy."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h, w // k, c * k).permute(0, 3, 1, 2)


def unpack(x: torch.Tensor, channels: int) -> torch.Tensor:
    """:func:`pack` undone: back to ``channels`` channels, channels-last."""
    n, ck, h, wk = x.shape
    return x.permute(0, 2, 3, 1).reshape(n, h, wk * ck // channels, channels).permute(0, 3, 1, 2)


class PackedGroupNorm(nn.Module):
    """``nn.GroupNorm(1, C)`` of a channels-last tensor with few channels, computed on the same memory seen
    as ``pack`` times the channels at ``1 / pack`` of the width (``N x C*pack x H x W/pack``: ``pack``
    neighbouring pixels side by side), with the affine repeated to match. A single group's statistics are
    over all of (C, H, W) either way, so the result is the same within float rounding; the same parameters
    and state_dict keys as the norm it replaces.

    For the CPU in bf16: PyTorch's channels-last GroupNorm vectorises over the channels, and with a
    count that is not a multiple of its vector (8 channels, the first and last layers of a quarter-width
    generator) it took 9.29 ms for a 512x512 map on the ``amx`` machine, against 0.69 ms seen as 32
    channels (8.40 and 0.66 under the AVX2 limit; ``python bench/norms.py``). Any other input (contiguous memory, a width not a multiple of ``pack``) takes the plain norm.
    """

    def __init__(self, norm: nn.GroupNorm, pack: int):
        super().__init__()
        if norm.num_groups != 1 or not norm.affine or pack < 1:
            raise ValueError("PackedGroupNorm replaces affine single-group GroupNorm layers only, pack >= 1")
        self.weight, self.bias, self.eps, self.pack = norm.weight, norm.bias, float(norm.eps), int(pack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.pack
        if not can_pack(x, k):
            return F.group_norm(x, 1, self.weight, self.bias, self.eps)
        out = F.group_norm(pack(x, k), 1, self.weight.repeat(k), self.bias.repeat(k), self.eps)
        return unpack(out, x.shape[1])


def with_packed_group_norm(model: nn.Module, lanes: int = PACK_LANES) -> nn.Module:
    """Replace (in place) every single-group ``nn.GroupNorm`` whose channels are not a multiple of
    ``lanes`` with a :class:`PackedGroupNorm` that sees the least multiple of ``lanes`` it can (8 channels
    as 32, 12 as 96, 24 as 96, 48 as 96). bf16 on the ``amx`` machine (``python bench/norms.py``), ms:
    8 channels at 512x512 9.29 -> 0.69, 12 at 512x512 12.34 -> 0.84, 24 at 256x256 1.90 -> 0.51."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.GroupNorm) and child.num_groups == 1 and child.affine:
            k = pack_factor(child.num_channels, lanes)
            if k > 1:
                setattr(model, name, PackedGroupNorm(child, k))
        else:
            with_packed_group_norm(child, lanes)
    return model


class ConvNormLReLU(nn.Sequential):
    """pad -> conv -> GroupNorm (:func:`norm_layer`) -> LeakyReLU(0.2): keys ``1.weight``, ``2.weight``,
    ``2.bias``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | tuple[int, int, int, int] = 1, groups: int = 1, bias: bool = False,
                 norm: str = "layer"):
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            norm_layer(out_ch, norm),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1x1 expand, 3x3 depthwise (with bias), 1x1 project, residual if in == out."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 2, norm: str = "layer"):
        super().__init__()
        self.use_residual = in_ch == out_ch
        hidden = in_ch * expansion
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, hidden, kernel_size=1, padding=0, norm=norm),
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True, norm=norm),
            nn.Conv2d(hidden, out_ch, kernel_size=1, bias=False),
            norm_layer(out_ch, norm),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        if self.use_residual:
            out = out + x
        return out


class Generator(nn.Module):
    """AnimeGANv2 generator; ``width`` scales every channel count, ``blocks`` is the inverted-residual count,
    ``norm`` the normalisation (:data:`NORMS`), ``unet`` adds the encoder-to-decoder skips."""

    def __init__(self, width: float = 1.0, blocks: int = 4, skip: bool = False, upsample: str = "align_corners",
                 guided_radius: int = 0, guided_eps: float = 0.0, norm: str = "layer", unet: bool = False):
        super().__init__()
        if upsample not in UPSAMPLING:
            raise ValueError(f"upsample must be one of {', '.join(UPSAMPLING)}, not {upsample!r}")
        self.norm = norm  # checked by norm_layer, which builds every norm below
        if guided_radius < 0 or (guided_radius and not guided_eps > 0):
            raise ValueError(f"a guided filter needs radius >= 0 and eps > 0, not {guided_radius}, {guided_eps}")
        self.guided_radius = int(guided_radius)
        self.guided_eps = float(guided_eps)
        c32, c64, c128, c256 = (max(8, int(round(c * width))) for c in (32, 64, 128, 256))
        self.width = width
        self.blocks = blocks
        self.skip = skip
        self.upsample = upsample
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, c32, kernel_size=7, padding=3, norm=norm),
            ConvNormLReLU(c32, c64, stride=2, padding=(0, 1, 0, 1), norm=norm),
            ConvNormLReLU(c64, c64, norm=norm),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(c64, c128, stride=2, padding=(0, 1, 0, 1), norm=norm),
            ConvNormLReLU(c128, c128, norm=norm),
        )
        res = [InvertedResBlock(c128 if i == 0 else c256, c256, 2, norm) for i in range(blocks)]
        self.block_c = nn.Sequential(
            ConvNormLReLU(c128, c128, norm=norm),
            *res,
            ConvNormLReLU(c256 if blocks else c128, c128, norm=norm),
        )
        self.block_d = nn.Sequential(ConvNormLReLU(c128, c128, norm=norm), ConvNormLReLU(c128, c128, norm=norm))
        self.block_e = nn.Sequential(
            ConvNormLReLU(c128, c64, norm=norm),
            ConvNormLReLU(c64, c64, norm=norm),
            ConvNormLReLU(c64, c32, kernel_size=7, padding=3, norm=norm),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(c32, 3, kernel_size=1, bias=False), nn.Tanh())
        self.photo_grade: nn.Conv2d | None = nn.Conv2d(6, 3, kernel_size=1, bias=True) if skip else None
        self.unet = unet
        self.from_full: nn.Conv2d | None = nn.Conv2d(c32, c64, kernel_size=1, bias=False) if unet else None
        self.from_half: nn.Conv2d | None = nn.Conv2d(c64, c128, kernel_size=1, bias=False) if unet else None
        for conv in (self.from_full, self.from_half):
            if conv is not None:
                nn.init.zeros_(conv.weight)
        if skip:
            self.start_from_photo()

    @classmethod
    def from_architecture(cls, arch: dict) -> "Generator":
        """A generator of :meth:`architecture`'s form (keys left out take their defaults)."""
        guided = arch.get("guided_filter") or {}
        return cls(float(arch.get("width", 1.0)), int(arch.get("blocks", 4)), bool(arch.get("skip", False)),
                   str(arch.get("upsample", "align_corners")), int(guided.get("radius", 0)),
                   float(guided.get("eps", 0.0)), str(arch.get("norm", "layer")), bool(arch.get("unet", False)))

    def architecture(self) -> dict:
        """What builds this network again (:meth:`from_architecture`): a sidecar's ``architecture``."""
        arch = {"width": self.width, "blocks": self.blocks, "skip": self.skip, "upsample": self.upsample}
        if self.guided_radius:
            arch["guided_filter"] = {"radius": self.guided_radius, "eps": self.guided_eps}
        if self.norm != "layer":
            arch["norm"] = self.norm
        if self.unet:
            arch["unet"] = True
        return arch

    def start_from_photo(self) -> None:
        """Zero the last convolution and make ``photo_grade`` the identity: the output is then the input."""
        with torch.no_grad():
            self.out_layer[0].weight.zero_()
            self.start_grade_as_identity()

    def start_grade_as_identity(self) -> None:
        """Set ``photo_grade`` to the identity colour transform (``skip`` models only)."""
        grade = self.photo_grade
        if grade is None:
            raise ValueError("only a Generator(skip=True) has a photo_grade")
        with torch.no_grad():
            grade.weight.zero_()
            grade.bias.zero_()
            for c in range(3):
                grade.weight[c, c] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Two paths on purpose: only the unet one keeps block_a's full-size features alive through the
        # decoder (32 channels at full size: ~265 MB for a 1080p frame in fp32), so the plain one stays as lean.
        if self.from_full is not None and self.from_half is not None:
            full = self.block_a[0](x)
            half = self.block_a[2](self.block_a[1](full))
            out = self._resize(self.block_c(self.block_b(half)), [half.shape[-2], half.shape[-1]])
            out = self.block_d[1](self.block_d[0](out) + self.from_half(half))
            out = self._resize(out, [x.shape[-2], x.shape[-1]])
            out = self.block_e[0](out) + self.from_full(full)
            return self.head(self.block_e[2](self.block_e[1](out)), x)
        out = self.block_a(x)
        half_size = out.shape[-2:]
        out = self.block_c(self.block_b(out))
        out = self._resize(out, [half_size[0], half_size[1]])
        out = self.block_d(out)
        out = self._resize(out, [x.shape[-2], x.shape[-1]])
        return self.head(self.block_e(out), x)

    def _resize(self, x: torch.Tensor, size: list[int]) -> torch.Tensor:
        if self.upsample == "asymmetric":
            return resize_asymmetric(x, size)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)

    def head(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output from ``block_e``'s features and the input ``x`` (which ``skip`` and the guided
        filter use)."""
        return self.finish(self.out_layer(features), x)

    def finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The output from the last layer's ``out`` (after tanh) and the input ``x``: the photo's colour
        grade added (``skip``), then the guided filter (``guided_radius``)."""
        if self.photo_grade is not None:
            out = torch.clamp(out + self.photo_grade(torch.cat([x, x * x], dim=1)), -1.0, 1.0)
        if self.guided_radius > 0:
            out = torch.clamp(guided_filter(x, out, self.guided_radius, self.guided_eps), -1.0, 1.0)
        return out
