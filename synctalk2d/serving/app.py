"""The HTTP server of `synctalk2d serve`: avatars, render jobs, the live stream and the web page.

Avatars come from an `AvatarStore` (a directory of them, loaded on first use into a bounded
cache; or one avatar, `serve --avatar`). Jobs are records of the durable job store (SQLite,
or Redis with a queue) and run in a `JobQueue` (this process's threads, or RQ workers). Routes:

* ``GET /healthz``: the server is up, with its load (live sessions, jobs, loaded avatars);
* ``GET /v1/avatars`` → the avatars; ``POST /v1/avatars`` (multipart ``video``, optional
  ``audio`` and ``name``) → 202, a job that builds and trains a new one;
* ``POST /v1/avatars/{avatar}/videos`` (multipart ``audio``) → 202 ``{"id": ...}``, a render
  job (``POST /v1/videos`` on a one-avatar server); ``GET /v1/jobs/{id}`` (also
  ``/v1/videos/{id}``) → status and progress; ``GET /v1/videos/{id}/file`` → the MP4;
* ``WS /v1/stream?avatar=ID``: live speech in, frames out (`serving.live`);
* ``POST /v1/webrtc/offer`` (JSON ``{"sdp", "type", "avatar", "width"}``) → ``{"sdp", "type",
  "session"}``: the live stream as a WebRTC peer, video and voice (`serving.webrtc`, the
  ``webrtc`` extra); ``POST /v1/webrtc/{session}/audio`` (16-bit PCM at 16 kHz),
  ``/end``, ``/interrupt`` push speech to it; ``DELETE /v1/webrtc/{session}`` ends it;
* ``GET /``: the web page (`serving/static`), ``GET /v1/samples[/{name}]``: bundled speech.

Uploads are limited in bytes (counted as the body arrives: `ServerSettings.max_upload_mb`
for audio, `max_video_mb` for videos) and seconds, and accepted only if they decode. With an
API key, every route but the page and its files needs it (``X-API-Key`` or
``Authorization: Bearer``; ``?key=`` for the WebSocket, which browsers cannot give headers).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import secrets
import shutil
import tempfile
import time
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
from synctalk2d.inference.runtime import single_threaded_pool
from synctalk2d.media.audio import SAMPLE_RATE, load_audio
from synctalk2d.media.video import probe_video
from synctalk2d.serving import live
from synctalk2d.serving.avatars import AvatarStore, UnknownAvatar
from synctalk2d.serving.jobs import INPUT, Job, QueueFull, open_store
from synctalk2d.serving.queue import JobQueue, LocalQueue, RedisQueue
from synctalk2d.serving.tasks import AUDIO, VIDEO

STATIC = Path(__file__).parent / "static"
SAMPLES = Path(__file__).resolve().parents[1] / "sample_data"
SAMPLE_SUFFIXES = (".wav", ".mp3")
UNAUTHORISED = 4401  # WebSocket close code: missing or wrong API key
BUSY = 1013  # WebSocket close code: try again later
NEW_AVATARS = "/v1/avatars"  # the one route that takes videos (`max_video_mb`)


@dataclass
class ServerSettings:
    api_key: str | None = None
    jobs_dir: Path | None = None  # default: a temporary directory removed at shutdown
    queue: str | None = None  # redis://host:port/db: jobs run on RQ workers; None: in this process
    job_workers: int = 1  # threads running jobs in this process (without a queue)
    job_timeout: float = 1800.0  # seconds a job may run before it is failed as stuck
    stale_after: float = 10.0  # seconds without a heartbeat after which a running job's runner is taken as dead
    sweep_every: float = 1.0  # seconds between checks for dead runners, stuck and expired jobs
    max_queued_jobs: int = 16
    retention: float = 3600.0  # seconds a finished job's files are kept
    max_upload_mb: float = 50.0
    max_audio_seconds: float = 600.0
    max_video_mb: float = 500.0
    max_video_seconds: float = 600.0
    max_sessions: int = 4
    frame_threads: int = os.cpu_count() or 2


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body larger than its route's limit (``video_limit`` bytes
    for new avatars, ``limit`` for the rest) ends in 413 while it arrives, before it is stored anywhere."""

    def __init__(self, app, limit: int, video_limit: int):
        self.app, self.limit, self.video_limit = app, limit, video_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.video_limit if scope["path"] == NEW_AVATARS else self.limit
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, limited_receive, send)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def too_large(limit: int) -> JSONResponse:
    return error(413, f"the upload is larger than {limit / 1024 / 1024:g} MB")


def create_app(avatars: AvatarStore | str | Path, settings: ServerSettings | None = None, lipsync: LipSync | None = None) -> FastAPI:
    """The app serving the avatars of ``avatars``: a store, or one avatar directory
    (``lipsync``: that avatar already loaded)."""
    settings = settings or ServerSettings()
    if not isinstance(avatars, AvatarStore):
        avatars = AvatarStore.single(avatars, lipsync)
        avatars.get(avatars.only)  # load it now: a bad avatar fails at start, in one line
    own_jobs_dir = settings.jobs_dir is None
    jobs_dir = Path(tempfile.mkdtemp(prefix="synctalk2d-jobs-")) if own_jobs_dir else Path(settings.jobs_dir)
    jobs = open_store(jobs_dir, settings.queue, settings.max_queued_jobs, settings.retention)
    queue: JobQueue = RedisQueue(settings.queue, settings.job_timeout) if settings.queue else LocalQueue(jobs, avatars, settings.job_workers)
    # after a restart: without a queue, jobs that were running died with the last process; with
    # one, only those whose workers went silent. Queued jobs are handed over again either way
    # (Redis may have lost them; a job delivered twice runs once).
    jobs.recover(settings.stale_after if settings.queue else 0.0)
    for job_id in jobs.queued():
        queue.submit(job_id)
    sessions = {"open": 0}
    webrtc_sessions = None  # opened on the first offer: aiortc is an optional extra
    watchers: set[asyncio.Task] = set()  # one per WebRTC session: frees its place when it ends

    def sweep() -> None:
        for job_id in jobs.recover(settings.stale_after):
            queue.submit(job_id)
        jobs.expire(settings.job_timeout)
        jobs.clean()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async def sweeper():
            while True:
                await asyncio.sleep(settings.sweep_every)
                await run_in_threadpool(sweep)

        task = asyncio.create_task(sweeper())
        app.state.frame_pool = single_threaded_pool(settings.frame_threads, "live-frame")  # small model calls side by side
        yield
        task.cancel()
        if webrtc_sessions is not None:
            await webrtc_sessions.close_all()
        app.state.frame_pool.shutdown(wait=False, cancel_futures=True)

    def close():  # at exit, not at the end of a lifespan: an app may be served more than once (tests)
        queue.close()
        jobs.close()
        if own_jobs_dir:
            shutil.rmtree(jobs_dir, ignore_errors=True)

    atexit.register(close)
    app = FastAPI(title="synctalk2d", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=int(settings.max_upload_mb * 1024 * 1024), video_limit=int(settings.max_video_mb * 1024 * 1024))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.jobs, app.state.avatars, app.state.queue = jobs, avatars, queue

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
        except BodyTooLarge as e:
            return too_large(e.args[0])

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge):
        return too_large(exc.args[0])

    def which_avatar(avatar_id: str | None) -> str:
        """The avatar a request names (or the one of a one-avatar server); `UserError` says why not."""
        if avatar_id is None:
            if avatars.only is None:
                raise UserError("this server has several avatars: name one (POST /v1/avatars/{id}/videos, /v1/stream?avatar=ID; GET /v1/avatars lists them)")
            return avatars.only
        avatars.path(avatar_id)  # UnknownAvatar for a bad or unknown id
        return avatar_id

    async def form_of(request: Request, fields: int):
        """The multipart form, or an error response."""
        try:
            return await request.form(max_files=2, max_fields=fields)
        except BodyTooLarge as e:
            return too_large(e.args[0])
        except Exception as e:  # malformed multipart
            return error(400, f"send multipart/form-data ({e})")

    async def save(upload: UploadFile, path: Path) -> None:
        with path.open("wb") as out:
            await run_in_threadpool(shutil.copyfileobj, upload.file, out)
        await upload.close()

    def accepted(job: Job) -> dict:
        jobs.submit(job)
        queue.submit(job.id)
        return {"id": job.id, "avatar": job.avatar, "status": job.status, "url": f"/v1/jobs/{job.id}"}

    @app.get("/")
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz")
    async def health():
        counts = await run_in_threadpool(jobs.counts)
        report = {
            "status": "ok",
            "live_sessions": sessions["open"],
            "max_sessions": settings.max_sessions,
            "jobs": {"queued": counts["queued"], "running": counts["running"]},
            "queue": "redis" if settings.queue else "local",
            "avatars_loaded": list(avatars.loaded),
            "max_loaded_avatars": avatars.max_loaded,
        }
        if avatars.only:  # a one-avatar server also says which, as before there were several
            lipsync = avatars.get(avatars.only)
            info = lipsync.avatar.info
            report |= {"avatar": avatars.only, "conditioning": lipsync.conditioning, "frames": info.num_frames, "width": info.width, "height": info.height}
        return report

    @app.get("/v1/avatars")
    async def list_avatars():
        return {"avatars": await run_in_threadpool(lambda: [avatars.describe(avatar_id) for avatar_id in avatars.ids()])}

    @app.get("/v1/avatars/{avatar_id}")
    async def show_avatar(avatar_id: str):
        try:
            return avatars.describe(avatar_id)
        except UnknownAvatar as e:
            return error(404, str(e))

    @app.post("/v1/avatars", status_code=202)
    async def create_avatar(request: Request):
        if avatars.only:
            return error(400, "this server serves one avatar (--avatar); start it with --avatars DIR to create avatars")
        form = await form_of(request, 6)
        if isinstance(form, JSONResponse):
            return form
        video, audio, name = form.get("video"), form.get("audio"), form.get("name")
        if not isinstance(video, UploadFile):
            return error(400, "send the video as multipart/form-data field 'video'")
        if name is not None and (not isinstance(name, str) or len(name) > 100):
            return error(400, "the name must be text of at most 100 characters")
        try:
            job = jobs.create("avatar", secrets.token_hex(6), name)
        except QueueFull as e:
            return error(429, str(e))
        await save(video, job.directory / VIDEO)
        try:
            info = await run_in_threadpool(probe_video, job.directory / VIDEO)
            if isinstance(audio, UploadFile):
                await save(audio, job.directory / AUDIO)
                await run_in_threadpool(load_audio, job.directory / AUDIO)
        except UserError as e:
            jobs.discard(job)
            return error(415, str(e).replace(str(job.directory) + "/", ""))
        if info.duration > settings.max_video_seconds:
            jobs.discard(job)
            return error(413, f"the video is {info.duration:.0f} s long; this server takes at most {settings.max_video_seconds:g} s")
        return accepted(job)

    async def create_video(request: Request, avatar_id: str | None):
        try:
            avatar_id = which_avatar(avatar_id)
        except UnknownAvatar as e:
            return error(404, str(e))
        except UserError as e:
            return error(400, str(e))
        described = avatars.describe(avatar_id)
        if not described["ready"]:
            return error(409, described.get("error") or f"avatar {avatar_id!r} is not trained yet")
        form = await form_of(request, 4)
        if isinstance(form, JSONResponse):
            return form
        upload = form.get("audio")
        if not isinstance(upload, UploadFile):
            return error(400, "send the audio as multipart/form-data field 'audio'")
        try:
            job = jobs.create("render", avatar_id)
        except QueueFull as e:
            return error(429, str(e))
        await save(upload, job.directory / INPUT)  # never the client's file name
        try:
            wav, _ = await run_in_threadpool(load_audio, job.directory / INPUT)
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
        return accepted(job) | {"url": f"/v1/videos/{job.id}"}

    @app.post("/v1/avatars/{avatar_id}/videos", status_code=202)
    async def create_avatar_video(request: Request, avatar_id: str):
        return await create_video(request, avatar_id)

    @app.post("/v1/videos", status_code=202)
    async def create_default_video(request: Request):
        return await create_video(request, None)

    @app.get("/v1/jobs/{job_id}")
    @app.get("/v1/videos/{job_id}")
    async def job_status(job_id: str):
        job = await run_in_threadpool(jobs.get, job_id)
        return job.to_dict() if job else error(404, "no such job (it may have expired)")

    @app.get("/v1/videos/{job_id}/file")
    async def video_file(job_id: str):
        job = await run_in_threadpool(jobs.get, job_id)
        if job is None or job.kind != "render":
            return error(404, "no such video (it may have expired)")
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

        async def refuse(message: str, code: int) -> None:
            await websocket.send_json({"type": "error", "message": message})
            await websocket.close(code)

        if not authorised(websocket.headers, websocket.query_params):
            return await refuse("this server needs an API key (?key=...)", UNAUTHORISED)
        if sessions["open"] >= settings.max_sessions:
            return await refuse(f"{settings.max_sessions} live sessions are open; try again later", BUSY)
        width = websocket.query_params.get("width")
        sessions["open"] += 1  # counted from here: the avatar may take seconds to load
        try:
            avatar_id = which_avatar(websocket.query_params.get("avatar"))
            lipsync = await run_in_threadpool(avatars.get, avatar_id)
            width = int(width) if width else None
            lipsync.generator_at(width)
        except (ValueError, UserError) as e:
            sessions["open"] -= 1
            return await refuse(str(e) if isinstance(e, UserError) else "width must be a whole number of pixels", 1008)
        try:
            with avatars.lease(avatar_id):
                with_audio = websocket.query_params.get("audio", "0") not in ("0", "false", "")
                await live.stream(websocket, lipsync, websocket.app.state.frame_pool, width, with_audio)
        finally:
            sessions["open"] -= 1

    @app.post("/v1/webrtc/offer")
    async def webrtc_offer(request: Request):
        nonlocal webrtc_sessions
        try:
            from synctalk2d.serving.webrtc import WebRTCSessions
        except ImportError:
            return error(501, "this server has no WebRTC: install it with pip install 'synctalk2d[webrtc]'")
        try:
            offer = await request.json()
            sdp, kind, width = offer["sdp"], offer["type"], offer.get("width")
            width = int(width) if width else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return error(400, 'send JSON {"sdp": ..., "type": "offer", "avatar": ID, "width": W}, the offer of an RTCPeerConnection')
        if sessions["open"] >= settings.max_sessions:
            return error(503, f"{settings.max_sessions} live sessions are open; try again later")
        sessions["open"] += 1
        try:
            avatar_id = which_avatar(offer.get("avatar"))
            lease = avatars.lease(avatar_id)
            lipsync = await run_in_threadpool(lease.__enter__)
        except UserError as e:
            sessions["open"] -= 1
            return error(404 if isinstance(e, UnknownAvatar) else 400, str(e))
        try:
            lipsync.generator_at(width)
            webrtc_sessions = webrtc_sessions or WebRTCSessions()
            session, answer = await webrtc_sessions.open_session(lipsync, app.state.frame_pool, sdp, kind, width)
        except UserError as e:
            lease.__exit__(None, None, None)
            sessions["open"] -= 1
            return error(400, str(e))

        async def release():
            try:
                await webrtc_sessions.closed(session)
            finally:
                lease.__exit__(None, None, None)
                sessions["open"] -= 1

        watchers.add(watcher := asyncio.create_task(release()))
        watcher.add_done_callback(watchers.discard)
        return {"sdp": answer.sdp, "type": answer.type, "session": session.id}

    def webrtc_session(session_id: str):
        if webrtc_sessions is None:
            raise UserError("no such WebRTC session (it ended, or never was)")
        return webrtc_sessions.get(session_id)

    @app.post("/v1/webrtc/{session_id}/audio", status_code=204)
    async def webrtc_audio(session_id: str, request: Request):
        try:
            session = webrtc_session(session_id)
            body = await request.body()
            session.session.push(live.from_pcm16(body[: len(body) // 2 * 2]), time.perf_counter())
        except UserError as e:
            return error(404 if "no such" in str(e) else 400, str(e))

    @app.post("/v1/webrtc/{session_id}/end", status_code=204)
    async def webrtc_end(session_id: str):
        try:
            webrtc_session(session_id).session.end()
        except UserError as e:
            return error(404, str(e))

    @app.post("/v1/webrtc/{session_id}/interrupt")
    async def webrtc_interrupt(session_id: str):
        try:
            session = webrtc_session(session_id)
        except UserError as e:
            return error(404, str(e))
        return {"events": session.session.interrupt()}  # the data channel gets them with the next frame

    @app.delete("/v1/webrtc/{session_id}", status_code=204)
    async def webrtc_close(session_id: str):
        try:
            session = webrtc_session(session_id)
        except UserError as e:
            return error(404, str(e))
        await session.close()

    return app
