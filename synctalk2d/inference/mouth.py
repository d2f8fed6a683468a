"""Rendering from mouth shapes: speech -> wanted lip shapes -> a real mouth of the avatar.

1. `MouthStream`: the avatar's mouth model turns speech into a lip shape per frame as the
   audio arrives (a file is streamed in one go, so files and live streams agree), scaled
   to move as much as the avatar's own mouth does and a little more (`amplify`,
   `MOTION_REACH`: what the picker draws moves less than it is asked); frames the voice-activity
   rule calls silent ease into the avatar's rest shape (`settle`), so pauses are still.
2. `inference.picker`: which recorded frame lends its mouth to each output frame, chosen
   for the whole sequence (lips close to the wanted shape, head posed like the target,
   few cuts between unrelated moments of the recording), and cuts spread over a few frames.
3. `paste_mouth`: one face. The chosen mouth's lips are bent towards the wanted shape
   (`LIP_REACH`, by a few pixels at most: openings the recording lacks are reached by
   stretching a near one); the target frame's own lower face is warped so that its lips
   take that outline and its chin follows (`warp_jaw_and_paste_lips`), then only the
   chosen frame's lips, teeth and the skin just around them are laid on, aligned to the
   target on the nose and upper face contour, colour-matched and feathered in, warped from
   full frame to full frame in one step: the cheeks, hair, shadows and jaw line are the
   target's own on every frame, and every pixel of the mouth is a real pixel of the
   avatar, as sharp as the recording. (`PASTE = "region"` pastes the mouth with most of
   the chin instead, `paste_region`: on a turning head that carries the other moment's
   hair and chin along; `bench/face_coherence.py` compares the two.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from synctalk2d.audio.speech_features import SpeechFeatureStream
from synctalk2d.audio.vad import LEAD_FRAMES, VoiceActivity, with_lead
from synctalk2d.face.crop import ALIGN_POINTS, alignment
from synctalk2d.face.lip_shape import CORNERS, LIPS, NUM_LIP_POINTS, levelled, lip_shapes, signed_aperture
from synctalk2d.face.warp import warp_map, warp_region
from synctalk2d.inference.picker import BlockPath, Crossings, ReferencePicker
from synctalk2d.models.checkpoint import load_avatar_mouth
from synctalk2d.models.mouth import predict_shapes

JAW = list(range(2, 15))  # the face contour from cheek to cheek under the mouth
MOUTH_REGION = JAW + [31, 32, 33, 34, 35]  # ... and under the nose: what is pasted, with the jaw pulled in by JAW_REACH
JAW_REACH = 0.7  # the pasted region ends this share of the way from the lips to the jaw contour: the jaw line stays the target's
FACE_OUTLINE = list(range(0, 17)) + [27]  # jaw contour and the top of the nose
DILATE = 0.02  # of the face's crop-box side: the pasted region reaches this far past the landmark hull
FEATHER = 0.03  # of the face's crop-box side: the blur that fades it into the target
BLEND = "feather"  # how the pasted region meets the target: a feathered, colour-matched edge, or "poisson" (cv2.seamlessClone)
# what of the reference is drawn: "warp" moves the target's own jaw and chin to the chosen
# mouth's opening and pastes only the lips and the skin just around them (the cheeks, jaw
# line, hair and shadows stay the target's); "region" pastes the mouth and most of the chin
PASTE = "warp"
OUTER_LIPS = list(range(48, 60))
LIP_TUCK = 0.005  # of the face's crop-box side: the frame's own lip border goes this far under the drawn lips (a wide laugh's lipstick showed below them)
LIP_MARGIN = 0.035  # of the face's crop-box side: skin around the lips pasted with them
# the chosen mouth's lips are warped this share of the way to the wanted lip shape (0: drawn
# as recorded), each point by at most MAX_LIP_MOVE of the face's crop-box side: openings a
# short recording lacks are reached by stretching a near one, never a closed mouth torn open
LIP_REACH = 1.0
MAX_LIP_MOVE = 0.02
NECK_REACH = 0.3  # of the face's crop-box side: how far below the jaw the warp reaches (neck, collar) ...
NECK_FOLLOW = 0.5  # ... and how much of the chin's move the skin just below the jaw takes
# how the mouth is resampled from the chosen frame, once (a crossing's slide along the optical
# flow is composed into the same map): bicubic keeps teeth and lip edges as sharp as the
# recording, where bilinear softened them; the lower face around it, moved a few pixels by
# `_warp_jaw`, stays bilinear (its box is many times the mouth's, and bicubic there costs
# more time than it shows)
MOUTH_RESAMPLING = cv2.INTER_CUBIC
MAX_COLOUR_SHIFT = 16.0  # grey levels: a larger mismatch is content, not lighting
SMOOTHING = (0.15, 0.85)  # the previous and this frame's shape: no look-ahead, for live streams (more of the previous delays the lips)
RELEASE_FRAMES = 16  # after speech the predicted lips ease into the rest shape over these frames
# the wanted movement reaches this far beyond the avatar's own (its motion gain): the picker,
# held back by what cuts and head poses cost, draws a mouth that moves less than it is asked
# to, so asked for exactly the avatar's movement it mumbles (`bench/quality.py`: movement ÷ real)
MOTION_REACH = 1.15


class MouthConditioning:
    """One avatar's mouth model and reference bank."""

    def __init__(self, avatar, frames: range):
        self.avatar = avatar
        self.model, self.mean_shape, self.rest_shape, self.gain = load_avatar_mouth(avatar.root)
        self.landmarks = avatar.landmarks()  # (N, 68, 2) frame pixels
        self.bank = np.arange(frames.start, frames.stop)
        self.bank_shapes = lip_shapes(self.landmarks[self.bank], avatar.boxes()[self.bank])
        self.poses = face_poses(self.landmarks)  # of every frame: references are matched to their targets
        mel = avatar.mel()
        self.voice = mel.mean(axis=0), mel.std(axis=0)  # where the running normalisation starts

    def stream(self) -> MouthStream:
        return MouthStream(self)

    def wanted_shapes(self, wav: np.ndarray) -> np.ndarray:
        """(ceil(seconds * 25), 40) wanted lip shapes (see `face.lip_shape`) for 16 kHz mono ``wav``."""
        stream = self.stream()
        stream.push(wav)
        stream.end()
        return stream.take()[1]

    def picker(self) -> ReferencePicker:
        return ReferencePicker(self.model, self.mean_shape, self.rest_shape, self.bank, self.bank_shapes, self.poses[self.bank])

    def references(self, shapes: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """(T, 3) what `MouthGenerator` draws for wanted ``shapes`` on avatar frames
        ``targets``: per frame (reference, reference it crosses from, share of the new one),
        the references chosen over the whole sequence."""
        plan = ReferencePlan(self, targets)
        return np.concatenate([plan.push(shapes), plan.finish()])


class ReferencePlan:
    """`MouthConditioning.references` for wanted shapes that arrive in pieces, with the
    same result: the picker decides in blocks (`inference.picker.BlockPath`) and a crossing
    waits for the reference after it, so a file of any length is planned in the memory of
    one block. ``targets`` are the avatar frames of the whole sequence (small: one index
    per frame). Each row carries its frame's wanted shape after the three columns, for the
    paste to bend the chosen lips towards (`LIP_REACH`)."""

    def __init__(self, conditioning: MouthConditioning, targets: np.ndarray):
        self.conditioning, self.targets = conditioning, np.asarray(targets)
        self.received = 0  # shapes pushed so far
        self.path = BlockPath(conditioning.picker())
        self.crossings = Crossings(conditioning.bank)
        self.unplanned: list[np.ndarray] = []  # wanted shapes of the frames whose rows are not returned yet

    def push(self, shapes: np.ndarray) -> np.ndarray:
        """(n, 43) rows decided now that the next ``shapes`` have arrived (fewer than given:
        the picker looks ahead)."""
        targets = self.targets[self.received : self.received + len(shapes)]
        if len(targets) < len(shapes):
            raise ValueError(f"{self.received + len(shapes)} shapes for {len(self.targets)} target frames")
        self.received += len(shapes)
        self.unplanned.extend(shapes)
        positions = self.path.push(shapes, self.conditioning.poses[targets])
        return self._with_shapes(self.crossings.push(self.conditioning.bank[positions]))

    def finish(self) -> np.ndarray:
        """The rows of every frame not yet returned (the sequence has ended)."""
        return self._with_shapes(np.concatenate([self.crossings.push(self.conditioning.bank[self.path.finish()]), self.crossings.finish()]))

    def _with_shapes(self, rows: np.ndarray) -> np.ndarray:
        shapes, self.unplanned = self.unplanned[: len(rows)], self.unplanned[len(rows) :]
        return with_wanted(rows, np.array(shapes, np.float64).reshape(len(rows), NUM_LIP_POINTS * 2))


def with_wanted(rows: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """(n, 3) rows of (reference, reference crossed from, share) with each frame's wanted
    lip shape (n, 40) appended: the plan `MouthGenerator` draws."""
    return np.concatenate([rows.reshape(-1, 3), shapes.reshape(len(shapes), NUM_LIP_POINTS * 2)], axis=1)


def face_poses(landmarks: np.ndarray) -> np.ndarray:
    """(N, 2 * len(`ALIGN_POINTS`)) head pose as the paste sees it: the points it aligns
    faces on, centred, scaled to unit size and turned level. What differs between two
    frames' poses is what the paste's alignment cannot undo: the head turned or nodding."""
    points = landmarks[:, ALIGN_POINTS].astype(np.float32)
    points = points - points.mean(axis=1, keepdims=True)
    points = points / np.sqrt((points**2).sum(axis=(1, 2)) / len(ALIGN_POINTS))[:, None, None]
    return levelled(points, ALIGN_POINTS.index(1), ALIGN_POINTS.index(15)).reshape(len(points), -1).astype(np.float32)


class MouthStream:
    """Wanted lip shapes of one utterance, frame by frame as its audio arrives: `push`
    audio, `end` it, `take` the shapes of the frames that became ready."""

    def __init__(self, conditioning: MouthConditioning):
        self.conditioning = conditioning
        self.features = SpeechFeatureStream(*conditioning.voice)
        self.activity = VoiceActivity()
        self.active = np.zeros(0, bool)  # the rule's decision of the frames decided so far, from ...
        self.active_start = 0  # ... this frame on (those before it are taken)
        self.samples_heard = 0  # samples passed to the rule
        self.settled = Settled()  # where the last frame left settling

    def push(self, samples: np.ndarray) -> None:
        self.features.push(samples)

    def end(self) -> None:
        self.features.end()

    @property
    def ended(self) -> bool:
        return self.features.ended

    def take(self) -> tuple[int, np.ndarray]:
        """(index of the first frame, (n, 40) shapes) of the frames ready since the last call."""
        first, windows = self.features.take()
        c = self.conditioning
        with torch.inference_mode():
            shapes = amplify(predict_shapes(c.model, windows, c.mean_shape), c.mean_shape, MOTION_REACH * c.gain)
        settled, self.settled = settle(shapes, self._speaking(first, len(shapes)), c.rest_shape, self.settled)
        return first, settled

    def _speaking(self, first: int, count: int) -> np.ndarray:
        """Voice activity of frames ``first..first+count`` (`audio.vad.voice_activity`): the
        rule decides every frame whose audio has arrived, which reaches at least
        `LEAD_FRAMES` past the last frame ready (the features look 200 ms ahead)."""
        samples = self.features.samples
        new = samples.since(self.samples_heard)
        self.samples_heard = samples.total
        decided = [self.active[first - self.active_start :], self.activity.push(new)] + ([self.activity.finish()] if self.ended else [])
        samples.forget_before(self.samples_heard)
        self.active, self.active_start = np.concatenate(decided), first
        assert self.ended or not count or len(self.active) >= count + LEAD_FRAMES, "the voice-activity lead reaches past the audio"
        return with_lead(self.active, count)


def amplify(shapes: np.ndarray, mean_shape: np.ndarray, gain: float) -> np.ndarray:
    """Predicted shapes moved ``gain`` times as far from the mean (`training.mouth.motion_gain`)."""
    return (mean_shape + gain * (shapes - mean_shape)).astype(np.float32)


@dataclass(frozen=True)
class Settled:
    """Where settling stands after a frame: its shape before smoothing, how many frames no
    one has spoken, and how far above the rest shape's the last spoken frame opened the
    lips (what the next chunk of a stream starts from)."""

    shape: np.ndarray | None = None
    quiet_for: int = 1 << 30  # an utterance starts at rest, as after a long silence
    spoken_opening: float = 0.0


def settle(shapes: np.ndarray, speaking: np.ndarray, rest_shape: np.ndarray, before: Settled = Settled()) -> tuple[np.ndarray, Settled]:
    """Predicted (n, 40) shapes as rendering wants them: the rest shape where no one has
    spoken for more than `RELEASE_FRAMES` frames, the prediction eased towards it over the
    frames between (the lips close after a word as the model expects them to, not at
    once), then each blended with the frame before (`SMOOTHING`). A release never opens the
    lips wider than the last spoken frame had them: after a burst of sound the rule took for
    speech (a musical note's attack), the model's reading of the rest of the note would
    open the mouth. ``before`` is where the frame before the first left off; the second
    value returned is for the frame after the last."""
    if not len(shapes):
        return shapes.astype(np.float32), before
    above_rest = signed_aperture(shapes) - signed_aperture(rest_shape)  # how far each prediction opens the lips beyond rest
    share = np.empty(len(shapes), np.float32)  # of the prediction
    quiet_for, spoken_opening = before.quiet_for, before.spoken_opening
    for k, speaks in enumerate(speaking):
        quiet_for = 0 if speaks else quiet_for + 1
        share[k] = np.clip(1.0 - quiet_for / (RELEASE_FRAMES + 1), 0.0, 1.0)
        if speaks:
            spoken_opening = float(above_rest[k])
        elif above_rest[k] > max(spoken_opening, 0.0):
            share[k] = min(share[k], max(spoken_opening, 0.0) / above_rest[k])
    shapes = (rest_shape + share[:, None] * (shapes - rest_shape)).astype(np.float32)
    earlier = np.concatenate([shapes[:1] if before.shape is None else before.shape[None], shapes[:-1]])
    return (SMOOTHING[0] * earlier + SMOOTHING[1] * shapes).astype(np.float32), Settled(shapes[-1], quiet_for, spoken_opening)


def mouth_region(points: np.ndarray) -> np.ndarray:
    """The outline of the region `paste_mouth` takes, from a frame's 68 ``points``: `MOUTH_REGION`
    with the jaw points pulled towards the lips (`JAW_REACH`)."""
    region = points[MOUTH_REGION].astype(np.float32)
    centre = points[LIPS].mean(axis=0)
    region[: len(JAW)] = centre + JAW_REACH * (region[: len(JAW)] - centre)
    return region


def paste_outline(points: np.ndarray, face_side: float) -> np.ndarray:
    """Where a mouth drawn (`PASTE`) onto a frame with these 68 ``points`` fades into it, the
    line along which a seam would show: the outer lips grown by `LIP_MARGIN` (the warp) or
    `mouth_region` grown by `DILATE` (the region paste); the reference's outline, aligned,
    adds to it."""
    outline, grow = (points[OUTER_LIPS], LIP_MARGIN) if PASTE == "warp" else (mouth_region(points), DILATE)
    hull = cv2.convexHull(outline.astype(np.float32))[:, 0]
    outward = hull - hull.mean(axis=0)
    return hull + grow * face_side * outward / np.maximum(np.linalg.norm(outward, axis=1, keepdims=True), 1e-6)


def bends_lips(wanted: np.ndarray | None) -> bool:
    """Whether `paste_mouth` bends the drawn lips to ``wanted``: a frame that lends its own
    mouth is then drawn too, not left as recorded, or its lips would jump by the bend."""
    return wanted is not None and PASTE == "warp" and LIP_REACH > 0


def paste_mouth(
    target: np.ndarray,
    target_points: np.ndarray,
    reference: np.ndarray,
    reference_points: np.ndarray,
    face_side: float,
    cross_from: tuple[np.ndarray, np.ndarray, float] | None = None,
    wanted: np.ndarray | None = None,
) -> np.ndarray:
    """Draw the ``reference`` frame's mouth on the ``target`` frame (in place, returned), as
    `PASTE` says: `warp_jaw_and_paste_lips` or `paste_region`. Points are each frame's 68
    landmarks in its own pixels; ``face_side`` is the target's crop-box side, which sizes
    margins and feathering. ``cross_from`` (frame, its points, share) is a mouth being left
    (`inference.picker.Crossings`): what is drawn is then that mouth morphed ``share`` of
    the way into the reference's. ``wanted`` is the lip shape (40,) asked for: the warp
    bends the drawn lips towards it (`LIP_REACH`); the region paste draws them as recorded."""
    if PASTE == "warp":
        return warp_jaw_and_paste_lips(target, target_points, reference, reference_points, face_side, cross_from, wanted)
    return paste_region(target, target_points, reference, reference_points, face_side, cross_from)


def warp_jaw_and_paste_lips(
    target: np.ndarray,
    target_points: np.ndarray,
    reference: np.ndarray,
    reference_points: np.ndarray,
    face_side: float,
    cross_from: tuple[np.ndarray, np.ndarray, float] | None = None,
    wanted: np.ndarray | None = None,
) -> np.ndarray:
    """One face: the target's own lower face is warped (piecewise affine on its landmarks,
    `face.warp`) so that its lips take the drawn mouth's outline and its chin and jaw
    follow the lower lip (the more, the nearer the chin), with the skin below the jaw
    following part of the way; then only the lips, teeth and a `LIP_MARGIN` of skin around
    them are pasted from the reference, aligned on the upper face as `paste_region` does,
    and bent towards the ``wanted`` lip shape (`toward_shape`).
    Hair, shadows, the jaw line and the light on the cheeks are the target's on every frame."""
    sources = [(reference, reference_points)] + ([cross_from[:2]] if cross_from is not None else [])
    matrices = [alignment(points, target_points) for _, points in sources]
    if any(matrix is None for matrix in matrices):
        return target
    moved = [points @ matrix[:, :2].T + matrix[:, 2] for (_, points), matrix in zip(sources, matrices)]
    share = cross_from[2] if cross_from is not None else 1.0
    recorded = moved[0][LIPS] if cross_from is None else share * moved[0][LIPS] + (1 - share) * moved[1][LIPS]
    lips = recorded if wanted is None or not LIP_REACH else toward_shape(recorded, wanted, face_side)
    _warp_jaw(target, target_points, lips, face_side)
    hull = cv2.convexHull(np.concatenate([m[OUTER_LIPS] for m in moved] + [lips[: len(OUTER_LIPS)]]).astype(np.float32))[:, 0]
    grow, blur = max(1, round(LIP_MARGIN * face_side)), max(1, round(FEATHER * face_side))
    bend = (recorded, lips) if lips is not recorded else None
    return _lay_in(target, hull, sources, matrices, share, grow, blur, bend=bend)


def toward_shape(lips: np.ndarray, wanted: np.ndarray, face_side: float) -> np.ndarray:
    """The 20 ``lips`` points (pixels, on a face whose crop-box side is ``face_side``) moved
    `LIP_REACH` of the way to the ``wanted`` lip shape (`face.lip_shape`: centred, level,
    in crop sides) about their own centre and roll, each by at most `MAX_LIP_MOVE` sides."""
    centre = lips.mean(axis=0)
    own = levelled((lips - centre)[None] / face_side, *CORNERS)[0]
    across = lips[CORNERS[1]] - lips[CORNERS[0]]
    angle = np.arctan2(across[1], across[0])  # the roll `levelled` took out, put back
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    change = LIP_REACH * (np.asarray(wanted, np.float64).reshape(-1, 2) - own) @ rotation.T
    length = np.linalg.norm(change, axis=1, keepdims=True)
    change *= np.minimum(1.0, MAX_LIP_MOVE / np.maximum(length, 1e-9))
    return (lips + face_side * change).astype(np.float32)


def _warp_jaw(target: np.ndarray, points: np.ndarray, lips: np.ndarray, face_side: float) -> None:
    """Warp ``target`` (in place) so its lips (``points[48:68]``) move to ``lips``, their
    border `LIP_TUCK` inside the outline (under the mouth laid on), and its chin and jaw
    follow the lower lip's move, tapering to nothing at the ears."""
    drop = lips[57 - 48] - points[57]  # where the bottom of the lower lip goes
    jaw = points[JAW].astype(np.float32)
    follow = np.clip((jaw[:, 1] - points[2, 1]) / max(points[8, 1] - points[2, 1], 1.0), 0.0, 1.0)[:, None]
    centre = points[LIPS].mean(axis=0)
    outward = (jaw - centre) / np.maximum(np.linalg.norm(jaw - centre, axis=1, keepdims=True), 1e-6)
    below = jaw + NECK_REACH * face_side * outward
    fixed = points[[1, 15, 31, 32, 33, 34, 35]].astype(np.float32)  # the face contour beside the nose and the nose stay
    outer = lips[: len(OUTER_LIPS)]
    inward = (outer.mean(axis=0) - outer) / np.maximum(np.linalg.norm(outer - outer.mean(axis=0), axis=1, keepdims=True), 1e-6)
    movable = np.concatenate([jaw, below, points[OUTER_LIPS]]).astype(np.float32)
    destination = np.concatenate([jaw + follow * drop, below + NECK_FOLLOW * follow * drop, outer + LIP_TUCK * face_side * inward]).astype(np.float32)
    everything = np.concatenate([fixed, movable, destination])
    h, w = target.shape[:2]
    margin = 0.1 * face_side
    x1, y1 = np.floor(everything.min(axis=0) - margin).astype(int)
    x2, y2 = np.ceil(everything.max(axis=0) + margin).astype(int)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return
    middle = ((x1 + x2) / 2, (y1 + y2) / 2)
    border = np.array([[x, y] for x in (x1, middle[0], x2 - 1) for y in (y1, middle[1], y2 - 1) if (x, y) != middle], np.float32)
    source = np.concatenate([fixed, movable, border])
    target[y1:y2, x1:x2] = warp_region(target, source, np.concatenate([fixed, destination, border]), (x1, y1, x2, y2))


def paste_region(
    target: np.ndarray,
    target_points: np.ndarray,
    reference: np.ndarray,
    reference_points: np.ndarray,
    face_side: float,
    cross_from: tuple[np.ndarray, np.ndarray, float] | None = None,
) -> np.ndarray:
    """Paste the mouth region of the ``reference`` frame (mouth, chin and cheeks up to
    `JAW_REACH` of the way to the jaw line) onto the ``target`` frame (in place, returned);
    arguments as `paste_mouth`'s. The colour is matched on the cheeks beside the nose."""
    sources = [(reference, reference_points)] + ([cross_from[:2]] if cross_from is not None else [])
    matrices = [alignment(points, target_points) for _, points in sources]
    if any(matrix is None for matrix in matrices):
        return target
    moved = [mouth_region(points) @ matrix[:, :2].T + matrix[:, 2] for (_, points), matrix in zip(sources, matrices)]
    hull = cv2.convexHull(np.concatenate([mouth_region(target_points), *moved]).astype(np.float32))[:, 0]
    grow, blur = max(1, round(DILATE * face_side)), max(1, round(FEATHER * face_side))

    def cheeks_beside_the_nose(ring: np.ndarray, corner: tuple[int, int]) -> np.ndarray:
        # the ring inside the face and above the mouth: skin in both frames, whatever the jaw does
        face = np.zeros_like(ring)
        cv2.fillConvexPoly(face, np.round(cv2.convexHull(target_points[FACE_OUTLINE].astype(np.float32))[:, 0] - corner).astype(np.int32), 1)
        ring = ring & cv2.erode(face, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        ring[max(0, int(target_points[48:68, 1].min()) - corner[1]) :] = 0
        return ring

    share = cross_from[2] if cross_from is not None else 1.0
    return _lay_in(target, hull, sources, matrices, share, grow, blur, cheeks_beside_the_nose)


def _lay_in(
    target: np.ndarray,
    hull: np.ndarray,
    sources: list[tuple[np.ndarray, np.ndarray]],
    matrices: list[np.ndarray],
    share: float,
    grow: int,
    blur: int,
    ring_rule: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None,
    bend: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Lay the source frames (aligned onto the target by ``matrices``; a second one is a
    mouth being left, morphed ``share`` of the way into the first) onto ``target`` (in
    place, returned) inside ``hull`` grown by ``grow`` pixels, faded in over ``blur``.

    Each source is warped straight from its full frame, one resampling, so the mouth is as
    sharp as the recording; only the hull's bounding box is touched. The colour is matched
    on a ring just outside the region (``ring_rule(ring, (x1, y1))`` may keep part of it):
    the median difference of the aligned pixels, which a nostril's shadow or a strand of
    hair entering the thin ring does not shift (a mean did, and the mouth flickered).
    ``bend`` (points, where they go; target pixels) warps the aligned mouth piecewise
    affinely before it is laid in, the box's border staying put; a crossing slides the two
    mouths along their optical flow (`morph`), composed into the same single resampling."""
    h, w = target.shape[:2]
    x1, y1 = np.floor(hull.min(axis=0)).astype(int) - 2 * grow - 3 * blur
    x2, y2 = np.ceil(hull.max(axis=0)).astype(int) + 2 * grow + 3 * blur
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return target
    if bend is None and len(sources) == 1:
        shift = matrices[0].copy()
        shift[:, 2] -= (x1, y1)
        warped = cv2.warpAffine(sources[0][0], shift, (x2 - x1, y2 - y1), flags=MOUTH_RESAMPLING, borderMode=cv2.BORDER_REPLICATE)
    else:
        reads = _bend_map(bend, (x1, y1, x2, y2)) if bend is not None else pixel_grid(x2 - x1, y2 - y1) + np.float32([x1, y1])
        warped = _resampled(sources, matrices, share, reads)
    region = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillConvexPoly(region, np.round(hull - (x1, y1)).astype(np.int32), 1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    region = cv2.dilate(region, disk)
    patch = target[y1:y2, x1:x2]
    ring = cv2.dilate(region, disk) - region
    if ring_rule is not None:
        ring = ring_rule(ring, (x1, y1))
    if ring.sum() > 20:
        on = ring.astype(bool)
        offset = np.median(patch[on].astype(np.float32) - warped[on].astype(np.float32), axis=0).astype(np.float64)
        warped = cv2.add(warped, tuple(np.clip(offset, -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT)) + (0,), dtype=cv2.CV_8U)
    if BLEND == "poisson" and region[1:-1, 1:-1].any():
        inner = np.zeros_like(region)
        inner[1:-1, 1:-1] = region[1:-1, 1:-1]  # seamlessClone needs the mask off the patch border
        ys, xs = np.nonzero(inner)
        centre = (int(xs.min() + xs.max() + 1) // 2 + x1, int(ys.min() + ys.max() + 1) // 2 + y1)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        target[:] = cv2.seamlessClone(np.ascontiguousarray(warped[box]), target, inner[box] * 255, centre, cv2.NORMAL_CLONE)
        return target
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), blur / 2)[..., None]
    target[y1:y2, x1:x2] = (warped * alpha + patch * (1 - alpha) + 0.5).astype(np.uint8)
    return target


def _bend_map(bend: tuple[np.ndarray, np.ndarray], box: tuple[int, int, int, int]) -> np.ndarray:
    """Target pixels of ``box`` -> where they read from before the ``bend`` (points, where
    they go), the box's corners and edge middles staying put ((h, w, 2) x, y)."""
    x1, y1, x2, y2 = box
    border = np.array([[x, y] for x in (x1, (x1 + x2 - 1) / 2, x2 - 1) for y in (y1, (y1 + y2 - 1) / 2, y2 - 1)], np.float32)
    border = border[np.any(border != ((x1 + x2 - 1) / 2, (y1 + y2 - 1) / 2), axis=1)]
    points, to = (np.concatenate([p, border]).astype(np.float32) for p in bend)
    return warp_map(points, to, box)


def _resampled(sources: list[tuple[np.ndarray, np.ndarray]], matrices: list[np.ndarray], share: float, reads: np.ndarray) -> np.ndarray:
    """The box whose pixels read the target's own pixels at ``reads`` ((h, w, 2): the box
    itself, or the bend's map), drawn from the source frames aligned by ``matrices``, each
    resampled once from its full frame. A crossing (two sources) is `morph`'s: the flow
    between the two mouths is measured on a quick bilinear drawing of each, then each mouth
    is read where its slide along that flow sends it, and the two are blended."""
    backs = [cv2.invertAffineTransform(matrix) for matrix in matrices]  # target pixels -> each source's pixels
    frames = [frame for frame, _ in sources]
    if len(sources) == 1:
        return cv2.remap(frames[0], cv2.transform(reads, backs[0]), None, MOUTH_RESAMPLING, borderMode=cv2.BORDER_REPLICATE)
    quick = [cv2.remap(frame, cv2.transform(reads, back), None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for frame, back in zip(frames, backs)]
    flow = mouth_flow(quick[1], quick[0])
    grid = pixel_grid(reads.shape[1], reads.shape[0])
    slid = [cv2.remap(reads, grid + slide * flow, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) for slide in (1 - share, -share)]
    new, old = (
        cv2.remap(frame, cv2.transform(r, back), None, MOUTH_RESAMPLING, borderMode=cv2.BORDER_REPLICATE) for frame, r, back in zip(frames, slid, backs)
    )
    return cv2.addWeighted(old, 1 - share, new, share, 0)


def pixel_grid(width: int, height: int) -> np.ndarray:
    """(height, width, 2) float32 x, y of every pixel: the identity map of `cv2.remap`."""
    x, y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([x, y])


def mouth_flow(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """(h, w, 2) dense optical flow (OpenCV's DIS) between two aligned uint8 RGB mouths:
    old(p) ~ new(p + flow(p))."""
    grey = [cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) for image in (old, new)]
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)


def morph(old: np.ndarray, new: np.ndarray, share: float) -> np.ndarray:
    """Two aligned uint8 RGB images of mouths ``share`` (0..1) of the way from ``old`` to
    ``new``: each is warped part of the way along their dense optical flow and the two are
    blended, so lips and teeth slide into place instead of showing twice."""
    flow = mouth_flow(old, new)
    grid = pixel_grid(old.shape[1], old.shape[0])
    old_moved = cv2.remap(old, grid - share * flow, None, MOUTH_RESAMPLING, borderMode=cv2.BORDER_REPLICATE)
    new_moved = cv2.remap(new, grid + (1 - share) * flow, None, MOUTH_RESAMPLING, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(old_moved, 1 - share, new_moved, share, 0)
