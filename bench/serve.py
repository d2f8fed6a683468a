"""Load on `synctalk2d serve` as a service, as JSON on stdout.

    python bench/serve.py [--avatar DIR] [--jobs 4] [--job-seconds 4] [--workers 1 2]
                          [--widths 480 full] [--max-sessions 4] [--note TEXT]

Three measurements, each against real processes:

* ``render_jobs``: a redis-server of its own, `synctalk2d serve --avatars --queue` and 1, then
  2, `synctalk2d worker` processes; JOBS render jobs of JOB_SECONDS of the bundled speech
  posted at once. ``jobs_per_minute`` and ``video_seconds_per_second`` (throughput over the
  whole batch) and ``latency_s`` p50/p95 (from the POST to the job seen done, polled every
  0.1 s). Skipped, saying why, where redis-server is missing.
* ``live``: the sessions one machine keeps in real time per frame width, exactly as
  `bench/stream.py` measures them (its code, imported): 1, 2, ... sessions of 6 s speech at
  real-time pace, stopping at the first count that is not real time.
* ``memory_per_avatar``: the resident memory each loaded avatar adds to a process
  (`AvatarStore.get` on 5 distinct copies of the avatar, each rendering a second of speech):
  the growth from the first to the last, per avatar (the first also pays one-time set-up).

Default avatar: the bundled sample, preprocessed and trained (mouth conditioning) into a
temporary directory, as `bench/stream.py` does.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from stream import build_avatar, percentiles, run, start_server

from synctalk2d.demo import SAMPLE_SPEECH, sample_path
from synctalk2d.media.audio import load_audio, write_wav


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory_per_avatar(avatar: Path, workdir: Path, copies: int = 5) -> dict:
    """RSS added per loaded avatar, each having rendered a second of speech (distinct copies,
    so no file pages are shared between them): the first pays the process's one-time
    runtime set-up too, so the figure is the growth from the first to the last, per avatar."""
    from synctalk2d.inference.offline import render
    from synctalk2d.serving.avatars import AvatarStore

    store_dir = workdir / "memory"
    for i in range(copies):
        shutil.copytree(avatar, store_dir / f"copy{i}")
    store = AvatarStore(store_dir, max_loaded=copies)
    speech = workdir / "second.wav"
    write_wav(speech, load_audio(sample_path(SAMPLE_SPEECH))[0][:16000])
    rss = [rss_mb()]
    for i in range(copies):
        render(store.get(f"copy{i}"), speech, workdir / "second.mp4", show_progress=False)
        gc.collect()
        rss.append(rss_mb())
    return {"first_mb": round(rss[1] - rss[0], 1), "per_further_avatar_mb": round((rss[-1] - rss[1]) / (copies - 1), 1), "avatars": copies}


def synctalk2d(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "synctalk2d", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        if time.time() > deadline:
            raise SystemExit(f"{what} did not start within {timeout:.0f} s")
        time.sleep(0.2)


def post(url: str, audio: bytes) -> str:
    boundary = "bench-serve"
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'.encode() + audio + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(urllib.request.urlopen(request).read())["id"]


def render_jobs(avatar: Path, workdir: Path, jobs: int, seconds: float, worker_counts: list[int]) -> dict:
    from redis import Redis
    from rq import Worker

    binary = shutil.which("redis-server")
    if binary is None:
        return {"skipped": "redis-server is missing (make redis)"}
    wav, _ = load_audio(sample_path(SAMPLE_SPEECH))
    audio_path = workdir / "job.wav"
    write_wav(audio_path, wav[: int(seconds * 16000)])
    audio = audio_path.read_bytes()
    redis_port, port = free_port(), free_port()
    url = f"redis://127.0.0.1:{redis_port}/0"
    redis = subprocess.Popen([binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    jobs_dir, store = workdir / "jobs", avatar.parent
    processes = [redis]
    results = []
    try:
        wait_until(lambda: Redis(port=redis_port).ping(), "redis-server", 10)
        processes.append(synctalk2d("serve", "--avatars", str(store), "--port", str(port), "--queue", url, "--jobs-dir", str(jobs_dir)))
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/healthz"), "the server")
        for count in worker_counts:
            workers = [synctalk2d("worker", "--queue", url, "--avatars", str(store), "--jobs-dir", str(jobs_dir)) for _ in range(count)]
            processes += workers
            wait_until(lambda count=count: len(Worker.all(connection=Redis(port=redis_port))) == count, "the workers")
            # each worker loads the avatar on its first job: a warm-up batch, not timed
            _wait_done(base, [post(f"{base}/v1/avatars/{avatar.name}/videos", audio) for _ in range(count)], {})
            started = time.perf_counter()
            posted = {post(f"{base}/v1/avatars/{avatar.name}/videos", audio): time.perf_counter() for _ in range(jobs)}
            latencies = _wait_done(base, list(posted), posted)
            wall = time.perf_counter() - started
            results.append(
                {
                    "workers": count,
                    "jobs": jobs,
                    "job_audio_seconds": seconds,
                    "jobs_per_minute": round(60 * jobs / wall, 1),
                    "video_seconds_per_second": round(jobs * seconds / wall, 2),
                    "latency_s": {k: round(v / 1000, 2) for k, v in percentiles([1000 * s for s in latencies]).items()},
                }
            )
            for worker in workers:
                worker.terminate()
                worker.wait(30)
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
                process.wait(30)
    return {"runs": results}


def _answers(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=1).status == 200
    except OSError:
        return False


def _wait_done(base: str, job_ids: list[str], posted: dict) -> list[float]:
    """Poll until every job is done; seconds from each POST to its job seen done."""
    latencies, waiting = [], set(job_ids)
    while waiting:
        for job_id in list(waiting):
            status = json.loads(urllib.request.urlopen(f"{base}/v1/jobs/{job_id}").read())
            if status["status"] == "failed":
                raise SystemExit(f"a job failed: {status['error']}")
            if status["status"] == "done":
                waiting.discard(job_id)
                if job_id in posted:
                    latencies.append(time.perf_counter() - posted[job_id])
        time.sleep(0.1)
    return latencies


def live(avatar: Path, widths: list[str], max_sessions: int) -> list[dict]:
    """Sessions kept in real time per width, measured by bench/stream.py's own `run`."""
    wav, _ = load_audio(sample_path(SAMPLE_SPEECH))
    pcm = (np.clip(wav[: 6 * 16000], -1, 1) * 32767).astype("<i2").tobytes()
    server, port = start_server(avatar, max_sessions)
    out = []
    try:
        for width in widths:
            w = None if width == "full" else int(width)
            sustained, result = 0, None
            for count in range(1, max_sessions + 1):
                result = asyncio.run(run(port, pcm, w, count, burst=False, repeats=1))
                if not result["realtime"]:
                    break
                sustained = count
            out.append({"size": result["size"], "sessions_sustained": sustained, "most_tried": max_sessions, "last_run": result})
    finally:
        server.terminate()
        server.wait(10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--avatar", type=Path, help="a trained avatar (default: train the bundled sample)")
    parser.add_argument("--jobs", type=int, default=4, help="render jobs posted at once")
    parser.add_argument("--job-seconds", type=float, default=4.0, help="speech per render job")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--widths", nargs="+", default=["480", "full"], help="live frame widths in pixels, or full")
    parser.add_argument("--max-sessions", type=int, default=4)
    parser.add_argument("--note", default="", help="recorded as is, e.g. that the CPU was shared")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        avatar = (args.avatar or build_avatar(workdir)).resolve()
        report = {
            "avatar": str(args.avatar or "bundled sample"),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "note": args.note,
            "render_jobs": render_jobs(avatar, workdir, args.jobs, args.job_seconds, args.workers),
            "live": live(avatar, args.widths, args.max_sessions),
            "memory_per_avatar": memory_per_avatar(avatar, workdir),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
