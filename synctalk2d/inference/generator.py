"""The frame generator: (source frame indices, audio windows) in, finished frames out.

It is driven chunk by chunk, so the same code renders a whole file (offline) or audio that
arrives live (streaming, idle loops): the caller decides which avatar frames to draw on
(`schedule`) and supplies the matching model-ready audio windows (`audio.windows`).

Per chunk the U-Net runs once, batched, in the calling thread (its kernels use every core),
while a small thread pool reads the full frames and pastes the generated faces back; those
OpenCV calls release the GIL, so compositing overlaps the next chunk's model call.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from synctalk2d.avatar import Avatar
from synctalk2d.face.blend import paste_face
from synctalk2d.face.crop import mask_lower_face, model_crop

# images (B, 320, 320, 6) uint8 reference+masked, audio windows (B, C, H, W) -> faces (B, 320, 320, 3) uint8
Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


class FrameGenerator:
    """Renders lip-synced full frames of one avatar."""

    def __init__(self, avatar: Avatar, predict: Predictor, workers: int = 2, color_match: bool = True):
        self.avatar = avatar
        self.predict = predict
        self.crops = avatar.crops()
        self.boxes = avatar.boxes()
        self.color_match = color_match
        self.workers = workers

    def model_inputs(self, frame_indices: np.ndarray) -> np.ndarray:
        """(B, 320, 320, 6) uint8: each frame's own crop as the reference (as the reference
        implementation does at inference) next to the same crop with the lower face masked."""
        faces = model_crop(self.crops[frame_indices])
        return np.concatenate([faces, mask_lower_face(faces)], axis=-1)

    def composite(self, frame_index: int, face: np.ndarray) -> np.ndarray:
        return paste_face(self.avatar.frame(frame_index), face, self.boxes[frame_index], color_match=self.color_match)

    def frames(self, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[np.ndarray]:
        """Yield one RGB full frame per source index, in order, for each (indices, windows) chunk."""
        with ThreadPoolExecutor(self.workers, thread_name_prefix="composite") as pool:
            pending: deque = deque()
            for frame_indices, windows in chunks:
                frame_indices = np.asarray(frame_indices)
                faces = self.predict(self.model_inputs(frame_indices), windows)
                pending.extend(pool.submit(self.composite, int(i), face) for i, face in zip(frame_indices, faces))
                while len(pending) > 2 * len(frame_indices):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
