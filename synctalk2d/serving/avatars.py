"""The avatar store of a server or worker: a directory of trained avatars, loaded on first
use and kept in a bounded least-recently-used cache.

Each subdirectory of the store whose name matches `AVATAR_ID` is an avatar; ids are checked
against it before they are ever joined to a path, so no id can reach outside the store (and
hidden directories, such as avatars still being built, are never listed). An avatar in use
(a live session or a running job holds a `lease`) is never unloaded: the cache may then
hold more than its bound until the lease ends.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from synctalk2d.avatar import Avatar
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.stream import warm_up

AVATAR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NAME_FILE = "name.txt"  # a display name given when the avatar was created through the API


def load(path: Path) -> LipSync:
    """Load an avatar and run it once through the live path, so its first viewer does not wait for set-up."""
    lipsync = LipSync(path)
    warm_up(lipsync)
    return lipsync


class UnknownAvatar(UserError):
    """No avatar with that id in the store (or a malformed id)."""


class AvatarStore:
    """The avatars in ``root``; with ``only``, the store holds just that one (``serve --avatar``)."""

    def __init__(self, root: str | Path, max_loaded: int = 4, only: str | None = None, loader: Callable[[Path], LipSync] = load):
        self.root = Path(root).resolve()
        self.max_loaded = max_loaded
        self.only = only
        self.loader = loader
        self.loaded: OrderedDict[str, LipSync] = OrderedDict()
        self.leases: dict[str, int] = {}
        self.lock = threading.Lock()
        self.loading: dict[str, threading.Lock] = {}

    @classmethod
    def single(cls, avatar_dir: str | Path, lipsync: LipSync | None = None) -> AvatarStore:
        """A store of one avatar directory (already loaded when ``lipsync`` is given)."""
        path = Avatar.open(avatar_dir).root.resolve()
        if not AVATAR_ID.fullmatch(path.name):
            raise UserError(f"{path}: an avatar directory's name must be letters, digits, '_' or '-' (at most 64)")
        store = cls(path.parent, max_loaded=1, only=path.name)
        if lipsync is not None:
            warm_up(lipsync)
            store.loaded[path.name] = lipsync
        return store

    def path(self, avatar_id: str) -> Path:
        """The directory of ``avatar_id``; `UnknownAvatar` for a malformed id or one not in the store."""
        if not AVATAR_ID.fullmatch(avatar_id) or (self.only and avatar_id != self.only):
            raise UnknownAvatar(f"no avatar {avatar_id!r} on this server")
        path = self.root / avatar_id
        if not Avatar(path).is_complete():
            raise UnknownAvatar(f"no avatar {avatar_id!r} on this server")
        return path

    def ids(self) -> list[str]:
        if self.only:
            return [self.only]
        return sorted(p.name for p in self.root.iterdir() if AVATAR_ID.fullmatch(p.name) and Avatar(p).is_complete())

    def describe(self, avatar_id: str) -> dict:
        """What the page and clients show: id, name, frames, size, conditioning, ready (trained)."""
        path = self.path(avatar_id)
        name = (path / NAME_FILE).read_text().strip() if (path / NAME_FILE).is_file() else avatar_id
        try:
            info = Avatar(path).info
        except UserError as e:  # e.g. an older avatar format: listed with the reason, never loaded
            return {"id": avatar_id, "name": name, "ready": False, "loaded": False, "error": str(e).replace(f"{self.root}/", "")}
        record = path / "train.json"
        conditioning = json.loads(record.read_text()).get("conditioning") if record.is_file() else None
        return {
            "id": avatar_id,
            "name": name,
            "frames": info.num_frames,
            "size": [info.width, info.height],
            "conditioning": conditioning,
            "ready": record.is_file(),
            "loaded": avatar_id in self.loaded,
        }

    def get(self, avatar_id: str) -> LipSync:
        """The loaded avatar (loaded now if it is not), least recently used ones unloaded past the bound."""
        path = self.path(avatar_id)
        with self.lock:
            if avatar_id in self.loaded:
                self.loaded.move_to_end(avatar_id)
                return self.loaded[avatar_id]
            loading = self.loading.setdefault(avatar_id, threading.Lock())
        with loading:  # one load per avatar, others wait for it
            with self.lock:
                if avatar_id in self.loaded:
                    return self.loaded[avatar_id]
            lipsync = self.loader(path)
            with self.lock:
                self.loaded[avatar_id] = lipsync
                self._evict(keep=avatar_id)
                return lipsync

    @contextmanager
    def lease(self, avatar_id: str) -> Iterator[LipSync]:
        """``with store.lease(id) as lipsync:`` the avatar stays loaded until the block ends."""
        lipsync = self.get(avatar_id)
        with self.lock:
            self.leases[avatar_id] = self.leases.get(avatar_id, 0) + 1
            self.loaded.setdefault(avatar_id, lipsync)  # evicted between get and here: keep it while leased
        try:
            yield lipsync
        finally:
            with self.lock:
                self.leases[avatar_id] -= 1
                if not self.leases[avatar_id]:
                    del self.leases[avatar_id]
                self._evict()

    def _evict(self, keep: str | None = None) -> None:
        """Unload least recently used avatars without leases (and not ``keep``, just loaded)
        until at most ``max_loaded`` remain (lock held)."""
        for avatar_id in list(self.loaded):
            if len(self.loaded) <= self.max_loaded:
                return
            if not self.leases.get(avatar_id) and avatar_id != keep:
                del self.loaded[avatar_id]
