"""What every model config shares: a JSON round trip and checked choices.

Configs are saved inside checkpoints as plain dicts and come back from JSON files and
command-line options, so a bad value must fail with a sentence naming the valid ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, fields
from typing import Any, TypeVar

from synctalk2d.errors import UserError

C = TypeVar("C", bound="DictConfig")


def check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    """`UserError` naming the valid choices when ``value`` is not one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise UserError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")


class DictConfig:
    """Mixin for config dataclasses: ``to_dict`` for checkpoints, ``from_dict`` back.

    ``from_dict`` ignores keys the class no longer has, so a checkpoint written by a
    version with an extra (since removed) field still loads."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
