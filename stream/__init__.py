"""animestream: anime-style video from files, cameras and streams, on a CPU or a GPU.

The Python API in one breath::

    import stream
    engine = stream.Engine("paprika", max_side=512)          # a style name or a weights file
    stats = stream.convert("clip.mp4", "anime.mp4", engine)   # video, image or folder
    rgb_out = engine(rgb_in)                                   # one H x W x 3 uint8 frame
"""
from __future__ import annotations

__version__ = "0.1.0"

from ._xcb import prefer_opencv_xcb

prefer_opencv_xcb()  # before anything imports av: see the module

from .convert import convert, convert_folder, convert_image, convert_video
from .deflicker import Deflicker
from .engine import Engine, EngineOptions, FrameEngine
from .errors import (AnimestreamError, DownloadError, SinkError, SourceError, StyleNotFoundError,
                     WeightsError)
from .model import Generator
from .pipeline import Pipeline, Stats
from .weights import Style, list_styles, load_model
from .weights import resolve as resolve_style

__all__ = [
    "AnimestreamError", "Deflicker", "DownloadError", "Engine", "EngineOptions", "FrameEngine", "Generator",
    "Pipeline", "SinkError", "SourceError", "Stats", "Style", "StyleNotFoundError", "WeightsError", "convert",
    "convert_folder", "convert_image", "convert_video", "list_styles", "load_model", "resolve_style",
]
