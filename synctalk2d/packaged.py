"""Model files that other packages ship, found without importing those packages (an import
can have side effects: face-recognition-models imports ``pkg_resources``, which recent
setuptools no longer ship; silero-vad sets torch's thread count for the whole process)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from synctalk2d.errors import UserError


def installed_file(package: str, relative: str, what: str, distribution: str) -> Path:
    """The file ``relative`` inside the installed ``package`` (pip's ``distribution``), or a
    `UserError` saying what to install; ``what`` names the file for the user."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the package {distribution} is not installed (pip install {distribution})")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise UserError(f"{what} is missing: {path}")
    return path
