"""`synctalk2d evaluate` and `synctalk2d demo` for real: a briefly trained talk_b avatar
(last second held out) and the bundled sample end to end."""

import json
import math
import subprocess
import sys

import av
import pytest

from synctalk2d.timing import MAX_AV_OFFSET

SPEECH_KEYS = {"mouth_psnr_db", "mouth_ssim", "mouth_aperture_r", "best_lag", "lmd_percent_face_width"} | {
    "mouth_sharpness",
    "mouth_movement",
    "audio_usage",
    "r_by_lag",
    "jump_rate",
    "change_p95_over_real",
    "seam_over_real",
}
SYNC_KEYS = {"sync_offset", "sync_confidence"}


def run_cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "synctalk2d", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def evaluated(trained_avatar, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate")
    result = run_cli("evaluate", "--avatar", trained_avatar.root, "--json", out / "report.json", "--preview", out / "preview.mp4")
    assert result.returncode == 0, result.stderr
    return result, json.loads((out / "report.json").read_text()), out / "preview.mp4"


def test_report_covers_the_held_out_tail_and_both_baselines(evaluated):
    result, report, _ = evaluated
    assert report["held_out"] == {"first_frame": 100, "frames": 25, "seconds": 1.0}
    speech = report["speech"]
    assert set(speech) == {"generated", "unchanged", "real"}
    assert SPEECH_KEYS | SYNC_KEYS <= set(speech["generated"]) and SPEECH_KEYS | SYNC_KEYS <= set(speech["unchanged"])
    assert set(speech["generated"]["r_by_lag"]) == {str(lag) for lag in range(-10, 11)}
    assert speech["unchanged"]["audio_usage"] == 0.0 and speech["generated"]["audio_usage"] >= 0
    for name in ("generated", "unchanged"):
        values = speech[name]
        assert math.isfinite(values["mouth_psnr_db"]) and 0 < values["mouth_psnr_db"] < 60
        assert -1 <= values["mouth_ssim"] <= 1 and -1 <= values["mouth_aperture_r"] <= 1
        assert abs(values["best_lag"]) <= MAX_AV_OFFSET and abs(values["sync_offset"]) <= 5
        assert values["mouth_aperture_r"] == pytest.approx(values["r_by_lag"]["0"]), "the headline r is at lag 0"
        assert values["lmd_percent_face_width"] > 0
    assert speech["real"]["mouth_aperture_r"] == 1.0 and speech["real"]["best_lag"] == 0
    # the real tail moves like the rest of its own recording: few jumps, no seam
    assert speech["real"]["jump_rate"] <= 0.1 and 0.9 <= speech["real"]["seam_over_real"] <= 1.1
    assert set(report["silence"]) == {"generated", "unchanged"}
    assert report["silence"]["unchanged"]["mouth_frame_change"] > 0, "the recording's own mouth moves"
    # the human-readable tables name every row and column
    for text in ("mouth PSNR", "SyncNet offset", "generated", "unchanged", "real", "mouth frame-to-frame change", "lip jumps"):
        assert text in result.stdout


def test_preview_is_generated_beside_real_with_the_tail_audio(evaluated, trained_avatar):
    _, _, preview = evaluated
    with av.open(str(preview)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video=0))
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        info = trained_avatar.info
        assert abs(video.width - 2 * info.width * video.height / info.height) <= 2, "two frames side by side"
        assert frames == 25
        assert abs(float(audio.duration * audio.time_base) - 1.0) < 0.1


def test_avatar_without_holdout_is_a_clear_error(trained_avatar, tmp_path):
    import shutil

    root = tmp_path / "avatar"
    shutil.copytree(trained_avatar.root, root)
    record = json.loads((root / "train.json").read_text())
    end = record["num_frames"]
    (root / "train.json").write_text(json.dumps({**record, "holdout_seconds": 0.0, "holdout_frames": [end, end]}))
    result = run_cli("evaluate", "--avatar", root)
    assert result.returncode == 1
    assert "--holdout-seconds" in result.stderr and "Traceback" not in result.stderr


def test_demo_end_to_end_with_a_tiny_budget(tmp_path):
    """`synctalk2d demo`: the bundled clip preprocessed, trained (a few seconds), rendered
    with the bundled speech and evaluated; a second run reuses all of it."""
    workdir = tmp_path / "demo"
    result = run_cli("demo", "--workdir", workdir, "--minutes", "0.2")
    assert result.returncode == 0, result.stderr
    video = workdir / "demo.mp4"
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    assert abs(frames - math.ceil(seconds * 25)) <= 1 and 11 < seconds < 13, "the bundled 12 s speech"
    assert "demo video:" in result.stderr + result.stdout and "mouth PSNR" in result.stdout
    assert (workdir / "avatar" / "checkpoints" / "mouth" / "best.safetensors").is_file()
    again = run_cli("demo", "--workdir", workdir, "--minutes", "0.2")
    assert again.returncode == 0, again.stderr
    assert (again.stderr + again.stdout).count("already trained") == 1


def test_mouth_conditioned_avatar_reports_why(mouth_avatar):
    """The mouth model's own r (the render's ceiling), r by lag, sharpness against the real
    mouths, and audio usage: swapping the audio changes a mouth-conditioned render."""
    from synctalk2d.evaluation.evaluate import evaluate

    report = evaluate(mouth_avatar.root, show_progress=False)
    assert report["conditioning"] == "mouth"
    assert -1 <= report["mouth_model"]["mouth_aperture_r"] <= 1 and len(report["mouth_model"]["r_by_lag"]) == 21
    for values in (report["mouth_model"], report["speech"]["generated"]):
        assert values["mouth_aperture_r"] == pytest.approx(values["r_by_lag"][0]), "the headline r is at lag 0"
        assert "mouth_aperture_r_at_recording_delay" in values
    generated, real = report["speech"]["generated"], report["speech"]["real"]
    assert SPEECH_KEYS <= set(generated) and not SYNC_KEYS & set(generated)
    assert generated["audio_usage"] > 1.0, "the rendered mouth depends on the audio"
    assert generated["mouth_sharpness"] > 0.5 * real["mouth_sharpness"], "real mouths, not a blur"
    assert generated["mouth_movement"] > 0.3 * real["mouth_movement"], "the mouth moves while speaking, not a mumble"
    assert report["silence"]["generated"]["mouth_aperture_std"] < report["silence"]["unchanged"]["mouth_aperture_std"]
