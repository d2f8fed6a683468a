"""Long renders: audio read in pieces draws the frames a whole file does, memory does not
grow with the length of the speech, and a killed render resumes from its last part."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import decode_rgb, write_speech
from synctalk2d.evaluation.metrics import psnr
from synctalk2d.inference import offline
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.picker import BLOCK
from synctalk2d.inference.schedule import frame_schedule
from synctalk2d.media.audio import load_audio, read_audio


@pytest.fixture(scope="module")
def lipsync(mouth_avatar):
    return LipSync(mouth_avatar.root)


def repeated_speech(path, seconds, rate=16000):
    """Real speech (the 44 kHz fixture, with its pauses) repeated to ``seconds``, as WAV."""
    import soundfile as sf

    speech, _ = load_audio(write_speech(path.with_suffix(".src.wav"), 60.0), sample_rate=rate)
    sf.write(str(path), np.resize(speech, int(seconds * rate)), rate, subtype="PCM_16")
    return path


def test_audio_read_in_pieces_draws_the_frames_of_the_whole_file(lipsync, tmp_path):
    """The same references and crossings exactly; the wanted shapes (which the drawing bends
    the lips to) to float noise, since the mouth model sees the last frames in a batch of
    another size; so the frames are the same but for a grey level here and there."""
    # longer than two of the picker's blocks, in pieces that end inside frames
    audio = repeated_speech(tmp_path / "speech.wav", 2.2 * BLOCK / 25)
    wav, _ = load_audio(audio)
    features = lipsync.audio_features(wav)
    schedule = frame_schedule(len(features), len(lipsync.avatar))
    whole, pieces = list(lipsync.chunks(features, schedule)), list(lipsync.read_chunks(read_audio(audio, seconds=1.37), schedule))
    whole_rows, piece_rows = (np.concatenate([rows for _, rows in chunks]) for chunks in (whole, pieces))
    assert len(whole_rows) == len(piece_rows) == len(schedule) > 2 * BLOCK
    np.testing.assert_array_equal(piece_rows[:, :3], whole_rows[:, :3])
    np.testing.assert_allclose(piece_rows[:, 3:], whole_rows[:, 3:], atol=1e-6)
    drawn = zip(lipsync.generator.frames(whole), lipsync.generator.frames(pieces), strict=True)
    largest = [int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in drawn]
    differing = [k for k, d in enumerate(largest) if d]
    assert len(largest) == len(schedule) and max(largest) <= 8, f"frames {[k for k, d in enumerate(largest) if d > 8][:10]} differ"
    assert len(differing) <= len(schedule) // 100, f"frames {differing[:10]} differ"


class Killed(Exception):
    pass


def kill_at(share):
    """An ``on_progress`` that stops the render once ``share`` of its frames are written."""

    def check(done):
        if done >= share:
            raise Killed

    return check


def test_killed_render_resumes_from_its_last_part(lipsync, tmp_path, monkeypatch):
    monkeypatch.setattr(offline, "PART_SECONDS", 2)
    audio = repeated_speech(tmp_path / "speech.wav", 7.0)
    fresh = offline.render(lipsync, audio, tmp_path / "fresh.mp4", show_progress=False)

    output = tmp_path / "out.mp4"
    with pytest.raises(Killed):
        offline.render(lipsync, audio, output, show_progress=False, on_progress=kill_at(0.7))
    assert not output.exists(), "a killed render left a file at the output path"
    parts = tmp_path / ".out.mp4.parts"
    assert sorted(p.name for p in parts.glob("*.mp4")) == ["part00000.mp4", "part00001.mp4"], "only finished parts stay"

    resumed = offline.render(lipsync, audio, output, show_progress=False)
    part_frames = 56  # 2 s in whole batches of 8
    assert resumed.resumed_frames == 2 * part_frames and resumed.frames == fresh.frames == 175
    assert not parts.exists()
    # the same frames; x264's frame threads may spend a part's bits a little differently
    worst = min(psnr(a, b) for a, b in zip(decode_rgb(output), decode_rgb(fresh.output), strict=True))
    assert worst > 40, f"a resumed frame is {worst:.1f} dB from the uninterrupted render's"


def test_render_with_other_settings_starts_over(lipsync, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(offline, "PART_SECONDS", 2)
    audio = repeated_speech(tmp_path / "speech.wav", 5.0)
    output = tmp_path / "out.mp4"
    with pytest.raises(Killed):
        offline.render(lipsync, audio, output, show_progress=False, on_progress=kill_at(0.7))
    again = offline.render(lipsync, audio, output, crf=23, show_progress=False)
    assert again.resumed_frames == 0
    assert "starting over" in capfd.readouterr().err


PEAK_RSS = textwrap.dedent(
    """
    import os, subprocess, sys
    child = subprocess.Popen([sys.executable, "-m", "synctalk2d", "infer", "--avatar", sys.argv[1], "--audio", sys.argv[2], "-o", sys.argv[3]],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, child.stderr.read().decode()
    print(usage.ru_maxrss // 1024)
    """
)


def peak_rss_mb(avatar, audio, output) -> int:
    """Peak resident memory of `synctalk2d infer` alone, in its own process."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(avatar), str(audio), str(output)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_memory_does_not_grow_with_the_length_of_the_speech(mouth_avatar, tmp_path):
    one = peak_rss_mb(mouth_avatar.root, repeated_speech(tmp_path / "1min.wav", 60), tmp_path / "1min.mp4")
    four = peak_rss_mb(mouth_avatar.root, repeated_speech(tmp_path / "4min.wav", 240), tmp_path / "4min.mp4")
    assert four - one <= 100, f"peak RSS {one} MB for 1 minute of speech, {four} MB for 4"
