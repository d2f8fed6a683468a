"""The HTTP server of `synctalk2d serve`: render jobs, the live stream and the web page.

One avatar is loaded once (`LipSync`) and shared by the job workers and every live
session. Routes:

* ``GET /healthz``: the server is up, with the avatar it serves and its load;
* ``POST /v1/videos`` (multipart field ``audio``) → 202 ``{"id": ...}``;
  ``GET /v1/videos/{id}`` → status and progress; ``GET /v1/videos/{id}/file`` → the MP4;
* ``WS /v1/stream``: live speech in, frames out (`serving.live`);
* ``GET /``: the web page (`serving/static`), ``GET /v1/samples[/{name}]``: bundled speech.

Uploads are limited in bytes (`ServerSettings.max_upload_mb`, counted as the body
arrives) and seconds, and accepted only if they decode as audio. With an API key, every
route but the page and its files needs it (``X-API-Key`` or ``Authorization: Bearer``;
``?key=`` for the WebSocket, which browsers cannot give headers).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.stream import warm_up
from synctalk2d.media.audio import SAMPLE_RATE, load_audio
from synctalk2d.serving import live
from synctalk2d.serving.jobs import INPUT, JobStore, QueueFull

STATIC = Path(__file__).parent / "static"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_SUFFIXES = (".wav", ".mp3")
CLEAN_EVERY = 60.0  # seconds between sweeps of expired jobs
UNAUTHORISED = 4401  # WebSocket close code: missing or wrong API key
BUSY = 1013  # WebSocket close code: try again later


@dataclass
class ServerSettings:
    api_key: str | None = None
    jobs_dir: Path | None = None  # default: a temporary directory removed at shutdown
    job_workers: int = 1
    max_queued_jobs: int = 16
    retention: float = 3600.0  # seconds a finished job's MP4 is kept
    max_upload_mb: float = 50.0
    max_audio_seconds: float = 600.0
    max_sessions: int = 4
    frame_threads: int = os.cpu_count() or 2


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body larger than ``limit`` bytes ends in 413 while it
    arrives, before it is stored anywhere."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(avatar_dir: str | Path, settings: ServerSettings | None = None, lipsync: LipSync | None = None) -> FastAPI:
    """The app serving the trained avatar in ``avatar_dir`` (``lipsync``: one already loaded)."""
    settings = settings or ServerSettings()
    lipsync = lipsync or LipSync(avatar_dir)
    warm_up(lipsync)
    own_jobs_dir = settings.jobs_dir is None
    jobs_dir = Path(tempfile.mkdtemp(prefix="synctalk2d-jobs-")) if own_jobs_dir else Path(settings.jobs_dir)
    jobs = JobStore(lipsync, jobs_dir, settings.job_workers, settings.max_queued_jobs, settings.retention)
    sessions = {"open": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def sweep():
            while True:
                await asyncio.sleep(CLEAN_EVERY)
                jobs.clean()

        sweeper = asyncio.create_task(sweep())
        app.state.frame_pool = ThreadPoolExecutor(settings.frame_threads, thread_name_prefix="live-frame")
        yield
        sweeper.cancel()
        app.state.frame_pool.shutdown(wait=False, cancel_futures=True)

    def close():  # at exit, not at the end of a lifespan: an app may be served more than once (tests)
        jobs.close()
        if own_jobs_dir:
            shutil.rmtree(jobs_dir, ignore_errors=True)

    atexit.register(close)
    app = FastAPI(title="synctalk2d", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=int(settings.max_upload_mb * 1024 * 1024))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.jobs, app.state.lipsync = jobs, lipsync

    def authorised(headers, query) -> bool:
        if not settings.api_key:
            return True
        bearer = headers.get("authorization", "")
        given = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None) or query.get("key") or ""
        return secrets.compare_digest(given.encode(), settings.api_key.encode())

    @app.middleware("http")
    async def require_key(request: Request, call_next):
        public = request.url.path == "/" or request.url.path.startswith("/static/")
        if not public and not authorised(request.headers, request.query_params):
            return error(401, "this server needs an API key (X-API-Key header or Authorization: Bearer)")
        try:
            return await call_next(request)
        except BodyTooLarge:
            return error(413, f"the upload is larger than {settings.max_upload_mb:g} MB")

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge):
        return error(413, f"the upload is larger than {settings.max_upload_mb:g} MB")

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def health():
        info = lipsync.avatar.info
        waiting = [job.status for job in list(jobs.jobs.values())]
        return {
            "status": "ok",
            "avatar": lipsync.avatar.root.name,
            "conditioning": lipsync.conditioning,
            "frames": info.num_frames,
            "width": info.width,
            "height": info.height,
            "live_sessions": sessions["open"],
            "max_sessions": settings.max_sessions,
            "jobs": {"queued": waiting.count("queued"), "running": waiting.count("running")},
        }

    @app.post("/v1/videos", status_code=202)
    async def create_video(request: Request):
        try:
            form = await request.form(max_files=1, max_fields=4)
        except BodyTooLarge:
            return error(413, f"the upload is larger than {settings.max_upload_mb:g} MB")
        except Exception as e:  # malformed multipart
            return error(400, f"send the audio as multipart/form-data field 'audio' ({e})")
        upload = form.get("audio")
        if not isinstance(upload, UploadFile):
            return error(400, "send the audio as multipart/form-data field 'audio'")
        try:
            job = jobs.create()
        except QueueFull as e:
            return error(429, str(e))
        path = job.directory / INPUT  # never the client's file name
        with path.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        await upload.close()
        try:
            wav, _ = await run_in_threadpool(load_audio, path)
        except UserError:
            jobs.discard(job)
            return error(415, "the upload is not an audio file this server can decode (wav, mp3, m4a, flac, ogg, webm...)")
        seconds = len(wav) / SAMPLE_RATE
        if seconds > settings.max_audio_seconds:
            jobs.discard(job)
            return error(413, f"the audio is {seconds:.0f} s long; this server renders at most {settings.max_audio_seconds:g} s")
        if seconds < 0.04:
            jobs.discard(job)
            return error(400, "the audio is empty")
        jobs.start(job)
        return {"id": job.id, "status": job.status, "url": f"/v1/videos/{job.id}"}

    @app.get("/v1/videos/{job_id}")
    async def video_status(job_id: str):
        job = jobs.get(job_id)
        return job.to_dict() if job else error(404, "no such job (it may have expired)")

    @app.get("/v1/videos/{job_id}/file")
    async def video_file(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            return error(404, "no such job (it may have expired)")
        if job.status != "done":
            return error(409, f"the video is not ready: the job is {job.status}")
        return FileResponse(jobs.output(job), media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.get("/v1/samples")
    async def samples():
        return {"samples": sorted(p.name for p in SAMPLES.iterdir() if p.suffix in SAMPLE_SUFFIXES)}

    @app.get("/v1/samples/{name}")
    async def sample(name: str):
        known = {p.name: p for p in SAMPLES.iterdir() if p.suffix in SAMPLE_SUFFIXES}
        return FileResponse(known[name]) if name in known else error(404, "no such sample")

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket):
        await websocket.accept()
        if not authorised(websocket.headers, websocket.query_params):
            await websocket.send_json({"type": "error", "message": "this server needs an API key (?key=...)"})
            return await websocket.close(UNAUTHORISED)
        if sessions["open"] >= settings.max_sessions:
            await websocket.send_json({"type": "error", "message": f"{settings.max_sessions} live sessions are open; try again later"})
            return await websocket.close(BUSY)
        width = websocket.query_params.get("width")
        try:
            width = int(width) if width else None
            lipsync.generator_at(width)
        except (ValueError, UserError) as e:
            await websocket.send_json({"type": "error", "message": str(e) if isinstance(e, UserError) else "width must be a whole number of pixels"})
            return await websocket.close(1008)
        sessions["open"] += 1
        try:
            await live.stream(websocket, lipsync, websocket.app.state.frame_pool, width)
        finally:
            sessions["open"] -= 1

    return app
