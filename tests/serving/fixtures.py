"""Serving fixtures (loaded by tests/conftest.py): a real `synctalk2d serve` (uvicorn in a
thread) on a free port, for WebSocket and browser tests; `synctalk2d` commands run as
processes of their own (`spawn`), for tests that kill them; a redis-server of our own
(`redis_url`), for the queue and the Redis job store."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import uvicorn

from synctalk2d.serving.app import ServerSettings, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(*args: str) -> subprocess.Popen:
    """``synctalk2d ARGS...`` in a process of its own, its output discarded."""
    return subprocess.Popen([sys.executable, "-m", "synctalk2d", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args} exited with {process.returncode}") from None
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Server:
    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", ws_per_message_deflate=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.time() + 60
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *args) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@pytest.fixture(scope="module")
def lipsync(mouth_avatar):
    from synctalk2d.inference.lipsync import LipSync

    return LipSync(mouth_avatar.root)


@pytest.fixture(scope="module")
def live_server(mouth_avatar, lipsync):
    with Server(create_app(mouth_avatar.root, ServerSettings(max_sessions=2), lipsync)) as server:
        yield server


@pytest.fixture(scope="module")
def store_dir(mouth_avatar, tmp_path_factory):
    """An avatar store: two avatars (the trained test avatar under two names) and a directory that is not one."""
    root = tmp_path_factory.mktemp("store")
    for name in ("alice", "bob"):
        (root / name).symlink_to(mouth_avatar.root, target_is_directory=True)
    (root / "notes").mkdir()
    return root


@pytest.fixture(scope="session")
def redis_url():
    """A redis-server of our own on a free loopback port, nothing saved to disk (each test
    keeps to keys of its own: a `RedisJobStore` prefix, or the default one for the one
    test that runs a server and workers)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is missing: run `make redis` (Debian's redis-server package)")
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, server, timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(server)
