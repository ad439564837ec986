"""animestream: anime-style video from files, cameras and streams, on a CPU or a GPU.

The Python API in one breath::

    import stream
    engine = stream.Engine("shinkai", max_side=512)          # a style name or a weights file
    stats = stream.convert("clip.mp4", "anime.mp4", engine)   # video, image or folder
    rgb_out = engine(rgb_in)                                   # one H x W x 3 uint8 frame
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._xcb import prefer_opencv_xcb

prefer_opencv_xcb()  # before anything imports av: see the module

# The public names, imported on first use (PEP 562): ``import stream`` stays cheap, and the command line
# can catch a Ctrl-C that arrives while PyTorch and PyAV are still loading.
_PUBLIC = {
    "convert": "filejob", "convert_folder": "filejob", "convert_image": "filejob", "convert_video": "filejob",
    "Deflicker": "deflicker", "Engine": "engine", "EngineOptions": "engine", "FrameEngine": "engine",
    "AnimestreamError": "errors", "DownloadError": "errors", "SinkError": "errors", "SourceError": "errors",
    "StyleNotFoundError": "errors", "WeightsError": "errors", "Generator": "model", "Pipeline": "pipeline",
    "Stats": "pipeline", "Style": "weights", "list_styles": "weights", "load_model": "weights",
    "resolve_style": ("weights", "resolve"),
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'stream' has no attribute {name!r}")
    module, attr = where if isinstance(where, tuple) else (where, name)
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
