"""MediaPipe's face mesh behind `LandmarkDetector`: found on real faces, large and small,
mapped to the iBUG layout the pipeline reads, agreeing with dlib where both see the same lips."""

import numpy as np
import pytest

from conftest import fixture_path
from synctalk2d.face.landmarks import FaceTracker
from synctalk2d.face.mesh import IBUG_FROM_MESH, INNER_LIP, OUTER_LIP, FaceDetector, MeshTracker, ssd_anchors
from synctalk2d.media.video import iter_frames

IBUG_GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48), "lips": range(48, 68)}


def frames(name: str, count: int) -> list[np.ndarray]:
    out = []
    for image in iter_frames(fixture_path(name), 25, "bgr24"):
        out.append(image)
        if len(out) == count:
            break
    return out


def test_the_mapping_names_68_distinct_mesh_vertices_and_whole_lip_contours():
    assert IBUG_FROM_MESH.shape == (68,) and len(set(IBUG_FROM_MESH.tolist())) == 68
    assert IBUG_FROM_MESH.min() >= 0 and IBUG_FROM_MESH.max() < 468
    # every iBUG lip point is a vertex of the mesh's own lip contours, inner on inner, outer on outer
    assert set(IBUG_FROM_MESH[48:60]) <= set(OUTER_LIP) and set(IBUG_FROM_MESH[60:68]) <= set(INNER_LIP)
    assert len(ssd_anchors()) == 896


def test_mapped_points_lie_where_ibug_puts_them_on_a_frontal_face():
    """On talk_b (a frontal speaker), the mapped points keep iBUG's order: the jaw runs from
    the image's left to its right through the chin, eyes and mouth corners left to right,
    nose between the eyes and the mouth, inner lips inside the outer lips."""
    tracker = MeshTracker()
    for image in frames("talk_b.mp4", 10):
        p = tracker(image)
        assert p is not None and p.shape == (68, 2) and p.dtype == np.float32
        assert np.argmax(p[0:17, 1]) in (7, 8, 9), "the chin is the jaw's lowest point"
        assert p[0, 0] < p[8, 0] < p[16, 0]
        assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]
        assert p[48, 0] < p[51, 0] < p[54, 0] and p[60, 0] < p[62, 0] < p[64, 0]
        assert p[27, 1] < p[30, 1] < p[51, 1] < p[62, 1] <= p[66, 1] < p[57, 1] < p[8, 1]
        assert p[48, 0] <= p[60, 0] and p[64, 0] <= p[54, 0]


def test_mesh_agrees_with_dlib_on_the_same_frames():
    """Per point group, the mapped mesh lies within a few % of the eye distance of dlib's
    iBUG points, and the two inner-lip openings rise and fall together."""
    mesh, dlib = MeshTracker(), FaceTracker()
    pairs = [(mesh(f), dlib(f)) for f in frames("talk_b.mp4", 60)]
    a, b = np.stack([p for p, _ in pairs]), np.stack([q for _, q in pairs])
    eyes = np.linalg.norm(b[:, 36] - b[:, 45], axis=1)[:, None]
    error = {k: float((np.linalg.norm(a - b, axis=2) / eyes)[:, list(v)].mean()) for k, v in IBUG_GROUPS.items()}
    assert error["lips"] < 0.06 and error["eyes"] < 0.04 and error["nose"] < 0.08 and error["jaw"] < 0.15, error
    gap = lambda x: np.linalg.norm(x[:, 62] - x[:, 66], axis=1) / np.linalg.norm(x[:, 1] - x[:, 15], axis=1)  # noqa: E731
    assert np.corrcoef(gap(a), gap(b))[0, 1] > 0.85


def test_a_small_face_in_a_tall_frame_is_found():
    """speaker_20s: a standing speaker, face about a tenth of the 1080x1920 frame's height."""
    tracker = MeshTracker()
    found = [tracker(f) for f in frames("speaker_20s.mp4", 8)]
    assert all(p is not None for p in found)
    assert 0.05 < (found[0][16, 0] - found[0][0, 0]) / 1080 < 0.5


def test_the_track_is_lost_on_a_frame_without_a_face_and_found_again():
    tracker = MeshTracker()
    first, second = frames("talk_b.mp4", 2)
    assert tracker(first) is not None and tracker.region is not None
    assert tracker(np.full_like(first, 128)) is None and tracker.region is None
    assert FaceDetector()(np.full_like(first, 128)) == []
    again = tracker(second)  # from a fresh detection; the next call tracks from this mesh
    width = again[16, 0] - again[0, 0]
    assert again is not None and np.abs(again - tracker(second)).max() < 0.03 * width


@pytest.mark.parametrize("name", ["face_detection_short_range.tflite", "face_landmark.tflite", "LICENSE", "NOTICE"])
def test_the_models_ship_with_their_licence(name):
    from synctalk2d.face.mesh import MODELS_DIR

    assert (MODELS_DIR / name).is_file()
