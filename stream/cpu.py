"""What this CPU can do for the model: its class, as PyTorch's kernels will see it.

A class names the instructions that decide which model path is fastest here (:mod:`stream.policy` maps
each class to a path). On x86-64, from the lowest:

==============  ==========================================================================================
``baseline``    no AVX2 (SSE4, AVX): fp32 only
``avx2``        AVX2 + FMA: most laptops before 2023, many cloud VMs (AMD Zen 2, Intel up to 11th gen)
``avx2-vnni``   AVX2 with AVX-VNNI 8-bit dot products (Intel 12th gen and later)
``avx512``      AVX-512 without VNNI (Skylake-SP)
``avx512-vnni`` AVX-512 with VNNI (Cascade Lake, Ice Lake, AMD Zen 4 without BF16 exposed)
``avx512-bf16`` AVX-512 with VNNI and BF16 (Cooper Lake, AMD Zen 4 and 5)
``amx``         AMX tiles for INT8 and BF16 (Sapphire Rapids and later)
==============  ==========================================================================================

and on 64-bit Arm ``arm64`` (NEON) or ``arm64-bf16`` (with BF16 dot products; I8MM is reported beside it).

The class honours the limits that make PyTorch's kernels behave as on a lesser CPU, so that one
machine can run, test and measure another class: ``ONEDNN_MAX_CPU_ISA`` (oneDNN's convolutions and
INT8) and ``ATEN_CPU_CAPABILITY`` (PyTorch's own vectorised kernels); and :data:`OVERRIDE_ENV`, our own,
which sets the class outright (it changes only our choice of path, not the kernels: pair it with the
two variables to measure a class). Both PyTorch variables are read by PyTorch once, when it starts
using them: set them before the process starts.
"""
from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

OVERRIDE_ENV = "ANIMESTREAM_CPU_CLASS"
X86_CLASSES = ("baseline", "avx2", "avx2-vnni", "avx512", "avx512-vnni", "avx512-bf16", "amx")  # lowest first
ARM_CLASSES = ("arm64", "arm64-bf16")
CLASSES = X86_CLASSES + ARM_CLASSES

# /proc/cpuinfo flags each x86 class needs (on top of the class below it, which it also needs).
_X86_FLAGS = {
    "baseline": (),
    "avx2": ("avx2", "fma"),
    "avx2-vnni": ("avx_vnni",),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "avx512-vnni": ("avx512_vnni",),
    "avx512-bf16": ("avx512_bf16",),
    "amx": ("amx_int8", "amx_bf16", "amx_tile"),
}
# What a class needs below it: avx512 does not need AVX-VNNI (Zen 4 has AVX512-VNNI but not the VEX form).
_X86_BASE = {"avx2": "baseline", "avx2-vnni": "avx2", "avx512": "avx2", "avx512-vnni": "avx512",
             "avx512-bf16": "avx512-vnni", "amx": "avx512-bf16"}
# The highest class each ONEDNN_MAX_CPU_ISA value allows (oneDNN orders its ISAs in one line, as we do).
_ONEDNN_LIMITS = {
    "SSE41": "baseline", "AVX": "baseline", "AVX2": "avx2", "AVX2_VNNI": "avx2-vnni", "AVX2_VNNI_2": "avx2-vnni",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512-vnni", "AVX512_CORE_BF16": "avx512-bf16",
    "AVX512_CORE_FP16": "avx512-bf16", "AVX10_1_512": "avx512-bf16", "AVX512_CORE_AMX": "amx",
    "AVX10_1_512_AMX": "amx", "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX_FP16": "amx", "ALL": "amx",
    "DEFAULT": "amx",
}
# ATen's capability levels: "default" is its plain build, "avx2" keeps AVX-VNNI (oneDNN's business, not ATen's).
_ATEN_LIMITS = {"default": "baseline", "avx2": "avx2-vnni", "avx512": "amx"}


@dataclass(frozen=True)
class CpuClass:
    """The class this process's kernels run as (``name``, one of :data:`CLASSES`), the hardware's own
    class, and the limits that lowered it (``"ONEDNN_MAX_CPU_ISA=AVX2"``, ...; empty where none did)."""

    name: str
    hardware: str
    limits: tuple[str, ...] = ()
    model: str = ""  # the CPU's model name, for reports

    @property
    def emulated(self) -> bool:
        """True when the limits make this CPU run as a lower class than it is."""
        return self.name != self.hardware

    @property
    def has_vnni(self) -> bool:
        """8-bit dot products (VNNI or AMX): INT8 convolutions at about twice the fp32 rate."""
        return self.name in ("avx2-vnni", "avx512-vnni", "avx512-bf16", "amx")

    @property
    def has_bf16(self) -> bool:
        """Native bf16 arithmetic (AVX512-BF16, AMX, Arm BF16)."""
        return self.name in ("avx512-bf16", "amx", "arm64-bf16")

    def describe(self) -> str:
        """One line: ``avx2 (an avx512-bf16 CPU limited by ONEDNN_MAX_CPU_ISA=AVX2)``."""
        if not self.limits:
            return self.name
        what = "limited" if self.emulated else "with limits that do not lower it"
        return f"{self.name} (an {self.hardware} CPU {what}: {', '.join(self.limits)})"


def _x86_has(cls: str, flags: set[str]) -> bool:
    while cls != "baseline":
        if not all(f in flags for f in _X86_FLAGS[cls]):
            return False
        cls = _X86_BASE[cls]
    return True


def _rank(cls: str) -> int:
    return X86_CLASSES.index(cls)


def classify(cpuinfo: str, machine: str, env: dict[str, str] | os._Environ) -> CpuClass:
    """The class of a CPU described by ``cpuinfo`` (the text of /proc/cpuinfo) on ``machine``
    (``platform.machine()``), under the variables of ``env``. Pure: tests pass what they need."""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.lower().startswith(("model name", "cpu model"))), "")
    flag_line = next((line.split(":", 1)[1] for line in cpuinfo.splitlines()
                      if line.lower().startswith(("flags", "features"))), "")
    flags = set(flag_line.split())
    if machine.lower() in ("aarch64", "arm64"):
        hardware = "arm64-bf16" if "bf16" in flags else "arm64"
        name, limits = hardware, []
    else:
        hardware = next(c for c in reversed(X86_CLASSES) if _x86_has(c, flags))
        limit, limits = "amx", []
        onednn = env.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
        if onednn in _ONEDNN_LIMITS:
            limits.append(f"ONEDNN_MAX_CPU_ISA={onednn}")
            limit = min(limit, _ONEDNN_LIMITS[onednn], key=_rank)
        aten = env.get("ATEN_CPU_CAPABILITY", "").strip().lower()
        if aten in _ATEN_LIMITS:
            limits.append(f"ATEN_CPU_CAPABILITY={aten}")
            limit = min(limit, _ATEN_LIMITS[aten], key=_rank)
        name = next(c for c in reversed(X86_CLASSES) if _rank(c) <= _rank(limit) and _x86_has(c, flags))
    override = env.get(OVERRIDE_ENV, "").strip().lower()
    if override:
        if override not in CLASSES:
            from .errors import AnimestreamError

            raise AnimestreamError(f"{OVERRIDE_ENV}={override}: not a CPU class; one of {', '.join(CLASSES)}")
        limits.append(f"{OVERRIDE_ENV}={override}")
        name = override
    return CpuClass(name=name, hardware=hardware, limits=tuple(limits), model=model)


@functools.cache
def current() -> CpuClass:
    """This process's :class:`CpuClass` (read once: the variables only take effect at start-up anyway)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the architecture alone (macOS on Apple silicon has BF16 from M2 on: unmeasured)
        text = ""
        if platform.machine().lower() in ("x86_64", "amd64"):
            text = "flags\t: avx2 fma"  # every x86-64 Mac and Windows PC PyTorch supports in practice
    return classify(text, platform.machine(), os.environ)
