import av
import cv2
import numpy as np
import pytest

from conftest import fixture_path
from synctalk2d.evaluation.metrics import psnr
from synctalk2d.media.audio import load_audio
from synctalk2d.media.writer import VideoWriter


@pytest.fixture(scope="module")
def frames():
    with av.open(str(fixture_path("talk_e.mp4"))) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(30), c.decode(video=0))]


@pytest.mark.parametrize("channels", [1, 2])
def test_h264_aac_mp4_with_exact_frames(tmp_path, frames, channels):
    speech, _ = load_audio(fixture_path("speech_44k.wav"))
    audio = speech[: 16000 * 30 // 25]
    if channels == 2:
        audio = np.stack([audio, audio * 0.5], axis=1)
    path = tmp_path / "out.mp4"
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=25, crf=18, audio=audio, sample_rate=16000) as writer:
        for frame in frames:
            writer.write(frame)
    with av.open(str(path)) as c:
        video, sound = c.streams.video[0], c.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt, video.average_rate) == ("h264", "yuv420p", 25)
        assert (video.width, video.height) == (w, h)
        assert sound.codec_context.name == "aac" and sound.channels == channels
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(decoded) == len(frames)
    assert min(psnr(a, b) for a, b in zip(decoded, frames)) > 35
    seconds, _ = load_audio(path)
    assert abs(len(seconds) / 16000 - 30 / 25) < 1024 / 44100 + 0.01


def test_interrupted_write_leaves_no_file(tmp_path, frames):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, frames[0].shape[1], frames[0].shape[0]) as writer:
            writer.write(frames[0])
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_padded_not_cropped(tmp_path, frames):
    odd = [np.ascontiguousarray(f[:301, :299]) for f in frames[:5]]
    with VideoWriter(tmp_path / "odd.mp4", 299, 301) as writer:
        for frame in odd:
            writer.write(frame)
    with av.open(str(tmp_path / "odd.mp4")) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert first.shape == (302, 300, 3)
    assert psnr(first[:301, :299], odd[0]) > 35
    with pytest.raises(ValueError, match="frame is"):
        with VideoWriter(tmp_path / "bad.mp4", 100, 100) as writer:
            writer.write(np.zeros((50, 50, 3), np.uint8))
