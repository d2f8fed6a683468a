"""Translate PyAV's errors into one-sentence user errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import av

from synctalk2d.errors import UserError


@contextlib.contextmanager
def media_errors(path: str | Path, what: str = "media file") -> Iterator[None]:
    """Turn FFmpeg failures while reading ``path`` into a `UserError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path} is a directory, expected a {what}")
    try:
        yield
    except av.error.InvalidDataError as e:
        raise UserError(f"{path} is not a readable {what} (corrupt, truncated or not media): {e}") from e
    except av.error.FFmpegError as e:
        raise UserError(f"{path} could not be read as a {what}: {e}") from e


def open_media(path: str | Path, what: str = "media file") -> av.container.InputContainer:
    with media_errors(path, what):
        return av.open(str(path))
