"""`synctalk2d --version` prints the version the package carries, so a bug report can name it."""

from __future__ import annotations

from typer.testing import CliRunner

from synctalk2d import __version__
from synctalk2d.cli import app


def test_version_prints_the_package_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"synctalk2d {__version__}"
