"""Live rendering: the stream speaks with the mouth `infer` renders for the same audio, idles
on untouched frames in between, starts speech without a jump and stops on interrupt."""

from __future__ import annotations

import numpy as np
import pytest

from synctalk2d.face.lip_shape import aperture, lip_shapes
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.stream import LiveSession
from synctalk2d.media.audio import load_audio
from tests.conftest import fixture_path

pytestmark = pytest.mark.slow
CHUNK = 320  # 20 ms


@pytest.fixture(scope="module")
def lipsync(mouth_avatar):
    return LipSync(mouth_avatar.root)


def speech(seconds: float) -> np.ndarray:
    wav, _ = load_audio(fixture_path("speech_44k.wav"))
    return wav[: int(seconds * 16000)]


def live(session: LiveSession, wav: np.ndarray) -> list:
    """Feed ``wav`` in 20 ms chunks at real-time pace, a tick drawn 20 ms after every other
    chunk (as the server's clock runs behind the audio), then end it and draw frames until
    the utterance has ended."""
    frames, tick = [], session.tick + 1
    for i, start in enumerate(range(0, len(wav), CHUNK)):
        session.push(wav[start : start + CHUNK], now=start / 16000)
        if i % 2 == 0 and i > 0:
            frames.append(session.next_frame(tick, now=start / 16000 + 0.02))
            tick += 1
    session.end()
    while not any(e["type"] == "utterance_ended" for f in frames[-1:] for e in f.events):
        frames.append(session.next_frame(tick))
        tick += 1
    return frames


def test_stream_renders_the_mouth_infer_renders(lipsync):
    wav = speech(4.0)
    frames = live(LiveSession(lipsync), wav)
    speaking = [f for f in frames if f.utterance is not None]
    assert [f.index for f in speaking] == list(range(len(speaking))) and len(speaking) == 100
    assert not any(f.held for f in speaking)
    # offline, on the same source frames: the file path of `infer`, whose references are
    # chosen over the whole file; the stream chooses each over what it has of the audio
    # beyond it (at real-time pace, little), so they differ, but show the same mouth movement
    sources = np.array([f.source for f in speaking])
    wanted = lipsync.audio_features(wav)
    offline = np.concatenate([refs for _, refs in lipsync.chunks(wanted, sources)])[:, 0].astype(int)
    streamed = np.array([f.reference for f in speaking])
    opening = aperture(lip_shapes(lipsync.avatar.landmarks(), lipsync.avatar.boxes()))
    follows = {name: np.corrcoef(opening[refs], aperture(wanted))[0, 1] for name, refs in (("stream", streamed), ("file", offline))}
    assert follows["stream"] > 0.7 and follows["stream"] > follows["file"] - 0.1, follows
    cuts = lambda refs: np.sum(~np.isin(np.diff(refs), (0, 1)))  # noqa: E731
    assert cuts(streamed) <= 2 * cuts(offline) + 5


def test_idle_frames_are_the_recording_and_speech_continues_the_walk(lipsync):
    session = LiveSession(lipsync, width=320)
    idle = [session.next_frame(tick) for tick in range(6)]
    for frame in idle:
        assert frame.utterance is None and frame.image.shape[1] == 320
        np.testing.assert_array_equal(frame.image, lipsync.avatar.frame(frame.source, 320))
    frames = idle + live(session, speech(1.0))
    steps = np.abs(np.diff([f.source for f in frames]))
    assert steps.max() <= 1  # one walk: no jump from idle to speech
    started = next(i for i, f in enumerate(frames) if f.utterance is not None)
    assert started <= len(idle) + 6  # 200 ms of look-ahead after the audio starts, and no more


def test_interrupt_stops_speech_at_the_next_frame(lipsync):
    session = LiveSession(lipsync)
    wav = speech(3.0)
    session.push(wav, now=0.0)
    session.end()
    spoken = [session.next_frame(tick) for tick in range(10)]
    assert all(f.utterance == 0 for f in spoken)
    events = session.interrupt()
    assert events == [{"type": "utterance_ended", "utterance": 0, "interrupted": True}]
    after = session.next_frame(10)
    assert after.utterance is None
    np.testing.assert_array_equal(after.image, lipsync.avatar.frame(after.source))
    # the next utterance starts afresh
    session.push(wav[:16000], now=1.0)
    session.end()
    assert session.next_frame(11).utterance == 1


def test_audio_late_for_its_frame_holds_the_mouth_silently_and_resumes_where_it_paused(lipsync):
    session = LiveSession(lipsync)
    wav = speech(2.0)
    session.push(wav[:8000], now=0.0)  # 0.5 s: frames 0-7 ready
    frames = [session.next_frame(tick) for tick in range(12)]
    speaking = [f for f in frames if f.utterance is not None]
    assert [f.index for f in speaking] == list(range(8)) + [7, 7, 7, 7]
    assert [f.held for f in speaking] == [False] * 8 + [True] * 4
    assert all(np.array_equal(f.audio, wav[640 * f.index : 640 * (f.index + 1)]) for f in speaking[:8])
    assert not any(f.audio.any() for f in speaking[8:])  # a held frame is silent: voice and lips pause together
    session.push(wav[8000:], now=1.0)
    session.end()
    resumed = session.next_frame(12)
    assert resumed.index == 8 and not resumed.held  # nothing skipped: the utterance goes on where it paused
    np.testing.assert_array_equal(resumed.audio, wav[640 * 8 : 640 * 9])


@pytest.mark.parametrize("chunk_ms", [20, 100])
def test_no_speaking_frame_is_held_at_real_time_pace(lipsync, chunk_ms):
    """Chunks of any size at real-time pace: the utterance starts once its buffer bridges
    the gap to the next chunk, then no frame waits for its audio, and each frame carries
    its own 40 ms of the speech."""
    session, wav, chunk = LiveSession(lipsync, width=64), speech(3.0), chunk_ms * 16
    arrivals = {round(i * chunk_ms / 40, 6): wav[i * chunk : (i + 1) * chunk] for i in range(-(-len(wav) // chunk))}
    frames, tick = [], 0
    while tick < 200 and not any(e["type"] == "utterance_ended" for f in frames[-1:] for e in f.events):
        for at in [t for t in arrivals if t <= tick + 0.5]:  # ticks fall half a frame after the audio's grid
            session.push(arrivals.pop(at), now=at * 0.04)
            if not arrivals:
                session.end()
        frames.append(session.next_frame(tick, now=(tick + 0.5) * 0.04))
        tick += 1
    speaking = [f for f in frames if f.utterance is not None]
    assert len(speaking) == 75 and not any(f.held for f in speaking)
    np.testing.assert_array_equal(np.concatenate([f.audio for f in speaking])[: len(wav)], wav)
    first = next(i for i, f in enumerate(frames) if f.utterance is not None)
    assert first * 0.04 <= 0.2 + 0.04 + chunk_ms / 1000 + 0.04  # look-ahead, the frame, one chunk's gap, a tick


def test_audio_conditioned_stream_gives_the_windows_of_the_whole_file(trained_avatar):
    """The U-Net path streams too: AVE features are local in time, so windows computed as
    the audio arrives equal those `infer` computes from the whole file."""
    from synctalk2d.inference.stream import AudioWindows

    lipsync = LipSync(trained_avatar.root)
    wav = speech(3.0)[:-200]
    expected = lipsync.audio_windows(lipsync.audio_features(wav), np.arange(-(-len(wav) // 640)))
    stream, got = AudioWindows(lipsync), []
    for start in range(0, len(wav), 1600):  # 100 ms chunks
        stream.push(wav[start : start + 1600])
        got += stream.take()
        assert len(got) <= max(0, int((start + 1600) / 16000 * 25) - 13)  # 7 future frames + the feature's context
    stream.end()
    got += stream.take()
    np.testing.assert_allclose(np.stack(got), expected, atol=1e-4)
