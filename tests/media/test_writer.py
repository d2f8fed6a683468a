import av
import numpy as np
import pytest

from conftest import decode_rgb, fixture_path
from synctalk2d.media.writer import VideoWriter

N = 30  # frames: 1.2 s at 25 fps


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


@pytest.fixture(scope="module")
def frames():
    return decode_rgb(fixture_path("talk_e.mp4"), N)


@pytest.fixture(scope="module")
def speech():
    """Mono float32 speech at 44.1 kHz, the first 2 s."""
    with av.open(str(fixture_path("speech_44k.wav"))) as c:
        resampler = av.AudioResampler(format="flt", layout="mono")
        chunks = [out.to_ndarray().reshape(-1) for f in c.decode(audio=0) for out in resampler.resample(f)]
    return np.concatenate(chunks)[: 2 * 44100]


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    n = round(len(x) * rate / 44100)
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


# 16 kHz mono (what inference writes), 44.1 kHz stereo, and a rate AAC cannot carry
@pytest.mark.parametrize("rate, channels, encoded_rate", [(16000, 1, 16000), (44100, 2, 44100), (10000, 1, 48000)])
def test_h264_aac_mp4_in_sync_with_exact_frames(tmp_path, frames, speech, rate, channels, encoded_rate):
    mono = resample(speech, rate)[: rate * N // 25]
    audio = mono if channels == 1 else np.stack([mono, mono * 0.5], axis=1)
    path = tmp_path / "out.mp4"
    h, w = frames[0].shape[:2]
    with VideoWriter(path, w, h, fps=25, crf=18, audio=audio, sample_rate=rate) as writer:
        writer.write_batch(frames[:10])
        for frame in frames[10:]:
            writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    with av.open(str(path)) as c:
        video, sound = c.streams.video[0], c.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt, video.average_rate) == ("h264", "yuv420p", 25)
        assert (video.width, video.height) == (w, h)
        assert (sound.codec_context.name, sound.channels, sound.rate) == ("aac", channels, encoded_rate)
        assert float(sound.duration * sound.time_base) == pytest.approx(N / 25, abs=1e-3)
        decoded = list(c.decode(video=0))
    with av.open(str(path)) as c:
        pcm = list(c.decode(audio=0))
    assert len(decoded) == N
    assert decoded[0].time == 0 and pcm[0].time == 0  # both tracks start together
    assert min(psnr(f.to_ndarray(format="rgb24"), src) for f, src in zip(decoded, frames)) > 35
    samples = sum(f.samples for f in pcm)  # decoders keep the last frame's padding: < 1 AAC frame
    assert 0 <= samples - N / 25 * encoded_rate < 1024
    # the same sound at the same time (no encoder delay left at the start)
    first_channel = np.concatenate([f.to_ndarray()[0] for f in pcm])[: round(N / 25 * encoded_rate)]
    expected = np.interp(np.arange(len(first_channel)) * rate / encoded_rate, np.arange(len(mono)), mono)
    assert np.corrcoef(first_channel, expected)[0, 1] > 0.95


def test_interrupted_write_leaves_no_file(tmp_path, frames):
    path = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError):
        with VideoWriter(path, frames[0].shape[1], frames[0].shape[0]) as writer:
            writer.write(frames[0])
            assert len(list(tmp_path.iterdir())) == 1 and not path.exists()  # only the hidden temp
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


def test_bad_input_leaves_no_file(tmp_path, frames):
    with pytest.raises(ValueError, match="frame is"):
        with VideoWriter(tmp_path / "bad.mp4", 100, 100) as writer:
            writer.write(np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", 100, 100):
            pass
    with pytest.raises(ValueError, match="stereo"):
        VideoWriter(tmp_path / "bad_audio.mp4", 100, 100, audio=np.zeros((10, 3), np.float32), sample_rate=16000)
    assert list(tmp_path.iterdir()) == []


def test_odd_sizes_are_padded_not_cropped(tmp_path, frames):
    odd = [np.ascontiguousarray(f[:301, :299]) for f in frames[:5]]
    with VideoWriter(tmp_path / "odd.mp4", 299, 301) as writer:
        writer.write_batch(odd)
    first = decode_rgb(tmp_path / "odd.mp4", 1)[0]
    assert first.shape == (302, 300, 3)
    assert psnr(first[:301, :299], odd[0]) > 35


def test_smooth_image_round_trip(tmp_path):
    """A smooth colour gradient survives RGB->yuv420p->H.264->RGB (same BT.601 matrix and
    range on both sides), so colours do not shift."""
    y, x = np.mgrid[0:240, 0:320].astype(np.float32)
    image = np.stack([x / 320 * 255, y / 240 * 255, 128 + 60 * np.sin(x / 40) * np.cos(y / 30)], -1).astype(np.uint8)
    with VideoWriter(tmp_path / "smooth.mp4", 320, 240) as writer:
        writer.write_batch([image] * 3)
    decoded = decode_rgb(tmp_path / "smooth.mp4")
    assert len(decoded) == 3 and all(psnr(d, image) > 40 for d in decoded)
    # ~1 level low is the decoder's own YUV->RGB rounding (PyAV's round trip of its own
    # yuv420p frame shows the same). A wrong matrix (BT.709) would cost ~7 levels of mean
    # error (PSNR above), a wrong range (full) a bias beyond 2 and lost contrast.
    assert np.abs(decoded[0].astype(float).mean(axis=(0, 1)) - image.mean(axis=(0, 1))).max() < 2
