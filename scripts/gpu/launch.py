"""Run the synctalk2d CLI on a machine that lacks the media and landmark packages it
imports at load time (PyAV, dlib, LiteRT, librosa, the server's): the `device` tool's GPU
machines have PyTorch, OpenCV and the rest, and nothing can be installed there. Training
a stage on an already preprocessed avatar calls none of them; each one that is missing
becomes an empty module whose use fails loudly, so the imports resolve.

    python3 scripts/gpu/launch.py train --avatar DIR ...   (from the repository root)

``FORCE_MISSING=1`` stubs them even where they are installed (to try this launcher here).
"""

import importlib.abc
import importlib.machinery
import os
import sys
import types

STUBBABLE = {
    "av", "dlib", "ai_edge_litert", "librosa", "soundfile", "silero_vad", "face_recognition_models",
    "fastapi", "uvicorn", "rq", "redis", "multipart", "starlette", "websockets", "soxr", "audioread",
}  # fmt: skip
FORCE = os.environ.get("FORCE_MISSING") == "1"


class Missing(types.ModuleType):
    """A module that is not installed: any attribute is another such module, any call fails."""

    __path__: list[str] = []

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return Missing(f"{self.__name__}.{name}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self.__name__} is not installed on this machine")


class StubMissing(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in STUBBABLE:
            return None
        if not FORCE and any(f is not self and _finds(f, name, path, target) for f in sys.meta_path):
            return None  # installed: the real one
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return Missing(spec.name)

    def exec_module(self, module):
        pass


def _finds(finder, name, path, target) -> bool:
    try:
        return finder.find_spec(name, path, target) is not None
    except (ImportError, AttributeError, ValueError):
        return False


if __name__ == "__main__":
    sys.meta_path.insert(0, StubMissing())
    sys.path.insert(0, os.getcwd())
    from synctalk2d.cli import app

    sys.argv[0] = "synctalk2d"
    app()
