"""Rendering from mouth shapes: speech -> wanted lip shapes -> a real mouth of the avatar.

1. `MouthStream`: the avatar's mouth model turns speech into a lip shape per frame as the
   audio arrives (a file is streamed in one go, so files and live streams agree), scaled
   to move as much as the avatar's own mouth does (`amplify`); frames the voice-activity
   rule calls silent get the avatar's rest shape, so pauses are still.
2. `ReferencePicker`: for each frame, the avatar frame whose real lips are closest to the
   wanted shape and whose head pose is close to that of the frame it is pasted on (the
   paste aligns faces in the image plane only: a reference with the head turned or
   nodding would put its chin beside the target's). It prefers to keep going along the
   recording from the reference it picked last (in speech) or to hold it (in silence)
   while that stays within a margin of the best match, so the mouth moves like the
   recording moves instead of flickering between look-alikes.
3. `paste_mouth`: that frame's mouth and most of its chin (not its jaw line: the target
   keeps its own outline), aligned to the target frame on the nose and upper face
   contour, colour-matched and feathered in, warped from full frame to full frame in one
   step. Every pixel of the mouth is a real pixel of the avatar: teeth and lips stay as
   sharp as the recording.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from synctalk2d.audio.speech_features import SpeechFeatureStream
from synctalk2d.audio.vad import LEAD_FRAMES, VoiceActivity, with_lead
from synctalk2d.face.lip_shape import LIPS, levelled, lip_shapes
from synctalk2d.models.mouth import MouthModel
from synctalk2d.training.mouth import load_avatar_mouth, predict_shapes

ALIGN_POINTS = [1, 2, 3, 13, 14, 15, 27, 28, 29, 30, 31, 32, 33, 34, 35]  # move little when the jaw does
JAW = list(range(2, 15))  # the face contour from cheek to cheek under the mouth
MOUTH_REGION = JAW + [31, 32, 33, 34, 35]  # ... and under the nose: what is pasted, with the jaw pulled in by JAW_REACH
JAW_REACH = 0.7  # the pasted region ends this share of the way from the lips to the jaw contour: the jaw line stays the target's
FACE_OUTLINE = list(range(0, 17)) + [27]  # jaw contour and the top of the nose
DILATE = 0.02  # of the face's crop-box side: the pasted region reaches this far past the landmark hull
FEATHER = 0.03  # of the face's crop-box side: the blur that fades it into the target
MARGIN = 0.6  # in stds of the opening: how much worse than the best a continuing reference may be
OPENING_WEIGHT = 2.0  # in matching references, the opening counts twice as much as width and the rest
# in matching references, a head pose as far from the target's as the avatar's typical spread
# costs this many opening stds: in silence (one mouth held over a moving head) and in speech
POSE_WEIGHT, POSE_WEIGHT_SPEECH = 0.7, 0.35
MAX_COLOUR_SHIFT = 16.0  # grey levels: a larger mismatch is content, not lighting
SMOOTHING = (0.25, 0.75)  # the previous and this frame's shape: no look-ahead, for live streams


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
        self.active = np.zeros(0, bool)  # the rule's decision of every frame decided so far
        self.samples_heard = 0  # samples passed to the rule
        self.previous: np.ndarray | None = None  # the last frame's shape before smoothing

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
            shapes = amplify(predict_shapes(c.model, windows, c.mean_shape), c.mean_shape, c.gain)
        settled, self.previous = settle(shapes, self._speaking(first, len(shapes)), c.rest_shape, self.previous)
        return first, settled

    def _speaking(self, first: int, count: int) -> np.ndarray:
        """Voice activity of frames ``first..first+count`` (`audio.vad.voice_activity`): the
        rule decides every frame whose audio has arrived, which reaches at least
        `LEAD_FRAMES` past the last frame ready (the features look 200 ms ahead)."""
        samples = self.features.samples.view()
        new = samples[self.samples_heard :]
        self.samples_heard = len(samples)
        decided = [self.active, self.activity.push(new)] + ([self.activity.finish()] if self.ended else [])
        self.active = np.concatenate(decided)
        assert self.ended or not count or len(self.active) >= first + count + LEAD_FRAMES, "the voice-activity lead reaches past the audio"
        return with_lead(self.active[first:], count)


def amplify(shapes: np.ndarray, mean_shape: np.ndarray, gain: float) -> np.ndarray:
    """Predicted shapes moved ``gain`` times as far from the mean (`training.mouth.motion_gain`)."""
    return (mean_shape + gain * (shapes - mean_shape)).astype(np.float32)


def settle(shapes: np.ndarray, speaking: np.ndarray, rest_shape: np.ndarray, previous: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted (n, 40) shapes as rendering wants them: the rest shape where no one
    speaks, then each blended with the frame before (`SMOOTHING`). ``previous`` is the
    unblended shape of the frame before the first, if there was one; the second value
    returned is the one to pass for the frame after the last."""
    shapes = np.where(speaking[:, None], shapes, rest_shape).astype(np.float32)
    if not len(shapes):
        return shapes, previous
    before = np.concatenate([shapes[:1] if previous is None else previous[None], shapes[:-1]])
    return (SMOOTHING[0] * before + SMOOTHING[1] * shapes).astype(np.float32), shapes[-1]


class ReferencePicker:
    """Chooses a reference frame per output frame, one frame at a time (usable live), from
    the ``frames`` of a bank whose lip shapes are ``shapes`` and head poses ``poses``
    (`face_poses`)."""

    def __init__(self, model: MouthModel, mean_shape: np.ndarray, rest_shape: np.ndarray, frames: np.ndarray, shapes: np.ndarray, poses: np.ndarray):
        self.model, self.mean_shape = model, mean_shape
        self.weights = np.ones(model.config.num_coefficients, np.float32)
        self.weights[0] = OPENING_WEIGHT
        self.bank, self.coefficients, self.poses = frames, self.project(shapes), poses
        self.rest = self.project(rest_shape[None])[0]
        opening_std = float(model.scale[0])
        self.margin = MARGIN * opening_std
        spread = float(np.median(np.linalg.norm(poses - np.median(poses, axis=0), axis=1))) if len(poses) else 1.0
        self.pose_unit = opening_std / max(spread, 1e-6)  # per unit of pose distance
        self.previous: int | None = None  # index into bank

    def project(self, shapes: np.ndarray) -> np.ndarray:
        """The coordinates references are matched in: the shape change along the basis
        (in the avatar's units), the opening weighted up by `OPENING_WEIGHT`."""
        with torch.inference_mode():
            change = torch.from_numpy((shapes - self.mean_shape).astype(np.float32))
            return (self.model.coefficients(change) * self.model.scale).numpy() * self.weights

    def __call__(self, shape: np.ndarray, pose: np.ndarray) -> int:
        """The avatar frame to take the mouth from for the wanted (40,) lip ``shape``, to be
        pasted on a frame whose head pose is ``pose``."""
        wanted = self.project(shape[None])[0]
        resting = np.allclose(wanted, self.rest)
        cost = np.linalg.norm(self.coefficients - wanted, axis=1)
        weight = POSE_WEIGHT if resting else POSE_WEIGHT_SPEECH
        cost = cost + weight * self.pose_unit * np.linalg.norm(self.poses - pose, axis=1)
        best = int(np.argmin(cost))
        if self.previous is not None:
            follow = [self.previous] if resting else [self.previous + 1, self.previous]
            for candidate in follow:
                if (
                    candidate < len(self.bank)
                    and self.bank[candidate] == self.bank[self.previous] + (candidate - self.previous)
                    and cost[candidate] <= cost[best] + self.margin
                ):
                    best = candidate
                    break
        self.previous = best
        return int(self.bank[best])


def mouth_region(points: np.ndarray) -> np.ndarray:
    """The outline of the region `paste_mouth` takes, from a frame's 68 ``points``: `MOUTH_REGION`
    with the jaw points pulled towards the lips (`JAW_REACH`)."""
    region = points[MOUTH_REGION].astype(np.float32)
    centre = points[LIPS].mean(axis=0)
    region[: len(JAW)] = centre + JAW_REACH * (region[: len(JAW)] - centre)
    return region


def paste_mouth(target: np.ndarray, target_points: np.ndarray, reference: np.ndarray, reference_points: np.ndarray, face_side: float) -> np.ndarray:
    """Paste the mouth region of the ``reference`` frame onto the ``target`` frame (in place,
    returned). Points are each frame's 68 landmarks in its own pixels; ``face_side`` is the
    target's crop-box side, which sizes the feathering.

    The reference is warped straight from its full frame onto the target frame, one
    resampling, so the pasted mouth is as sharp as the recording; only the region's bounding
    box is touched."""
    matrix, _ = cv2.estimateAffinePartial2D(reference_points[ALIGN_POINTS], target_points[ALIGN_POINTS], method=cv2.LMEDS)
    if matrix is None:
        return target
    moved = mouth_region(reference_points) @ matrix[:, :2].T + matrix[:, 2]
    hull = cv2.convexHull(np.concatenate([mouth_region(target_points), moved]).astype(np.float32))[:, 0]
    grow, blur = max(1, round(DILATE * face_side)), max(1, round(FEATHER * face_side))
    h, w = target.shape[:2]
    x1, y1 = np.floor(hull.min(axis=0)).astype(int) - 2 * grow - 3 * blur
    x2, y2 = np.ceil(hull.max(axis=0)).astype(int) + 2 * grow + 3 * blur
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return target
    shift = matrix.copy()
    shift[:, 2] -= (x1, y1)
    warped = cv2.warpAffine(reference, shift, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    region = np.zeros((y2 - y1, x2 - x1), np.uint8)
    cv2.fillConvexPoly(region, np.round(hull - (x1, y1)).astype(np.int32), 1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
    region = cv2.dilate(region, disk)
    patch = target[y1:y2, x1:x2]
    # match the mean colour on a ring around the region, inside the face and above the mouth
    # (cheeks beside the nose: skin in both frames, whatever the jaw does), so lighting
    # cannot draw an edge
    ring = cv2.dilate(region, disk) - region
    face = np.zeros_like(region)
    cv2.fillConvexPoly(face, np.round(cv2.convexHull(target_points[FACE_OUTLINE].astype(np.float32))[:, 0] - (x1, y1)).astype(np.int32), 1)
    ring &= cv2.erode(face, disk)
    ring[max(0, int(target_points[48:68, 1].min()) - y1) :] = 0
    if ring.sum() > 20:
        offset = np.subtract(cv2.mean(patch, ring)[:3], cv2.mean(warped, ring)[:3])
        warped = cv2.add(warped, tuple(np.clip(offset, -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT)) + (0,), dtype=cv2.CV_8U)
    alpha = cv2.GaussianBlur(region.astype(np.float32), (0, 0), blur / 2)[..., None]
    target[y1:y2, x1:x2] = (warped * alpha + patch * (1 - alpha) + 0.5).astype(np.uint8)
    return target
