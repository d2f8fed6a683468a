"""Voice activity per video frame: frame energy with hysteresis, so the mouth rests in pauses.

A frame is speech when its RMS level rises above `ON_DB` below the loud level of the
utterance so far and stays speech until it falls below `OFF_DB`; short gaps inside speech
(`HANGOVER_FRAMES`) are bridged, so a mouth does not snap shut between syllables. Levels are
relative, so the rule holds for quiet and loud recordings alike; the loud level starts at
`START_LOUD_DB`, so audio below `START_LOUD_DB + ON_DB` dBFS (digital silence, hum, room
noise) is never speech. The rule only looks back, so a live stream decides each frame as
its audio arrives, exactly as a file is decided.
"""

from __future__ import annotations

import numpy as np

from synctalk2d.avatar import SAMPLES_PER_FRAME

ON_DB = -30.0
OFF_DB = -38.0
START_LOUD_DB = -20.0  # dBFS: speech is louder than -50 dBFS
PEAK_TO_LOUD_DB = 3.0  # the loud level sits this far below the loudest frame
HANGOVER_FRAMES = 4  # 160 ms


def frame_levels(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS level in dBFS of each video frame's 40 ms of 16 kHz audio (zero-padded at the end)."""
    padded = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
    n = min(len(wav), len(padded))
    padded[:n] = wav[:n]
    rms = np.sqrt(np.mean(padded.reshape(num_frames, SAMPLES_PER_FRAME) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


class VoiceActivity:
    """The rule applied frame by frame, as a live stream needs it: the loud level is the
    loudest frame so far (`PEAK_TO_LOUD_DB` below it, and never below `START_LOUD_DB`, so
    the noise before the first word is not mistaken for speech)."""

    def __init__(self):
        self.loud, self.speaking, self.quiet_for = START_LOUD_DB, False, 0

    def __call__(self, levels: np.ndarray) -> np.ndarray:
        """(n,) bool for the next n frames' levels (dBFS, `frame_levels`)."""
        active = np.zeros(len(levels), bool)
        for i, level in enumerate(levels):
            self.loud = max(self.loud, level - PEAK_TO_LOUD_DB)
            relative = level - self.loud
            if relative > ON_DB:
                self.speaking, self.quiet_for = True, 0
            elif self.speaking and relative < OFF_DB:
                self.quiet_for += 1
                self.speaking = self.quiet_for <= HANGOVER_FRAMES
            active[i] = self.speaking
        return active


def voice_activity(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: True where someone is speaking."""
    return VoiceActivity()(frame_levels(wav, num_frames))
