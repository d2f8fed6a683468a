"""The landmark-driven warp that moves a frame's own jaw."""

import numpy as np

from conftest import decode_rgb, fixture_path
from synctalk2d.face.warp import delaunay, warp_region


def test_what_is_at_a_source_point_arrives_at_its_destination_and_the_border_stays():
    frame = decode_rgb(fixture_path("talk_b.mp4"), limit=1)[0]
    h, w = frame.shape[:2]
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    x1, y1, x2, y2 = box
    border = np.array([[x, y] for x in (x1, (x1 + x2) / 2, x2 - 1) for y in (y1, (y1 + y2) / 2, y2 - 1)], np.float32)
    border = border[np.any(border != ((x1 + x2) / 2, (y1 + y2) / 2), axis=1)]
    centre = np.array([[(x1 + x2) / 2 - 10, (y1 + y2) / 2 - 6]], np.float32)
    moved = centre + (7, 12)
    out = warp_region(frame, np.concatenate([border, centre]), np.concatenate([border, moved]), box)
    cx, cy = np.round(centre[0]).astype(int)
    mx, my = np.round(moved[0]).astype(int)
    patch = frame[cy - 2 : cy + 3, cx - 2 : cx + 3].astype(np.float32)
    assert np.abs(out[my - y1 - 2 - 0 : my - y1 + 3, mx - x1 - 2 : mx - x1 + 3] - patch).mean() < 6
    assert np.abs(out[0].astype(np.float32) - frame[y1, x1:x2]).mean() < 1  # the top edge has not moved
    same = warp_region(frame, np.concatenate([border, centre]), np.concatenate([border, centre]), box)
    assert np.abs(same.astype(np.float32) - frame[y1:y2, x1:x2]).max() <= 1


def test_the_triangles_tile_the_hull_of_the_points_once():
    # a hole would leave pixels unwarped inside the face, an overlap would fold it
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.uniform(100, 400, (40, 2)), [[100, 100], [400, 100], [100, 400], [400, 400], [250, 100]]]).astype(np.float32)
    points = np.concatenate([points, points[:1]])  # a repeated point is one vertex
    triangles = delaunay(points)
    corners = points[triangles].astype(np.float64)
    (ax, ay), (bx, by) = (corners[:, 1] - corners[:, 0]).T, (corners[:, 2] - corners[:, 0]).T
    areas = 0.5 * np.abs(ax * by - ay * bx)
    assert areas.min() > 0
    assert abs(areas.sum() - 300 * 300) < 1e-3 * 300 * 300
