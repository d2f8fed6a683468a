"""`synctalk2d infer` for real: a briefly trained fixture avatar renders real speech."""

import math
import re
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
import soundfile as sf

from conftest import write_speech
from synctalk2d.evaluation.metrics import mean_frame_change, psnr
from synctalk2d.face.blend import seam_energy
from synctalk2d.media.audio import load_audio

FAST = ["--backend", "torch", "--precision", "fp32"]


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "synctalk2d", *map(str, args)], capture_output=True, text=True, timeout=timeout)


def read_video(path):
    with av.open(str(path)) as c:
        video, audio = c.streams.video[0], c.streams.audio[0]
        meta = (
            video.codec_context.name,
            video.codec_context.pix_fmt,
            video.average_rate,
            video.width,
            video.height,
            audio.codec_context.name,
            audio.rate,
            audio.channels,
        )
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return meta, frames


@pytest.fixture(scope="module")
def rendered(trained_avatar, tmp_path_factory):
    """Stereo 44.1 kHz speech with a trailing second of silence, rendered once."""
    d = tmp_path_factory.mktemp("render")
    audio = write_speech(d / "speech.wav", 2.3, silence_after=1.0, channels=2, rate=44100)
    result = run_cli("infer", "--avatar", trained_avatar.root, "--audio", audio, "-o", d / "out.mp4", *FAST)
    assert result.returncode == 0, result.stderr
    return audio, d / "out.mp4"


def test_output_stream_is_what_users_publish(trained_avatar, rendered):
    audio, output = rendered
    (vcodec, pix_fmt, rate, width, height, acodec, audio_rate, channels), frames = read_video(output)
    info = trained_avatar.info
    assert (vcodec, pix_fmt, rate, acodec) == ("h264", "yuv420p", 25, "aac")
    assert (audio_rate, channels) == (44100, 2), "the input's own audio, not the models' 16 kHz mono"
    assert (width, height) == (info.width, info.height)
    source, _ = load_audio(audio)
    assert len(frames) == math.ceil(len(source) / 16000 * 25) == 83
    out_audio, _ = load_audio(output)
    assert abs(len(out_audio) - len(source)) / 16000 < 0.05


def test_loop_back_returns_to_the_start_frame(trained_avatar, rendered):
    _, frames = read_video(rendered[1])
    first_source = trained_avatar.frame(0)
    top = slice(0, trained_avatar.boxes()[0][1] - 10)  # above the face box: untouched by the paste
    assert np.abs(frames[-1][top].astype(int) - first_source[top].astype(int)).mean() < 3
    assert np.abs(frames[0][top].astype(int) - first_source[top].astype(int)).mean() < 3


def test_no_visible_seam(trained_avatar, rendered):
    _, frames = read_video(rendered[1])
    boxes = trained_avatar.boxes()
    for k in (0, 20, 40):  # loop-back schedule: output k shows source k for the first half
        source, box = trained_avatar.frame(k), boxes[k]
        assert abs(seam_energy(frames[k], box) - seam_energy(source, box)) < 0.15 * seam_energy(source, box)


def test_trailing_silence_keeps_the_mouth_still(trained_avatar, tmp_path):
    """Speech then silence: the last 0.6 s get silence windows, so on a fixed source frame
    the generated mouth does not move at all."""
    from synctalk2d.inference.lipsync import LipSync
    from synctalk2d.media.audio import load_audio

    audio = write_speech(tmp_path / "speech.wav", 2.0, silence_after=1.0)
    lipsync = LipSync(trained_avatar.root, backend="torch", precision="fp32")
    features = lipsync.audio_features(load_audio(audio)[0])
    last = np.arange(len(features) - 15, len(features))
    silent = np.stack(list(lipsync.generator.frames([(np.full(15, 10), lipsync.audio_windows(features, last))])))
    x1, y1, x2, y2 = (int(v) for v in trained_avatar.boxes()[10])
    assert mean_frame_change(silent[:, y1:y2, x1:x2]) < 0.5
    assert np.abs(np.diff(lipsync.audio_windows(features, last[-7:]), axis=0)).max() == 0


@pytest.mark.parametrize("suffix", [".mp3", ".m4a", ".flac"])
def test_compressed_audio_inputs(trained_avatar, tmp_path, suffix):
    audio = write_speech(tmp_path / f"speech{suffix}", 1.0, rate=44100 if suffix == ".mp3" else 22050)
    result = run_cli("infer", "--avatar", trained_avatar.root, "--audio", audio, "-o", tmp_path / "out.mp4", *FAST)
    assert result.returncode == 0, result.stderr
    _, frames = read_video(tmp_path / "out.mp4")
    assert len(frames) == math.ceil(load_audio(audio)[0].size / 16000 * 25)


def test_silent_audio_is_valid(trained_avatar, tmp_path):
    audio = write_speech(tmp_path / "silence.wav", 0.0, silence_after=1.0)
    result = run_cli("infer", "--avatar", trained_avatar.root, "--audio", audio, "-o", tmp_path / "out.mp4", *FAST)
    assert result.returncode == 0, result.stderr
    assert len(read_video(tmp_path / "out.mp4")[1]) == 25


def test_batch_mode_continues_past_a_bad_file(trained_avatar, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_speech(inputs / "a.wav", 0.8)
    write_speech(inputs / "b.mp3", 0.6, rate=44100)
    (inputs / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    result = run_cli("infer", "--avatar", trained_avatar.root, "--audio", inputs, "-o", tmp_path / "out", *FAST)
    assert result.returncode == 1
    assert "broken.wav" in result.stderr and "1 of 3 files failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mp4", "b.mp4"]


def test_onnx_export_and_backend(trained_avatar, tmp_path):
    """`export` writes AVATAR/unet.onnx; `infer --backend onnx` runs that file, and its
    output matches PyTorch's."""
    root = tmp_path / "avatar"
    shutil.copytree(trained_avatar.root, root)
    result = run_cli("export", "--avatar", root)
    assert result.returncode == 0, result.stderr
    assert (root / "unet.onnx").stat().st_size > 1_000_000
    audio = write_speech(tmp_path / "speech.wav", 0.6)

    def render(backend, name):
        out = tmp_path / f"{name}.mp4"
        result = run_cli("infer", "--avatar", root, "--audio", audio, "-o", out, "--backend", backend, "--precision", "fp32")
        assert result.returncode == 0, result.stderr
        return np.stack(read_video(out)[1]), result.stderr

    torch_frames, _ = render("torch", "torch")
    onnx_frames, log = render("onnx", "onnx")
    assert "older than" not in log
    assert psnr(onnx_frames, torch_frames) > 40

    # The exported file is what runs: swap in an untrained U-Net's export and the output changes.
    from synctalk2d.inference.runtime import export_onnx
    from synctalk2d.models.checkpoint import load_unet
    from synctalk2d.models.unet import UNet

    export_onnx(UNet(load_unet(root).config), root / "unet.onnx")
    swapped, _ = render("onnx", "swapped")
    assert psnr(swapped, torch_frames) < 35


def test_int8_from_the_cli(trained_avatar, tmp_path):
    """int8 implies onnxruntime, calibrates on the avatar's own frames and is checked against
    fp32 at load: one line says what runs and the PSNR measured (fp32 when int8 fails it)."""
    root = tmp_path / "avatar"
    shutil.copytree(trained_avatar.root, root)
    audio = write_speech(tmp_path / "speech.wav", 0.5)
    result = run_cli("infer", "--avatar", root, "--audio", audio, "-o", tmp_path / "out.mp4", "--precision", "int8")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^U-Net on onnx (int8|fp32) \(cpu\): .*\d dB PSNR from fp32", result.stderr, re.M), result.stderr
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in trained_avatar.root.iterdir()), "nothing written into the avatar"


def test_refused_precision_says_why(trained_avatar, tmp_path):
    audio = write_speech(tmp_path / "speech.wav", 0.5)
    result = run_cli("infer", "--avatar", trained_avatar.root, "--audio", audio, "-o", tmp_path / "out.mp4", "--backend", "torch", "--precision", "int8")
    assert result.returncode == 1
    assert result.stderr.strip() == "synctalk2d: error: int8 runs on onnxruntime only: use --backend onnx (or auto) with --precision int8"


@pytest.fixture(scope="module")
def other_avatar(trained_avatar, tmp_path_factory):
    """A second avatar (re-preprocessed, so a new identity) given the first one's checkpoints."""
    from conftest import fixture_path
    from synctalk2d.preprocess import preprocess

    root = tmp_path_factory.mktemp("other") / "talk_c"
    preprocess(fixture_path("talk_c.mp4"), root, show_progress=False)
    return root


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing audio", "no such file"),
        ("corrupt audio", "not a readable audio file"),
        ("empty audio", "audio"),
        ("untrained avatar", "is not trained"),
        ("foreign checkpoint", "trained on another avatar"),
    ],
)
def test_bad_input_gives_one_clear_line(trained_avatar, other_avatar, tmp_path, case, message):
    avatar, audio = trained_avatar.root, write_speech(tmp_path / "ok.wav", 0.5)
    if case == "missing audio":
        audio = tmp_path / "nope.wav"
    elif case == "corrupt audio":
        audio = tmp_path / "corrupt.mp3"
        audio.write_bytes(b"\xff\xfb" + bytes(range(256)) * 4)
    elif case == "empty audio":
        audio = tmp_path / "empty.wav"
        sf.write(audio, np.zeros(0, np.float32), 16000)
    elif case == "untrained avatar":
        avatar = other_avatar
    elif case == "foreign checkpoint":
        avatar = tmp_path / "foreign"
        shutil.copytree(other_avatar, avatar)
        shutil.copytree(trained_avatar.root / "checkpoints", avatar / "checkpoints")
    result = run_cli("infer", "--avatar", avatar, "--audio", audio, "-o", tmp_path / "out.mp4", *FAST)
    assert result.returncode == 1
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("U-Net on ")]  # the load line
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "out.mp4").exists()
