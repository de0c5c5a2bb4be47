"""videoclf: streaming video classification for files and cameras.

The Python API (``videoclf.api``) is reachable from here; it is imported on first use, so
``import videoclf`` stays cheap (no torch, PyAV or OpenCV)::

    import videoclf
    with videoclf.start("sample", max_frames=10) as run:
        for r in run:
            print(r.stream, r.frame, r.label)
"""
from typing import Any

__version__ = "0.1.0"

_API = ("Label", "Options", "Report", "Result", "Run", "StreamReport", "load", "run", "start")
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from videoclf import api

        return getattr(api, name)
    raise AttributeError(f"module 'videoclf' has no attribute {name!r}")
