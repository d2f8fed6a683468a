import math
import struct

import av
import numpy as np
import pytest

from conftest import decode_rgb, encode_clip, fixture_path
from synctalk2d.errors import UserError
from synctalk2d.media.video import iter_frames, probe_video


def _source_frames_with_times(path):
    with av.open(str(path)) as c:
        frames = [(f.time, f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
    t0 = frames[0][0]
    return [(t - t0, img) for t, img in frames]


@pytest.mark.parametrize("name,expected", [("talk_a.mp4", 153), ("talk_d.mp4", 166)])
def test_resamples_to_25fps_by_timestamp(name, expected):
    """22.13 fps and 30 fps sources: frame i is the source frame on screen at i/25."""
    path = fixture_path(name)
    out = list(iter_frames(path))
    assert len(out) == expected == math.ceil(probe_video(path).duration * 25 - 1e-6)
    source = _source_frames_with_times(path)
    times = np.array([t for t, _ in source])
    for i in range(0, len(out), 7):
        on_screen = int(np.searchsorted(times, i / 25 + 5e-4, side="right") - 1)
        assert np.array_equal(out[i], source[on_screen][1]), f"frame {i}"


def test_variable_frame_rate(tmp_path):
    """Irregular timestamps map to the frame on screen at each 25 fps tick."""
    base = decode_rgb(fixture_path("talk_c.mp4"), limit=6)
    pts_ms = [0, 30, 130, 140, 200, 330]  # gaps of 30..130 ms
    path = encode_clip(base, tmp_path / "vfr.mp4", time_base="1/1000", pts=pts_ms)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    out = list(iter_frames(path))
    # ticks at 0,40,80,120,160,200,240,280,320 ms; the last frame lasts as long as its predecessor gap
    expected_source = [0, 1, 1, 1, 3, 4, 4, 4, 4]
    assert len(out) >= len(expected_source)
    for tick, src in enumerate(expected_source):
        assert np.array_equal(out[tick], decoded[src]), f"tick {tick}"


def _set_display_matrix_90_clockwise(path):
    """Patch the first tkhd box's matrix to a 90-degree clockwise display rotation
    (the matrix a phone writes for a portrait recording)."""
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") - 4
    version = data[at + 8]
    matrix_at = at + (48 if version == 0 else 60)
    matrix = [0, 0x10000, 0, -0x10000 & 0xFFFFFFFF, 0, 0, 0, 0, 0x40000000]
    data[matrix_at : matrix_at + 36] = struct.pack(">9I", *matrix)
    path.write_bytes(bytes(data))


def test_rotation_metadata_is_applied(tmp_path):
    frames = [f[:, :300] for f in decode_rgb(fixture_path("talk_b.mp4"), limit=3)]  # 844x300, not square
    path = encode_clip(frames, tmp_path / "rot.mp4")
    plain = list(iter_frames(path))
    _set_display_matrix_90_clockwise(path)
    info = probe_video(path)
    assert (info.width, info.height) == (844, 300)
    rotated = list(iter_frames(path))
    assert rotated[0].shape == (300, 844, 3)
    assert np.array_equal(rotated[0], np.rot90(plain[0], k=-1))


def test_no_video_stream():
    with pytest.raises(UserError, match="no video stream"):
        list(iter_frames(fixture_path("speech_hb.wav")))
