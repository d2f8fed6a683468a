"""Speech features for the mouth model: normalised log-mel, windowed per video frame.

The mouth model must work for any speaker and microphone, so each mel band is normalised
(mean 0, std 1: loudness and channel colour drop out). Each video frame sees a window of
mel frames reaching `PAST_SECONDS` back and at most `LOOKAHEAD_SECONDS` ahead (counting the
STFT window's half width), so a live stream can render a frame once that little future
audio has arrived.

Training normalises over a whole clip (`normalised_mel`). Rendering cannot wait for the
whole utterance when it is live, so `SpeechFeatureStream` normalises each mel frame by the
running statistics of the utterance so far, started from the avatar's own voice
(`PRIOR_SECONDS` of weight); offline rendering runs the same stream over the whole file, so
a file and a live stream of the same audio get the same features.
"""

from __future__ import annotations

import numpy as np

from synctalk2d.audio.mel import HOP, MEL_FPS, N_FFT, N_MELS, mel_frames, melspectrogram, preemphasis
from synctalk2d.avatar import FPS, SAMPLES_PER_FRAME
from synctalk2d.media.audio import SAMPLE_RATE

LOOKAHEAD_SECONDS = 0.2  # future audio a frame depends on
LOOKAHEAD_ROUNDING_SECONDS = 0.005  # ... and up to this much more, where its time rounds up to the mel grid
PAST_SECONDS = 0.4
PRIOR_SECONDS = 2.0  # the avatar's voice statistics count as this much audio of the utterance
_HALF_STFT = N_FFT // 2
MEL_AHEAD = int((LOOKAHEAD_SECONDS - _HALF_STFT / SAMPLE_RATE) * MEL_FPS)  # 14 mel frames
MEL_BEHIND = int(PAST_SECONDS * MEL_FPS)  # 32 mel frames
WINDOW = MEL_BEHIND + 1 + MEL_AHEAD


def normalised_mel(wav: np.ndarray) -> np.ndarray:
    """(T, 80) log-mel of 16 kHz mono ``wav``, each band scaled to mean 0 and std 1 over
    the utterance (a silent utterance stays all zeros)."""
    mel = melspectrogram(wav)
    std = mel.std(axis=0, keepdims=True)
    return ((mel - mel.mean(axis=0, keepdims=True)) / np.maximum(std, 1e-3)).astype(np.float32)


def mel_centre(frame: np.ndarray | int) -> np.ndarray | int:
    """The mel frame at video frame ``frame``'s time (frame / 25 s)."""
    return np.round(np.asarray(frame) * MEL_FPS / FPS).astype(int)


def frame_windows(mel: np.ndarray, num_frames: int, first: int = 0, mel_start: int = 0) -> np.ndarray:
    """(num_frames, WINDOW, 80) float32: for video frames ``first...``, the mel frames from
    ``MEL_BEHIND`` before the frame's time to ``MEL_AHEAD`` after; frames beyond either end of
    the audio repeat the edge frame. ``mel`` may be the tail of an utterance's mel frames
    that starts at frame ``mel_start``, as long as it holds every frame the windows reach."""
    if len(mel) == 0:
        return np.zeros((num_frames, WINDOW, N_MELS), np.float32)
    centres = mel_centre(np.arange(first, first + num_frames))
    index = np.clip(centres[:, None] + np.arange(-MEL_BEHIND, MEL_AHEAD + 1)[None, :], 0, mel_start + len(mel) - 1)
    return mel[index - mel_start]


class GrowingArray:
    """A float array that grows at one end (amortised O(1) appends) and can forget its
    start, so a stream of any length keeps only what it still needs. Indices are absolute:
    counted from the first value ever appended."""

    def __init__(self, width: int | None = None):
        self.data = np.zeros((1024,) if width is None else (64, width), np.float32)
        self.size = 0  # values held
        self.start = 0  # absolute index of data[0]

    @property
    def total(self) -> int:
        """How many values were ever appended."""
        return self.start + self.size

    def append(self, values: np.ndarray) -> None:
        if self.size + len(values) > len(self.data):
            grown = np.zeros((max(2 * len(self.data), self.size + len(values)), *self.data.shape[1:]), np.float32)
            grown[: self.size] = self.data[: self.size]
            self.data = grown
        self.data[self.size : self.size + len(values)] = values
        self.size += len(values)

    def view(self) -> np.ndarray:
        """The values held (all of them, unless the start was forgotten)."""
        return self.data[: self.size]

    def since(self, index: int) -> np.ndarray:
        """The values from absolute ``index`` on (a view)."""
        if index < self.start:
            raise IndexError(f"values before {self.start} were forgotten, {index} asked for")
        return self.data[index - self.start : self.size]

    def forget_before(self, index: int) -> None:
        """Drop the values before absolute ``index``; the rest are moved down once the
        dropped part is as large as what is kept, so forgetting costs O(1) per value."""
        drop = min(index, self.total) - self.start
        if drop <= 0 or drop < self.size - drop:
            return
        kept = self.size - drop
        self.data[:kept] = self.data[drop : self.size].copy()
        self.start, self.size = self.start + drop, kept


class SpeechFeatureStream:
    """Mouth-model windows for one utterance, computed as its 16 kHz audio arrives.

    `push` adds audio, `end` says no more will come; `take` returns the windows of the
    video frames that became computable since the last call (a frame needs audio up to
    `LOOKAHEAD_SECONDS` past its time, or the end of the utterance). Audio and mel frames
    that no later frame needs are forgotten, so an hour-long file takes the memory of a
    sentence; the raw audio stays until its reader (the voice-activity rule) forgets it
    (`samples.forget_before`).
    """

    def __init__(self, prior_mean: np.ndarray, prior_std: np.ndarray):
        weight = PRIOR_SECONDS * MEL_FPS
        self._prior = (weight, weight * prior_mean.astype(np.float64), weight * (prior_std.astype(np.float64) ** 2 + prior_mean.astype(np.float64) ** 2))
        self._sum, self._squares, self._count = self._prior[1].copy(), self._prior[2].copy(), self._prior[0]
        self.samples = GrowingArray()  # raw audio, for the voice-activity rule
        self._last_sample = 0.0  # pre-emphasis continues across pushes
        self._emphasised = GrowingArray()  # pre-emphasised, with half an STFT window of zeros in front
        self._emphasised.append(np.zeros(_HALF_STFT, np.float32))
        self._mel = GrowingArray(N_MELS)  # normalised
        self.frames_taken = 0
        self.num_frames: int | None = None  # known once the utterance has ended

    @property
    def ended(self) -> bool:
        return self.num_frames is not None

    def push(self, samples: np.ndarray) -> None:
        if self.ended:
            raise ValueError("the utterance has ended")
        samples = np.asarray(samples, np.float32)
        if not len(samples):
            return
        self.samples.append(samples)
        self._emphasised.append(preemphasis(samples, self._last_sample))
        self._last_sample = float(samples[-1])  # mel frames wait for `take`: one call per batch of pushes

    def end(self) -> None:
        """No more audio: pad to whole video frames (as a file is), then the closing half window."""
        if self.ended:
            return
        num_frames = -(-self.samples.total // SAMPLES_PER_FRAME)
        padding = num_frames * SAMPLES_PER_FRAME - self.samples.total
        if padding:
            self.push(np.zeros(padding, np.float32))
        self._emphasised.append(np.zeros(_HALF_STFT, np.float32))
        self._compute_mel()
        self.num_frames = num_frames

    def _compute_mel(self) -> None:
        first, last = self._mel.total, (self._emphasised.total - N_FFT) // HOP  # frames first..last are computable
        if last < first:
            return
        mel = mel_frames(self._emphasised.since(first * HOP)[: (last - first) * HOP + N_FFT]).astype(np.float64)
        # running statistics: frame t is normalised by the prior plus mel frames 0..t
        sums = self._sum + np.cumsum(mel, axis=0)
        squares = self._squares + np.cumsum(mel**2, axis=0)
        counts = self._count + np.arange(1, len(mel) + 1)[:, None]
        mean = sums / counts
        std = np.sqrt(np.maximum(squares / counts - mean**2, 0.0))
        self._mel.append(((mel - mean) / np.maximum(std, 1e-3)).astype(np.float32))
        self._sum, self._squares, self._count = sums[-1], squares[-1], counts[-1, 0]
        self._emphasised.forget_before((last + 1) * HOP)  # where the next mel frame starts

    def ready_frames(self) -> int:
        """How many video frames of this utterance can be computed now."""
        self._compute_mel()
        if self.ended:
            return self.num_frames
        # frame i needs mel frame centre(i) + MEL_AHEAD; centres grow by 3.2 per frame
        available = self._mel.total - 1 - MEL_AHEAD
        count = max(0, int(available * FPS / MEL_FPS))
        while mel_centre(count) <= available:
            count += 1
        return count

    def take(self) -> tuple[int, np.ndarray]:
        """(index of the first frame, (n, WINDOW, 80) windows) of the frames ready since the last call."""
        first, ready = self.frames_taken, self.ready_frames()
        self.frames_taken = max(ready, first)
        windows = frame_windows(self._mel.view(), self.frames_taken - first, first, self._mel.start)
        self._mel.forget_before(int(mel_centre(self.frames_taken)) - MEL_BEHIND)  # the earliest a later window reaches
        return first, windows
