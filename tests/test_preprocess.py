import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import decode_rgb, encode_clip, fixture_path
from synctalk2d.avatar import Avatar
from synctalk2d.media.audio import load_audio


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "synctalk2d", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_avatar_is_complete_and_consistent(talk_b_avatar):
    info = talk_b_avatar.info
    assert (info.fps, info.num_frames, info.width, info.height) == (25, 125, 844, 844)
    assert info.source == "talk_b.mp4" and info.face_detected_share == 1.0
    n = info.num_frames
    assert sorted(p.name for p in talk_b_avatar.frames_dir.iterdir()) == [f"{i:06d}.jpg" for i in range(n)]
    assert talk_b_avatar.frame(n - 1).shape == (844, 844, 3)
    assert talk_b_avatar.landmarks().shape == (n, 68, 2)
    assert talk_b_avatar.boxes().shape == (n, 4)
    assert talk_b_avatar.crops().shape == (n, 328, 328, 3)
    wav, rate = sf.read(talk_b_avatar.audio_path)
    assert rate == 16000 and wav.ndim == 1 and len(wav) == n * 640
    assert talk_b_avatar.mel().shape == (1 + n * 640 // 200, 80)
    source, _ = load_audio(fixture_path("talk_b.mp4"))
    assert np.corrcoef(wav[: 16000 * 4], source[: 16000 * 4])[0, 1] > 0.99, "audio aligned with the video"
    assert not list(talk_b_avatar.root.parent.glob(".*partial*")), "no work directory left behind"


def test_audio_option_wins_and_existing_avatar_is_kept(tmp_path):
    root = tmp_path / "portrait"
    result = run_cli("preprocess", fixture_path("silent_portrait_22s.mp4"), "--avatar", root, "--audio", fixture_path("speech_44k.wav"))
    assert result.returncode == 0, result.stderr
    assert "avatar ready" in result.stderr
    avatar = Avatar.open(root)
    info = avatar.info
    assert info.num_frames == 550 and info.audio_source == "speech_44k.wav"
    wav, _ = sf.read(avatar.audio_path)
    assert len(wav) == 550 * 640
    speech, _ = load_audio(fixture_path("speech_44k.wav"))
    assert np.corrcoef(wav[: 16000 * 5], speech[: 16000 * 5])[0, 1] > 0.99
    created = info.created

    again = run_cli("preprocess", fixture_path("talk_c.mp4"), "--avatar", root)
    assert again.returncode == 1 and "--force" in again.stderr
    assert Avatar.open(root).info.created == created

    forced = run_cli("preprocess", fixture_path("talk_c.mp4"), "--avatar", root, "--force")
    assert forced.returncode == 0, forced.stderr
    assert Avatar.open(root).info.source == "talk_c.mp4" and Avatar.open(root).info.num_frames == 125


def test_interrupted_run_leaves_nothing_complete_and_restarts(tmp_path):
    root = tmp_path / "speaker"
    cmd = [sys.executable, "-m", "synctalk2d", "preprocess", str(fixture_path("speaker_20s.mp4")), "--avatar", str(root)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    frames = tmp_path / ".speaker.partial" / "frames"
    deadline = time.time() + 120
    while time.time() < deadline and not (frames.is_dir() and len(list(frames.iterdir())) > 40):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not Avatar(root).is_complete()
    result = run_cli(*cmd[3:])
    assert result.returncode == 0, result.stderr
    avatar = Avatar.open(root)
    assert avatar.info.num_frames == 502
    assert (avatar.info.width, avatar.info.height) == (1080, 1920)
    assert not (tmp_path / ".speaker.partial").exists()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    speech, _ = load_audio(fixture_path("speech_hb.wav"))
    background = [f[:320, :320] for f in decode_rgb(fixture_path("speaker_20s.mp4"), limit=100)]  # tiles, no face
    encode_clip(background, d / "no_face.mp4", audio=speech[: 4 * 16000])
    short = decode_rgb(fixture_path("talk_b.mp4"), limit=50)
    encode_clip(short, d / "short.mp4", audio=speech[: 2 * 16000])
    full = decode_rgb(fixture_path("talk_b.mp4"))
    encode_clip(full, d / "faststart.mp4", audio=speech[: 5 * 16000], faststart=True)
    data = (d / "faststart.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    (d / "truncated_moov_last.mp4").write_bytes(fixture_path("talk_b.mp4").read_bytes()[:200_000])
    (d / "not_media.mp4").write_text("this is not a video\n")
    return d


@pytest.mark.parametrize(
    "video,message",
    [
        ("missing.mp4", "no such file"),
        ("not_media.mp4", "not a readable video"),
        ("truncated.mp4", "truncated or corrupt"),
        ("truncated_moov_last.mp4", "not a readable video"),
        ("@speech_hb.wav", "no video stream"),
        ("@silent_portrait_22s.mp4", "no audio track; pass the recording's audio with --audio"),
        ("no_face.mp4", "no face"),
        ("short.mp4", "at least 3 s"),
    ],
)
def test_bad_input_gives_one_clear_line(bad_inputs, tmp_path, video, message):
    path = fixture_path(video[1:]) if video.startswith("@") else bad_inputs / video
    result = run_cli("preprocess", path, "--avatar", tmp_path / "avatar")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("synctalk2d: error:") and message in lines[0]
    assert "Traceback" not in result.stderr
    assert not Avatar(tmp_path / "avatar").is_complete()
    assert not (tmp_path / ".avatar.partial").exists(), "a failed run cleans up after itself"


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("preprocess", tmp_path / "missing.mp4", "--avatar", tmp_path / "a", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "no such file" in result.stderr


def test_another_landmark_detector_can_be_plugged_in(tmp_path):
    """The landmark model sits behind `LandmarkDetector`: preprocess uses the one it is given
    for every frame and records its name; ``landmarks="dlib"`` selects dlib's by name."""
    from synctalk2d.face.landmarks import FaceTracker
    from synctalk2d.preprocess import preprocess

    class CountingTracker(FaceTracker):
        name = "dlib 68-point, counted"

        def __init__(self):
            super().__init__()
            self.calls = 0

        def __call__(self, frame):
            assert frame.ndim == 3, "detectors get the colour frame"
            self.calls += 1
            return super().__call__(frame)

    detector = CountingTracker()
    avatar = Avatar.open(preprocess(fixture_path("talk_b.mp4"), tmp_path / "plugged", show_progress=False, detector=detector).avatar)
    assert detector.calls == len(avatar) and avatar.info.landmark_model == "dlib 68-point, counted"
    by_name = Avatar.open(preprocess(fixture_path("talk_b.mp4"), tmp_path / "dlib", show_progress=False, landmarks="dlib").avatar)
    assert by_name.info.landmark_model.startswith("dlib")
    np.testing.assert_allclose(avatar.landmarks(), by_name.landmarks(), atol=1e-3)
