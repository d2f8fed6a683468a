"""Atomic file writes: a reader (or a resumed run after a kill) sees the old file or the
new one, never half of one.

Every file the package writes whole goes through here: a temp file in the target's own
directory (so the final rename stays on one filesystem), fsync'd, made 0644 and renamed
over the target. ``mkstemp`` creates files 0600, which would leave an avatar directory
unreadable to the other users it is shared with; the mode is set explicitly instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MODE = 0o644


def temp_beside(path: str | Path) -> Path:
    """A new empty temp file next to ``path``, hidden, ending in ``path``'s suffix (writers
    that go by the extension, such as `numpy.save`, then write to it unchanged)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    return Path(tmp)


def commit(tmp: str | Path, path: str | Path) -> None:
    """Make the finished ``tmp`` durable and readable (0644), then rename it over ``path``."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, MODE)
    os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(target) as tmp: write(tmp)``: ``target`` is replaced only when the
    block succeeds; if it raises, the temp file goes and ``target`` is left as it was."""
    tmp = temp_beside(path)
    try:
        yield tmp
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
