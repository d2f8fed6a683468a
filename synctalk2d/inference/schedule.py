"""Which avatar frame each output frame is drawn on.

The avatar's recording is walked forward and bounced back at either end (ping-pong), so the
body and head keep moving naturally for any length of audio without a jump cut. With
loop-back, the second half of the walk retraces the first, so the video ends on the frame it
started from and can loop seamlessly (as the reference does).
"""

from __future__ import annotations

import numpy as np


class PingPong:
    """Endless ping-pong walk over ``num_frames`` source frames, from ``start``.

    Stateful so a live stream can keep drawing the next frames chunk by chunk.
    """

    def __init__(self, num_frames: int, start: int = 0):
        if num_frames < 1:
            raise ValueError("an avatar needs at least one frame")
        self.num_frames = num_frames
        self.position = start % num_frames
        self.step = 1 if num_frames > 1 else 0

    def take(self, count: int) -> np.ndarray:
        """The next ``count`` source frame indices."""
        out = np.empty(count, dtype=np.int64)
        for i in range(count):
            out[i] = self.position
            if not 0 <= self.position + self.step < self.num_frames:
                self.step = -self.step
            self.position += self.step
        return out


def frame_schedule(count: int, num_frames: int, start: int = 0, loop_back: bool = True) -> np.ndarray:
    """Source frame index for each of ``count`` output frames."""
    if not loop_back:
        return PingPong(num_frames, start).take(count)
    # Walk out for half the frames, then retrace: the turning frame is shown once when
    # ``count`` is odd and twice (a one-frame hold) when it is even.
    outbound = PingPong(num_frames, start).take((count + 1) // 2)
    return np.concatenate([outbound, outbound[::-1][count % 2 :]])
