"""Does a render keep one face? What a drawn mouth carries beyond the lips.

Lip jumps and the seam look at the lips and at the edge of what was pasted; neither sees
another moment's hair laid across the cheek, a second jaw line or a shadow that pops in and
out. Two measures do, both on the lower face (from below the nose to the chin, cheek to
cheek) with the lips and the face's own contour left out:

- **coherence** (`coherence`): each frame aligned on its eyes and nose to the clip's
  typical face, the mean absolute grey change of the lower face from one frame to the next,
  against a real recording's: the share of changes above the real video's 99th percentile
  (a real video has ~1 %) and the ratio of 95th percentiles. Something that appears and
  goes between frames shows as a change the real face never makes.
- **foreign area** (`foreign_area`): against the frame each output frame is drawn on, the
  share of lower-face pixels that differ by more than `FOREIGN_GREY` grey levels, the
  chin allowed to have moved down or up with the jaw (any shift up to the lower lip's).
  A face drawn from its own frame differs only where the jaw moved it; a patch from another
  moment differs wherever hair, shadow or outline do.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np

from synctalk2d.evaluation.metrics import jumps

EYES_AND_NOSE = list(range(27, 48))
CANONICAL_WIDTH = 128  # pixels across the face (jaw point 1 to 15) in the aligned space
LIP_MARGIN = 0.15  # of the mouth's width around each frame's own lips, left out (the lips are meant to change)
CONTOUR_MARGIN = 0.12  # of the face's width inside the jaw line, left out (the outline moves with the jaw)
FOREIGN_GREY = 20.0  # grey levels: a larger difference is content, not noise or compression
SHIFT_STEPS = 5  # jaw shifts tried between none and the lower lip's


class LowerFace:
    """The aligned space and the region both measures look at, fixed for one clip from its
    real frames' landmarks (``real_landmarks`` (N, 68, 2), crop pixels), so every video
    of that clip is cut the same way; each frame's own lips are left out as well."""

    def __init__(self, real_landmarks: np.ndarray):
        typical = np.nanmedian(real_landmarks, axis=0)
        scale = CANONICAL_WIDTH / max(float(np.linalg.norm(typical[15] - typical[1])), 1.0)
        self.template = (typical - typical[[1, 15]].mean(axis=0)) * scale + (CANONICAL_WIDTH * 0.75, CANONICAL_WIDTH * 0.4)
        self.size = (int(CANONICAL_WIDTH * 1.5), int(CANONICAL_WIDTH * 1.5))  # (width, height)
        self.lip_margin = LIP_MARGIN * float(np.linalg.norm(self.template[54] - self.template[48]))
        self.mask = self._region()

    def align(self, points: np.ndarray) -> np.ndarray | None:
        """2x3 similarity taking a frame with these 68 ``points`` into the aligned space."""
        if np.isnan(points[EYES_AND_NOSE]).any():
            return None
        return cv2.estimateAffinePartial2D(points[EYES_AND_NOSE].astype(np.float32), self.template[EYES_AND_NOSE].astype(np.float32))[0]

    def grey(self, crop: np.ndarray, matrix: np.ndarray | None, *lips: np.ndarray) -> np.ndarray:
        """The crop's grey face in the aligned space by ``matrix``, NaN on the ``lips`` (each
        a frame's 68 points: the drawn lips and the lips of the frame drawn on), with a
        margin, and everywhere if it could not be aligned."""
        if matrix is None or any(np.isnan(points[48:60]).any() for points in lips):
            return np.full(self.size[::-1], np.nan, np.float32)
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        face = cv2.warpAffine(grey, matrix, self.size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        hole = np.zeros(face.shape, np.uint8)
        for points in lips:
            hull = cv2.convexHull((points[48:60] @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32))
            cv2.fillConvexPoly(hole, np.round(hull[:, 0] * 16).astype(np.int32), 1, shift=4)
        grow = max(1, round(self.lip_margin))
        hole = cv2.dilate(hole, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        face[hole.astype(bool)] = np.nan
        return face

    def _region(self) -> np.ndarray:
        """Inside the jaw line (less `CONTOUR_MARGIN`), below the nose."""
        t = self.template
        centre = t[[1, 15, 8]].mean(axis=0)
        contour = t[list(range(2, 15))]
        reach = np.linalg.norm(contour - centre, axis=1, keepdims=True)
        inner = centre + (contour - centre) * (1 - CONTOUR_MARGIN * CANONICAL_WIDTH / reach)
        mask = np.zeros(self.size[::-1], np.uint8)
        cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], 1)
        mask[: int(np.ceil(t[33, 1] + 0.05 * CANONICAL_WIDTH))] = 0  # below the nose
        return mask.astype(bool)

    def faces(self, crops: np.ndarray, landmarks: np.ndarray, drawn_on: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W) grey aligned faces of a video whose frames have these ``landmarks``,
        each aligned on the eyes and nose of the frame it was drawn on (``drawn_on``
        landmarks; None: its own). A drawn mouth leaves the eyes and nose as they were, but
        a landmark model fits the whole face at once, so the render's own would move them."""
        drawn_on = landmarks if drawn_on is None else drawn_on
        return np.stack([self.grey(crop, self.align(base), points, base) for crop, points, base in zip(crops, landmarks, drawn_on)])

    def changes(self, faces: np.ndarray) -> np.ndarray:
        """(N - 1,) mean absolute grey change inside the region (off both frames' lips) from
        each frame to the next."""
        if len(faces) < 2:
            return np.zeros(0, np.float32)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a transition with no pixel in common is dropped
            change = np.nanmean(np.abs(np.diff(faces, axis=0))[:, self.mask], axis=1)
        return change[np.isfinite(change)]


def coherence(
    lower_face: LowerFace, crops: np.ndarray, landmarks: np.ndarray, real_changes: np.ndarray, drawn_on: np.ndarray | None = None
) -> dict[str, float]:
    """``lower_face_jump_rate`` (share of frame-to-frame changes above the real video's
    99th percentile) and ``lower_face_p95_over_real`` of a video's aligned lower face
    (``drawn_on``: see `LowerFace.faces`)."""
    scores = jumps(lower_face.changes(lower_face.faces(crops, landmarks, drawn_on)), real_changes)
    return {"lower_face_jump_rate": scores["jump_rate"], "lower_face_p95_over_real": scores["change_p95_over_real"]}


def foreign_area(lower_face: LowerFace, crops: np.ndarray, landmarks: np.ndarray, drawn_on: np.ndarray, drawn_on_landmarks: np.ndarray) -> dict[str, float]:
    """How much of each output frame's lower face is not the face of the frame it was drawn
    on (``drawn_on`` crops, same boxes): the share of region pixels more than `FOREIGN_GREY`
    apart, after the best vertical shift of the chin (below the lips) between none and the
    lower lip's own shift. Mean over frames and the 95th percentile."""
    shares = []
    rows = np.arange(lower_face.size[1])[:, None]
    for crop, points, target, target_points in zip(crops, landmarks, drawn_on, drawn_on_landmarks):
        matrix = lower_face.align(target_points)  # one alignment for both: the target's
        if matrix is None or np.isnan(points[57]).any():
            continue
        drawn, own = lower_face.grey(crop, matrix, points, target_points), lower_face.grey(target, matrix, points, target_points)
        lip_y = (points[57] @ matrix[:, :2].T + matrix[:, 2])[1]
        target_lip_y = (target_points[57] @ matrix[:, :2].T + matrix[:, 2])[1]
        below = np.broadcast_to(rows > min(lip_y, target_lip_y), drawn.shape)
        best = np.abs(drawn - own)
        for step in np.linspace(0.0, lip_y - target_lip_y, SHIFT_STEPS)[1:]:
            shifted = cv2.warpAffine(own, np.float32([[1, 0, 0], [0, 1, step]]), lower_face.size, borderMode=cv2.BORDER_REPLICATE)
            best = np.where(below, np.fmin(best, np.abs(drawn - shifted)), best)
        compared = best[lower_face.mask]
        compared = compared[np.isfinite(compared)]
        if len(compared):
            shares.append(float(np.mean(compared > FOREIGN_GREY)))
    if not shares:
        return {"foreign_area": float("nan"), "foreign_area_p95": float("nan")}
    return {"foreign_area": float(np.mean(shares)), "foreign_area_p95": float(np.percentile(shares, 95))}
