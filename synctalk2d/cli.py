"""Command-line interface: a thin layer that parses options and calls the pipeline stages.

Errors a user can fix print as one line on stderr with exit code 1; ``--debug`` shows the
full traceback instead.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer

from synctalk2d.errors import UserError
from synctalk2d.progress import console

app = typer.Typer(
    help="SyncTalk_2D lip-sync: learn a person from a short video, then make them say any speech.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)



@app.callback()
def main() -> None:
    """SyncTalk_2D lip-sync: preprocess a video into an avatar, train it, make it speak."""


DebugOption = typer.Option(False, "--debug", help="Show full tracebacks on errors.")


def _fail(message: str) -> None:
    print(f"synctalk2d: error: {message}", file=sys.stderr)
    raise typer.Exit(1)


def command(fn: Callable) -> Callable:
    """Register ``fn`` as a subcommand with the one-line error policy (it must take ``debug``)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            if kwargs.get("debug"):
                raise
            _fail("interrupted")
        except UserError as e:
            if kwargs.get("debug"):
                raise
            _fail(str(e))
        except Exception as e:  # unexpected: still one line, traceback on request
            if kwargs.get("debug"):
                raise
            _fail(f"{type(e).__name__}: {e} (run again with --debug for the traceback)")

    return app.command()(run)


@command
def preprocess(
    video: Path = typer.Argument(..., help="Talking-head video (any format PyAV opens), ideally ~5 minutes."),
    avatar: Path = typer.Option(..., "--avatar", help="Directory to write the avatar to."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Use this audio instead of the video's own track."),
    force: bool = typer.Option(False, "--force", help="Replace an existing complete avatar."),
    debug: bool = DebugOption,
) -> None:
    """Turn a video of a person talking into an avatar directory (frames, landmarks, crops, audio)."""
    from synctalk2d.preprocess import preprocess as run_preprocess

    summary = run_preprocess(video, avatar, audio=audio, force=force)
    console.print(
        f"[green]avatar ready[/green] {summary.avatar}: {summary.num_frames} frames "
        f"({summary.duration:.1f} s at 25 fps), face found in {summary.face_share:.1%} of frames, "
        f"took {summary.seconds:.1f} s ({summary.num_frames / max(summary.seconds, 1e-9):.1f} frames/s)"
    )


if __name__ == "__main__":
    app()
