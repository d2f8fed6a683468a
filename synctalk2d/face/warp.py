"""Piecewise-affine warps of part of an image, driven by landmarks.

Used to move a frame's own jaw and chin to a new mouth opening (`inference.mouth`): the
pixels stay the frame's own (its hair, shadows and jaw line), only their places change.
The warp is affine inside each triangle of a Delaunay triangulation of the destination
points, so it is continuous, and exact at every control point.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

GRID = 4  # the map is computed every GRID pixels and interpolated (it is piecewise linear: nearly exact)


def warp_region(image: np.ndarray, source: np.ndarray, destination: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The ``box`` (x1, y1, x2, y2) of ``image`` warped so that what is at each ``source``
    point (n, 2) moves to its ``destination`` point. Pixels outside the triangulated hull of
    the destination points keep their place, so the control points should enclose the box
    with fixed points (destination == source) along its border."""
    return cv2.remap(image, warp_map(source, destination, box), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_map(source: np.ndarray, destination: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`warp_region`'s map for `cv2.remap`: for each pixel of ``box``, where in the image it
    reads from ((h, w, 2) float32 x, y), so that further maps can be composed onto it first
    (an affine one with `cv2.transform`)."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    # grid nodes in the middle of each GRID x GRID block, one block past the box on every
    # side: `cv2.resize`'s linear interpolation between nodes then lands on every pixel of the box
    origin = np.array([x1 - GRID + (GRID - 1) / 2, y1 - GRID + (GRID - 1) / 2])
    nodes = (-(-height // GRID) + 2, -(-width // GRID) + 2)  # rows, columns
    triangles = delaunay(destination)
    # which destination triangle each node lies in (a node on an edge may take the
    # neighbour's map: the two agree along the edge); outside them all, the identity
    owner = np.full(nodes, len(triangles), np.int32)
    outlines = np.round((destination[triangles] - origin) * (16 / GRID)).astype(np.int32)  # 4 bits of sub-node precision
    for index, outline in enumerate(outlines):
        cv2.fillConvexPoly(owner, outline, int(index), shift=4)
    # per triangle, the affine map from destination to source: [x, y, 1] @ maps[t] = source point
    corners = np.concatenate([destination[triangles], np.ones((len(triangles), 3, 1))], axis=2).astype(np.float64)
    maps = np.linalg.solve(corners, source[triangles].astype(np.float64))
    maps = np.concatenate([maps, np.eye(3, 2)[None]]).astype(np.float32)[owner]  # (rows, columns, 3, 2)
    gx = (origin[0] + GRID * np.arange(nodes[1], dtype=np.float32))[None, :, None]
    gy = (origin[1] + GRID * np.arange(nodes[0], dtype=np.float32))[:, None, None]
    mapped = gx * maps[..., 0, :] + gy * maps[..., 1, :] + maps[..., 2, :]
    full = cv2.resize(mapped.astype(np.float32), (nodes[1] * GRID, nodes[0] * GRID), interpolation=cv2.INTER_LINEAR)
    return full[GRID : GRID + height, GRID : GRID + width]


def delaunay(points: np.ndarray) -> np.ndarray:
    """(t, 3) indices into ``points`` (n, 2) of their Delaunay triangles, which tile the
    points' convex hull (OpenCV's `Subdiv2D` is quicker but can leave slivers of the hull
    uncovered, and pixels there would not move)."""
    return Delaunay(points).simplices
