"""Voice activity per video frame: frame energy with hysteresis, so the mouth rests in pauses.

A frame is speech when its RMS level rises above `ON_DB` below the utterance's loud level
(its 95th percentile) and stays speech until it falls below `OFF_DB`; short gaps inside
speech (`HANGOVER_FRAMES`) are bridged, so a mouth does not snap shut between syllables.
Levels are relative, so the rule holds for quiet and loud recordings alike; an utterance
whose loud level is below `FLOOR_DB` (digital silence, hum) has no speech at all.
"""

from __future__ import annotations

import numpy as np

from synctalk2d.avatar import SAMPLES_PER_FRAME

ON_DB = -30.0
OFF_DB = -38.0
FLOOR_DB = -55.0  # dBFS
HANGOVER_FRAMES = 4  # 160 ms


def frame_levels(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """RMS level in dBFS of each video frame's 40 ms of 16 kHz audio (zero-padded at the end)."""
    padded = np.zeros(num_frames * SAMPLES_PER_FRAME, np.float32)
    n = min(len(wav), len(padded))
    padded[:n] = wav[:n]
    rms = np.sqrt(np.mean(padded.reshape(num_frames, SAMPLES_PER_FRAME) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-6))


def voice_activity(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: True where someone is speaking."""
    levels = frame_levels(wav, num_frames)
    loud = np.percentile(levels, 95) if num_frames else FLOOR_DB
    if loud < FLOOR_DB:
        return np.zeros(num_frames, bool)
    active = np.zeros(num_frames, bool)
    speaking, quiet_for = False, 0
    for i, level in enumerate(levels - loud):
        if level > ON_DB:
            speaking, quiet_for = True, 0
        elif speaking and level < OFF_DB:
            quiet_for += 1
            speaking = quiet_for <= HANGOVER_FRAMES
        active[i] = speaking
    return active
