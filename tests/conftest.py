"""Shared fixtures: the real clips in ../shared/fixtures and avatars built from them."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest

pytest_plugins = ["tests.serving.fixtures"]  # the live server, shared by the serving tests

FIXTURES = Path(os.environ.get("SYNCTALK2D_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"))


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        pytest.fail(f"fixture {path} is missing (set SYNCTALK2D_FIXTURES to the fixtures directory)")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def encode_clip(frames, path: Path, fps=25, audio: np.ndarray | None = None, sample_rate=16000, faststart=False, time_base=None, pts=None) -> Path:
    """Write RGB ``frames`` (and mono float ``audio``) to an H.264/AAC file with PyAV.

    ``pts`` (in ``time_base`` units) gives every frame its own timestamp, for variable
    frame rate files.
    """
    from fractions import Fraction

    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        first = frames[0]
        stream.width, stream.height = first.shape[1], first.shape[0]
        stream.pix_fmt = "yuv420p"
        if time_base is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(time_base)
        astream = None
        if audio is not None:
            astream = out.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
                frame.time_base = stream.time_base
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
        if astream is not None:
            aframe = av.AudioFrame.from_ndarray(audio.astype(np.float32)[None, :], format="flt", layout="mono")
            aframe.sample_rate = sample_rate
            aframe.pts = 0
            out.mux(astream.encode(aframe))
            out.mux(astream.encode())
    return path


def decode_rgb(path: Path, limit: int | None = None) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if limit and len(out) >= limit:
                break
        return out


@pytest.fixture(scope="session")
def talk_b_avatar(tmp_path_factory):
    """talk_b.mp4 (5 s, 25 fps, 844x844) preprocessed once for the whole session."""
    from synctalk2d.avatar import Avatar
    from synctalk2d.preprocess import preprocess

    root = tmp_path_factory.mktemp("avatars") / "talk_b"
    preprocess(fixture_path("talk_b.mp4"), root, show_progress=False)
    return Avatar.open(root)


@pytest.fixture(scope="session")
def trained_avatar(talk_b_avatar, tmp_path_factory):
    """talk_b briefly trained (mobile width, a few steps per stage, last second held out):
    enough for the full pipeline to run for real, not for good lip sync."""
    import shutil

    from synctalk2d.avatar import Avatar
    from synctalk2d.training.train import build_config, train

    root = tmp_path_factory.mktemp("trained") / "talk_b"
    shutil.copytree(talk_b_avatar.root, root)
    train(build_config(root, conditioning="audio", width="mobile", max_steps=3, batch_size=2, holdout_seconds=1.0), show_progress=False)
    return Avatar.open(root)


@pytest.fixture(scope="session")
def mouth_avatar(talk_b_avatar, tmp_path_factory):
    """talk_b trained with the default mouth conditioning (the shipped prior adapted to it,
    seconds on a CPU), last second held out."""
    import shutil

    from synctalk2d.avatar import Avatar
    from synctalk2d.training.train import build_config, train

    root = tmp_path_factory.mktemp("mouth") / "talk_b"
    shutil.copytree(talk_b_avatar.root, root)
    train(build_config(root, conditioning="mouth", holdout_seconds=1.0), show_progress=False)
    return Avatar.open(root)


def write_speech(path: Path, seconds: float, silence_after: float = 0.0, channels: int = 1, rate: int = 16000) -> Path:
    """A clip of real speech (speech_44k.wav), optionally followed by silence, written with
    PyAV in the container/codec the suffix implies (wav, mp3, m4a...)."""
    from synctalk2d.media.audio import load_audio

    speech, _ = load_audio(fixture_path("speech_44k.wav"), sample_rate=rate)
    samples = np.concatenate([speech[: int(seconds * rate)], np.zeros(int(silence_after * rate), np.float32)])
    planar = np.repeat(samples[None], channels, axis=0)
    codec = {".wav": "pcm_s16le", ".mp3": "mp3", ".m4a": "aac", ".flac": "flac"}[path.suffix]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = layout
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar, np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate, frame_size=stream.codec_context.frame_size or 1024)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path
