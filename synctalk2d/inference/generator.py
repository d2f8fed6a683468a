"""The frame generator: (source frame indices, conditioning) in, finished frames out.

It is driven chunk by chunk, so the same code renders a whole file (offline) or audio that
arrives live (streaming, idle loops): the caller decides which avatar frames to draw on
(`schedule`) and supplies the matching conditioning: model-ready audio windows
(`audio.windows`) for the U-Net, or reference frame indices for the mouth-shape renderer
(`MouthGenerator`).

Per chunk the faces are drawn once, batched, in the calling thread (the U-Net's kernels use
every core), while a small thread pool reads the full frames and pastes the faces back;
those OpenCV calls release the GIL, so compositing overlaps the next chunk's drawing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

from synctalk2d.avatar import Avatar
from synctalk2d.face.blend import paste_face, rect_alpha
from synctalk2d.face.crop import MOUTH_MASK_RECT, align_face, mask_lower_face, model_crop, model_inputs, model_points
from synctalk2d.inference.mouth import bends_lips, morph, paste_mouth

# images (B, 320, 320, 6) uint8 reference+masked, audio windows (B, C, H, W) -> faces (B, 320, 320, 3) uint8
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]
LIVE_FRAME_CACHE_MB = 256  # decoded frames at the output size that a live generator keeps (shared by the sessions of one avatar and width)


class FrameCache:
    """Decoded frames, least recently used dropped past a byte budget. Live sessions walk
    the same recording and draw on and from the same frames, so each is decoded once, not
    once per session and per use (a target and its references). The arrays are read-only:
    a paste works on a copy."""

    def __init__(self, load: Callable[[int], np.ndarray], budget_bytes: int):
        self.load = load
        self.budget = budget_bytes
        self.frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()

    def __call__(self, index: int) -> np.ndarray:
        with self.lock:
            if index in self.frames:
                self.frames.move_to_end(index)
                return self.frames[index]
        frame = self.load(index)  # outside the lock: decodes of other frames go on in parallel
        frame.setflags(write=False)
        with self.lock:
            if index not in self.frames:
                self.frames[index] = frame
                self.bytes += frame.nbytes
                while self.bytes > self.budget and len(self.frames) > 1:
                    self.bytes -= self.frames.popitem(last=False)[1].nbytes
        return frame


class FrameGenerator:
    """Renders lip-synced full frames of one avatar."""

    def __init__(self, avatar: Avatar, predict: Predictor | None, workers: int = 2, color_match: bool = True, width: int | None = None, cache_mb: int = 0):
        self.avatar = avatar
        self.width = width  # output frames this wide (aspect kept), or the avatar's own size
        self.predict = predict
        self.crops = avatar.crops()
        self.boxes = avatar.boxes()
        self.color_match = color_match
        self.workers = workers
        self.cached_frame = FrameCache(lambda index: avatar.frame(index, width), cache_mb << 20)

    def draw(self, frame_indices: np.ndarray, windows: np.ndarray) -> np.ndarray:
        """(B, 320, 320, 3) uint8 faces for source frames ``frame_indices``."""
        return self.predict(model_inputs(self.crops[frame_indices]), windows)

    def frame(self, frame_index: int) -> np.ndarray:
        """Source frame ``frame_index`` at the output size, untouched (an idle frame; read-only)."""
        return self.cached_frame(frame_index)

    def composite(self, frame_index: int, face: np.ndarray) -> np.ndarray:
        frame = paste_face(self.avatar.frame(frame_index), face, self.boxes[frame_index], color_match=self.color_match)
        if self.width is None or self.width == frame.shape[1]:
            return frame
        return cv2.resize(frame, (self.width, round(frame.shape[0] * self.width / frame.shape[1])), interpolation=cv2.INTER_AREA)

    def frames(self, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Yield one RGB full frame per source index, in order, for each (indices, conditioning) chunk."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="composite") as pool:
            pending: deque = deque()
            for frame_indices, conditioning in chunks:
                frame_indices = np.asarray(frame_indices)
                faces = self.draw(frame_indices, conditioning)
                pending.extend(pool.submit(self.composite, int(i), face) for i, face in zip(frame_indices, faces))
                while len(pending) > 2 * len(frame_indices):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()


class MouthGenerator(FrameGenerator):
    """Frames whose mouth is taken from a reference frame of the avatar (see `inference.mouth`):
    the conditioning of each chunk is one row per source frame of (reference frame, the
    reference it crosses from, share of the new one) (`inference.picker.Crossings`), and
    optionally the wanted lip shape (`inference.mouth.with_wanted`); all the work is the
    paste, done in the pool."""

    def __init__(self, avatar: Avatar, landmarks: np.ndarray, workers: int = 2, width: int | None = None, cache_mb: int = 0):
        super().__init__(avatar, predict=None, workers=workers, width=width, cache_mb=cache_mb)
        self.landmarks = landmarks  # (N, 68, 2) full-frame pixels
        self.source_width = avatar.info.width  # read once: `info` reads avatar.json

    def draw(self, frame_indices: np.ndarray, references: np.ndarray) -> np.ndarray:
        return references

    def composite(self, frame_index: int, references: np.ndarray) -> np.ndarray:
        reference, old, share = int(references[0]), int(references[1]), float(references[2])
        target = self.frame(frame_index)
        crossing = old != reference and share < 1
        wanted = references[3:] if len(references) > 3 else None
        if reference == frame_index and not crossing and not bends_lips(wanted):
            return target
        scale = target.shape[1] / self.source_width  # the paste works at the output size
        side = scale * float(self.boxes[frame_index][2] - self.boxes[frame_index][0])
        cross_from = (self.frame(old), scale * self.landmarks[old], share) if crossing else None
        points = scale * self.landmarks[frame_index]
        return paste_mouth(target.copy(), points, self.frame(reference), scale * self.landmarks[reference], side, cross_from, wanted)


COMPOSITOR_FEATHER = 24  # model-crop pixels over which the redrawn rectangle fades into the real crop


class CompositorGenerator(FrameGenerator):
    """Frames whose mouth and chin the compositor U-Net (`training.compositor`) redraws from
    the reference frame the picker chose, onto the target's own cheeks, jaw line and pose.
    The conditioning is `MouthGenerator`'s (reference, reference crossed from, share); a
    crossing draws both references and morphs between the two drawings. Outside the mouth
    rectangle the real crop is kept, and a frame that is its own reference is not redrawn.
    References are aligned onto the target's face first, as in training."""

    def __init__(self, avatar: Avatar, predict: Predictor, workers: int = 2, width: int | None = None, cache_mb: int = 0):
        super().__init__(avatar, predict, workers=workers, width=width, cache_mb=cache_mb)
        self.alpha = rect_alpha(MOUTH_MASK_RECT, COMPOSITOR_FEATHER)
        self.points = model_points(avatar.landmarks(), self.boxes)

    def _inputs(self, references: np.ndarray, targets: np.ndarray, target_frames: np.ndarray, masked: np.ndarray) -> np.ndarray:
        crops = model_crop(self.crops[references])
        aligned = [align_face(crop, self.points[r], self.points[t]) for crop, r, t in zip(crops, references, target_frames)]
        return np.concatenate([np.stack(aligned), masked], axis=-1)

    def draw(self, frame_indices: np.ndarray, references: np.ndarray) -> list[np.ndarray | None]:
        reference, old, share = references[:, 0].astype(int), references[:, 1].astype(int), references[:, 2]
        crossing = (old != reference) & (share < 1)
        redrawn = np.flatnonzero((reference != frame_indices) | crossing)
        faces: list[np.ndarray | None] = [None] * len(frame_indices)
        if not len(redrawn):
            return faces
        targets = model_crop(self.crops[frame_indices[redrawn]])
        masked = mask_lower_face(targets, MOUTH_MASK_RECT)
        drawn = self.predict(self._inputs(reference[redrawn], targets, frame_indices[redrawn], masked), None)
        leaving = crossing[redrawn]
        if leaving.any():
            before = self.predict(self._inputs(old[redrawn[leaving]], targets[leaving], frame_indices[redrawn[leaving]], masked[leaving]), None)
            for k, face in zip(np.flatnonzero(leaving), before):
                drawn[k] = morph(face, drawn[k], float(share[redrawn[k]]))
        for k, face, target in zip(redrawn, drawn, targets):
            faces[k] = (self.alpha * face + (1 - self.alpha) * target + 0.5).astype(np.uint8)
        return faces

    def composite(self, frame_index: int, face: np.ndarray | None) -> np.ndarray:
        return self.frame(frame_index) if face is None else super().composite(frame_index, face)
