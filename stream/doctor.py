"""``animestream doctor``: what this machine is to animestream, and which path each style takes here.

    animestream doctor [--style NAME] [--device auto|cpu|cuda] [--json]

Prints the CPU class (:mod:`stream.cpu`, with any limit that lowers it), PyTorch's own view of the
CPU, the policy row in force (:mod:`stream.policy`), the device, whether ``--preview`` can open a
window here, and per style the backend and precision ``--precision auto`` picks and why. ``--json``
prints the same as one JSON object.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from . import cpu, policy, weights
from ._xcb import display_error
from .engine import DEFAULT_MAX_SIDE, DEVICES, resolve_device
from .errors import EXIT_ERROR, AnimestreamError


def report(styles: list[weights.Style], device: torch.device) -> dict:
    """Everything ``doctor`` prints, as a dict (tests read it)."""
    here = cpu.current()
    row = policy.POLICY[here.name]
    rows = []
    for style in styles:
        try:
            choice = policy.choose(style, device, "auto", here, style.recommended_max_side or DEFAULT_MAX_SIDE)
        except AnimestreamError as e:  # a style that cannot run here at all, said as its reason
            rows.append({"style": style.name, "backend": None, "precision": None, "network": None, "why": [str(e)]})
            continue
        rows.append({"style": style.name, "backend": choice.backend, "precision": choice.precision,
                     "network": choice.variant.name if choice.variant else style.name, "why": list(choice.why)})
    return {
        "cpu": {"class": here.name, "hardware": here.hardware, "limits": list(here.limits), "model": here.model,
                "emulated": here.emulated, "torch_capability": torch.backends.cpu.get_cpu_capability(),
                "threads": torch.get_num_threads()},
        "policy": {"auto": list(row.auto), "channels_last": row.channels_last, "measured": row.measured},
        "device": str(device), "torch": torch.__version__,
        "preview": display_error(),  # None: a window can open (or the toolkit decides); else why not
        "styles": rows,
    }


def _print(rep: dict) -> None:
    c = rep["cpu"]
    print(f"CPU      {c['model'] or 'unknown model'}: class {c['class']}"
          + (f" (an {c['hardware']} CPU limited by {', '.join(c['limits'])})" if c["emulated"] else "")
          + (f" (with {', '.join(c['limits'])})" if c["limits"] and not c["emulated"] else ""))
    print(f"PyTorch  {rep['torch']}, kernels {c['torch_capability']}, {c['threads']} threads")
    p = rep["policy"]
    print(f"Policy   auto tries {' > '.join(p['auto'])} on the CPU, "
          f"{'channels-last' if p['channels_last'] else 'contiguous'} float tensors ({p['measured']})")
    print(f"Device   {rep['device']}")
    print("Preview  " + ("a window can open here" if rep["preview"] is None
                         else f"no window: {rep['preview']} (--vcam, --mjpeg and recordings still work)"))
    width = max([len(r["style"]) for r in rep["styles"]] + [5])
    for r in rep["styles"]:
        mark = {weights.DEFAULT_STYLE: " *", weights.DEFAULT_LIVE_STYLE: " +"}.get(r["style"], "")
        runs = "" if r["network"] == r["style"] else f", {r['network']}"
        path = f"{r['precision']} ({r['backend']}{runs})" if r["backend"] else "cannot run"
        print(f"  {(r['style'] + mark).ljust(width + 2)} {path.ljust(22)} {'; '.join(r['why'])}")
    print("  (* the default style, + the live default; --precision auto picks the path shown)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="animestream doctor",
                                description="Show this machine's CPU class and the path each style takes on it.")
    p.add_argument("--style", metavar="NAME|PATH", help="one style (default: every registered style)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="default: cuda when present, else cpu")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        styles = [weights.resolve(args.style)] if args.style else weights.list_styles()
        rep = report(styles, resolve_device(args.device))
    except AnimestreamError as e:
        print(f"animestream: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(rep))
    else:
        _print(rep)
    return 0
