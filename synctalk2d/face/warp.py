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
    map_x, map_y = warp_maps(source, destination, box)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def warp_maps(source: np.ndarray, destination: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """`warp_region`'s maps for `cv2.remap`: for each pixel of ``box``, where in the image
    it reads from (float32 x and y), so that further maps can be composed onto them first."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    nodes = (height // GRID + 2, width // GRID + 2)  # rows, columns of grid nodes covering the box
    triangles = Delaunay(destination).simplices
    # which destination triangle each grid node lies in, rasterised at grid resolution (a
    # node on an edge may take the neighbour's map: the two agree along the edge)
    owner = np.full(nodes, -1, np.int32)
    outlines = np.round((destination[triangles] - (x1, y1)) * (16 / GRID)).astype(np.int32)  # 4 bits of sub-node precision
    for index, outline in enumerate(outlines):
        cv2.fillConvexPoly(owner, outline, index, shift=4)
    # per triangle, the affine map from destination to source: [x, y, 1] @ maps[t] = source point
    corners = np.concatenate([destination[triangles], np.ones((len(triangles), 3, 1), np.float32)], axis=2).astype(np.float64)
    maps = np.linalg.solve(corners, source[triangles].astype(np.float64))
    gx, gy = np.meshgrid(np.arange(nodes[1]) * GRID + x1, np.arange(nodes[0]) * GRID + y1)
    mapped = np.stack([gx, gy], axis=-1).astype(np.float64)
    inside = owner >= 0
    grid = np.stack([gx[inside], gy[inside], np.ones(inside.sum())], axis=1)
    mapped[inside] = np.einsum("nk,nkd->nd", grid, maps[owner[inside]])
    # bilinear between nodes: pixel (x, y) reads node (x / GRID, y / GRID)
    to_nodes = np.float32([[1 / GRID, 0, 0], [0, 1 / GRID, 0]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return tuple(cv2.warpAffine(mapped[..., k].astype(np.float32), to_nodes, (width, height), flags=flags, borderMode=cv2.BORDER_REPLICATE) for k in (0, 1))
