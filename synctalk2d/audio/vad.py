"""Voice activity per video frame, so the mouth rests where no one speaks.

Speech is told from other sound by Silero VAD, a small trained model (MIT; the ONNX file
ships in the `silero-vad` wheel) that gives a speech probability for every 32 ms chunk of
16 kHz audio: an energy rule calls hum, breathing, keyboards and music speech too, and holds
the mouth half open over them (`bench/vad.py` has the figures). A video frame's probability
is the highest of the chunks its 40 ms overlap; a frame is speech from `SPEECH_ON` on and stays
speech until the probability falls below `SPEECH_OFF`, with short gaps (`HANGOVER_FRAMES`)
bridged, so a mouth does not snap shut between syllables.

A frame is then called speech also when speech starts within the next `LEAD_FRAMES` frames
(`with_lead`), because lips move before the sound they make: a mouth that waits for the
sound opens late. A live stream has that much audio beyond each frame anyway (the mouth
model looks 200 ms ahead), and the chunks are counted from the start of the utterance in a
stream as in a file, so a stream decides each frame exactly as a file is decided.

The model runs on onnxruntime through the small loop below rather than through the
`silero_vad` Python package, whose import sets torch's thread count for the whole process.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from synctalk2d.avatar import SAMPLES_PER_FRAME
from synctalk2d.packaged import installed_file

SPEECH_ON, SPEECH_OFF = 0.5, 0.35  # Silero's own defaults (threshold, threshold - 0.15)
HANGOVER_FRAMES = 4  # 160 ms
LEAD_FRAMES = 3  # 120 ms before the sound the mouth may open: the most the stream's 200 ms look-ahead allows (calibrated on the pool: docs/quality.md, Timing)
CHUNK = 512  # samples at 16 kHz: the model's step
_CONTEXT = 64  # samples of the previous chunk the model sees with each chunk


def silero_model_path() -> Path:
    """Silero VAD's ONNX model inside the installed `silero-vad` package."""
    return installed_file("silero_vad", "data/silero_vad.onnx", "the voice-activity model", "silero-vad")


@lru_cache(maxsize=1)
def _session():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(silero_model_path()), options, providers=["CPUExecutionProvider"])


class SpeechProbability:
    """Silero VAD's speech probability of each 32 ms chunk of one utterance, as audio arrives."""

    def __init__(self) -> None:
        self.session = _session()
        self.state = np.zeros((2, 1, 128), np.float32)
        self.context = np.zeros(_CONTEXT, np.float32)
        self.pending = np.zeros(0, np.float32)

    def __call__(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the chunks completed by ``samples`` (16 kHz mono float32)."""
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        out = []
        while len(self.pending) >= CHUNK:
            chunk, self.pending = self.pending[:CHUNK], self.pending[CHUNK:]
            x = np.concatenate([self.context, chunk])[None]
            probability, self.state = self.session.run(None, {"input": x, "state": self.state, "sr": np.array(16000, np.int64)})
            self.context = chunk[-_CONTEXT:]
            out.append(float(probability.ravel()[0]))
        return np.array(out, np.float32)

    def finish(self) -> np.ndarray:
        """The last, partial chunk's probability (padded with silence), if there is one."""
        return self(np.zeros(CHUNK - len(self.pending), np.float32)) if len(self.pending) else np.zeros(0, np.float32)


class VoiceActivity:
    """The rule frame by frame as audio arrives: `push` samples, get the decisions of the
    video frames that became complete (their 40 ms and every chunk they overlap); `finish`
    decides the rest of the utterance."""

    def __init__(self) -> None:
        self.probability = SpeechProbability()
        self.chunks = np.zeros(0, np.float32)  # the probability of every chunk from ...
        self.chunks_start = 0  # ... this one on (earlier ones have decided all their frames)
        self.decided = 0  # frames decided
        self.speaking, self.quiet_for = False, 0

    def push(self, samples: np.ndarray) -> np.ndarray:
        return self._decide(self.probability(samples), final=False)

    def finish(self) -> np.ndarray:
        return self._decide(self.probability.finish(), final=True)

    def _decide(self, probabilities: np.ndarray, final: bool) -> np.ndarray:
        done = self.decided * SAMPLES_PER_FRAME // CHUNK  # the first chunk an undecided frame overlaps
        self.chunks = np.concatenate([self.chunks[done - self.chunks_start :], probabilities])
        self.chunks_start = done
        active = []
        while True:
            first = self.decided * SAMPLES_PER_FRAME // CHUNK - self.chunks_start
            last = ((self.decided + 1) * SAMPLES_PER_FRAME - 1) // CHUNK - self.chunks_start
            if last >= len(self.chunks) and not (final and first < len(self.chunks)):
                break
            probability = float(self.chunks[first : last + 1].max())
            if probability >= SPEECH_ON:
                self.speaking, self.quiet_for = True, 0
            elif self.speaking and probability < SPEECH_OFF:
                self.quiet_for += 1
                self.speaking = self.quiet_for <= HANGOVER_FRAMES
            active.append(self.speaking)
            self.decided += 1
        return np.array(active, bool)


def with_lead(active: np.ndarray, count: int, lead: int = LEAD_FRAMES) -> np.ndarray:
    """The first ``count`` frames of the rule's ``active``, each also speech when speech
    starts within ``lead`` frames after it (``active`` reaches that far, or to the end of
    the utterance)."""
    out = np.zeros(count, bool)
    for k in range(lead + 1):
        ahead = active[k : k + count]
        out[: len(ahead)] |= ahead
    return out


def frame_activity(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: the rule on a whole utterance, before the lead."""
    rule = VoiceActivity()
    active = np.concatenate([rule.push(wav[: num_frames * SAMPLES_PER_FRAME]), rule.finish()])[:num_frames]
    return np.concatenate([active, np.zeros(num_frames - len(active), bool)])


def voice_activity(wav: np.ndarray, num_frames: int) -> np.ndarray:
    """(num_frames,) bool: True where someone is speaking (or is about to: `with_lead`)."""
    return with_lead(frame_activity(wav, num_frames), num_frames)
