"""Live rendering: speech arrives in chunks, frames leave at 25 fps, the avatar idles in between.

A `LiveSession` is one viewer's stream of one avatar. Audio is pushed as it arrives
(`push`); `end` closes an utterance and `interrupt` drops whatever is still to be said.
The caller asks for one frame per tick of a 25 fps clock (`next_frame`): while speech is
ready, the frame speaks it; otherwise it is the avatar's own recorded frame (idle). Speech
and idle frames walk the same ping-pong path over the recording, so speech starts from the
current idle position without a jump.

Look-ahead, the one trade-off of going live: a frame can only be drawn once the audio it
depends on has arrived. The mouth model needs `speech_features.LOOKAHEAD_SECONDS` (200 ms)
past a frame's time; the audio conditioning needs the U-Net's 7 future frames of features
(`audio.windows`) plus the feature's own context (`AUDIO_CONTEXT_SECONDS`). A live source
cannot beat that delay; everything else (features, the mouth paste, JPEG) is kept to a few
milliseconds per frame. Offline rendering runs the same conditioning over a whole file, so
a file and a live stream of the same audio speak with the same mouth.

Each utterance keeps its own clock: frame k is due k ticks after its first frame was
shown. If audio arrives too slowly for that (a stalled source), the last mouth is held and
the late frames are skipped when they come, so the video never drifts from the audio.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from synctalk2d.audio.speech_features import LOOKAHEAD_SECONDS, GrowingArray
from synctalk2d.audio.windows import FRAMES_BEFORE, FRAMES_PER_WINDOW
from synctalk2d.avatar import FPS, SAMPLES_PER_FRAME
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.picker import Crossings
from synctalk2d.inference.schedule import PingPong
from synctalk2d.media.audio import SAMPLE_RATE

MAX_BUFFERED_SECONDS = 600.0  # audio one session may hold that has not been spoken yet
AUDIO_CONTEXT_SECONDS = 0.25  # audio past a frame that its AVE feature reads (a 16-frame mel window)
FEATURE_CONTEXT_FRAMES = 25  # features recomputed before the first new frame, so edges match a whole file
PICK_LOOKAHEAD_FRAMES = 12  # ready shapes beyond a frame that its reference choice may weigh (there are some when audio comes faster than it plays)


class MouthReferences:
    """Mouth conditioning of one utterance: the wanted lip shape of each output frame as
    its audio arrives, then, once the frame it is drawn on is known, the reference frame,
    chosen by the same sequence search as a file's over the shapes already known beyond it
    (`inference.picker`; up to `PICK_LOOKAHEAD_FRAMES`)."""

    def __init__(self, lipsync: LipSync):
        self.shapes = lipsync.mouth.stream()
        self.pick = lipsync.mouth.picker()
        self.crossings = Crossings(lipsync.mouth.bank)
        self.poses = lipsync.mouth.poses

    def push(self, samples: np.ndarray) -> None:
        self.shapes.push(samples)

    def end(self) -> None:
        self.shapes.end()

    @property
    def num_frames(self) -> int | None:
        return self.shapes.features.num_frames

    def take(self) -> list[np.ndarray]:
        return list(self.shapes.take()[1])

    def for_frame(self, shape: np.ndarray, source: int, ahead: list[np.ndarray]) -> np.ndarray:
        """(reference, reference it crosses from, share) for ``shape`` drawn on avatar frame
        ``source``, with the shapes ``ahead`` of it (their targets are taken to be posed as
        ``source``: the head moves little within the look-ahead)."""
        shapes = np.stack([shape, *ahead[:PICK_LOOKAHEAD_FRAMES]])
        return np.array(self.crossings(*self.pick(shapes, np.repeat(self.poses[source][None], len(shapes), axis=0))), np.float64)


class AudioWindows:
    """Audio conditioning of one utterance: the U-Net's audio window for each output frame.

    Features are recomputed over the new frames plus `FEATURE_CONTEXT_FRAMES` before them,
    so for AVE features (local in time) the windows equal those of the whole file; HuBERT
    and WeNet look at the whole utterance and are approximated by that context."""

    def __init__(self, lipsync: LipSync):
        self.lipsync = lipsync
        self.audio = GrowingArray()
        self.num_frames: int | None = None
        self.taken = 0

    def push(self, samples: np.ndarray) -> None:
        self.audio.append(np.asarray(samples, np.float32))

    def end(self) -> None:
        self.num_frames = -(-self.audio.size // SAMPLES_PER_FRAME)
        self.audio.append(np.zeros(self.num_frames * SAMPLES_PER_FRAME - self.audio.size, np.float32))

    @property
    def samples(self) -> np.ndarray:
        return self.audio.view()

    def take(self) -> list[np.ndarray]:
        if self.num_frames is not None:
            known, ready = self.num_frames, self.num_frames
        else:  # features whose audio has fully arrived, and frames whose whole window they cover
            known = int((len(self.samples) / SAMPLE_RATE - AUDIO_CONTEXT_SECONDS) * FPS)
            ready = known - (FRAMES_PER_WINDOW - FRAMES_BEFORE - 1)
        if ready <= self.taken or known < 1:
            return []
        first = max(0, self.taken - FRAMES_BEFORE - FEATURE_CONTEXT_FRAMES) // 5 * 5  # 5 frames = 16 mel frames: mel windows stay aligned
        stop = known if self.num_frames is not None else min(known + FEATURE_CONTEXT_FRAMES, len(self.samples) // SAMPLES_PER_FRAME)
        features = self.lipsync.audio_features(self.samples[first * SAMPLES_PER_FRAME : stop * SAMPLES_PER_FRAME])
        padded = np.concatenate([np.repeat(features[:1], first, axis=0), features[: known - first]]) if first else features[:known]
        windows = self.lipsync.audio_windows(padded, np.arange(self.taken, ready))
        self.taken = ready
        return list(windows)

    def for_frame(self, window: np.ndarray, source: int, ahead: list[np.ndarray]) -> np.ndarray:
        return window


def lookahead_seconds(lipsync: LipSync) -> float:
    """Audio past a frame's time that its conditioning needs before it can be drawn."""
    if lipsync.conditioning == "mouth":
        return LOOKAHEAD_SECONDS
    return (FRAMES_PER_WINDOW - FRAMES_BEFORE - 1) / FPS + AUDIO_CONTEXT_SECONDS


def conditioning_stream(lipsync: LipSync) -> MouthReferences | AudioWindows:
    return MouthReferences(lipsync) if lipsync.conditioning == "mouth" else AudioWindows(lipsync)


def warm_up(lipsync: LipSync) -> None:
    """Run one short utterance through the live path, so the first viewer does not pay for
    first-call set-up (mel filters, model kernels)."""
    session = LiveSession(lipsync, width=min(64, lipsync.avatar.info.width))
    session.push(np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32), 0.0)
    session.end()
    for tick in range(2):
        session.next_frame(tick)


@dataclass
class Utterance:
    number: int
    conditioning: MouthReferences | AudioWindows
    received_after: list[int] = field(default_factory=list)  # samples received once each chunk had arrived
    arrival_times: list[float] = field(default_factory=list)  # ... and when it arrived
    ready: deque = field(default_factory=deque)  # conditioning of frames made ready but not shown yet (see `for_frame`)
    next_ready: int = 0  # index of the frame ready[0] belongs to
    first_tick: int | None = None  # the tick its frame 0 was shown at
    last: object = None  # the conditioning shown last, held if audio runs late

    @property
    def received(self) -> int:
        """Samples received so far."""
        return self.received_after[-1] if self.received_after else 0

    def arrival_of(self, frame: int) -> float:
        """When the chunk holding the start of ``frame``'s audio arrived."""
        chunk = bisect.bisect_right(self.received_after, frame * SAMPLES_PER_FRAME)
        return self.arrival_times[min(chunk, len(self.arrival_times) - 1)]

    @property
    def done(self) -> bool:
        n = self.conditioning.num_frames
        return n is not None and self.next_ready >= n and not self.ready


@dataclass
class LiveFrame:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    source: int  # the avatar frame it is drawn on
    utterance: int | None = None  # the utterance it speaks (None: idle)
    index: int | None = None  # its frame number within the utterance
    arrival: float | None = None  # when the audio it speaks arrived (for latency)
    held: bool = False  # its own audio came too late: the previous mouth is shown again
    reference: int | None = None  # mouth conditioning: the avatar frame whose mouth it shows
    events: list[dict] = field(default_factory=list)


class LiveSession:
    """One live stream of one avatar (see the module docstring)."""

    def __init__(self, lipsync: LipSync, width: int | None = None, start_frame: int = 0):
        self.lipsync = lipsync
        self.generator = lipsync.generator_at(width)
        self.walk = PingPong(len(lipsync.avatar), start_frame)
        self.utterances: deque[Utterance] = deque()
        self.numbered = 0
        self.tick = -1
        self.lock = threading.Lock()  # audio is pushed from one thread while frames are drawn in another

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.generator.frame(0).shape[1::-1]

    def _open(self) -> Utterance:
        if not self.utterances or self.utterances[-1].conditioning.num_frames is not None:
            self.utterances.append(Utterance(self.numbered, conditioning_stream(self.lipsync)))
            self.numbered += 1
        return self.utterances[-1]

    def push(self, samples: np.ndarray, now: float) -> bool:
        """Add 16 kHz mono float audio of the utterance being spoken (opening one if needed).
        True when this made the first frame of the next utterance ready: a caller may then
        show it without waiting for its next tick."""
        if not len(samples):
            return False
        with self.lock:
            pending = sum(u.received - u.next_ready * SAMPLES_PER_FRAME for u in self.utterances)
            if pending + len(samples) > MAX_BUFFERED_SECONDS * SAMPLE_RATE:
                raise UserError(f"more than {MAX_BUFFERED_SECONDS:.0f} s of audio is waiting to be spoken; send it no faster than it plays")
            utterance = self._open()
            utterance.conditioning.push(samples)
            utterance.received_after.append(utterance.received + len(samples))
            utterance.arrival_times.append(now)
            first = self.utterances[0]
            if first.first_tick is None and not first.ready:
                first.ready.extend(first.conditioning.take())
                return bool(first.ready)
            return False

    def end(self) -> None:
        """The utterance being received is complete: its last frames can be drawn."""
        with self.lock:
            if self.utterances and self.utterances[-1].conditioning.num_frames is None:
                self.utterances[-1].conditioning.end()

    def interrupt(self) -> list[dict]:
        """Stop speaking now: everything not yet shown is dropped."""
        with self.lock:
            events = [{"type": "utterance_ended", "utterance": u.number, "interrupted": True} for u in self.utterances if u.first_tick is not None]
            self.utterances.clear()
            return events

    def _ready_frames(self) -> None:
        for utterance in self.utterances:
            taken = utterance.conditioning.take()
            utterance.ready.extend(taken)

    def next_frame(self, tick: int) -> LiveFrame:
        """The frame for clock tick ``tick`` (ticks count 25 fps frames; skipped ticks advance
        the walk so the recording keeps its pace). Decisions are made under the lock, the
        drawing outside it, so a push never waits for a JPEG decode or a paste."""
        with self.lock:
            steps = tick - self.tick if self.tick >= 0 else 1
            self.tick = tick
            source = int(self.walk.take(max(steps, 1))[-1])
            self._ready_frames()
            while self.utterances and self.utterances[0].done and self.utterances[0].first_tick is None:
                self.utterances.popleft()  # an utterance with no frames at all
            speaking = bool(self.utterances) and (self.utterances[0].first_tick is not None or bool(self.utterances[0].ready))
            if speaking:
                utterance, events = self.utterances[0], []
                if utterance.first_tick is None:
                    utterance.first_tick = tick
                    events.append({"type": "utterance_started", "utterance": utterance.number})
                due = tick - utterance.first_tick
                while utterance.ready and utterance.next_ready <= due:  # skip frames that came too late
                    utterance.last = utterance.ready.popleft()
                    utterance.next_ready += 1
                index = min(due, utterance.next_ready - 1)
                conditioning = utterance.conditioning.for_frame(utterance.last, source, list(utterance.ready))
                arrival = utterance.arrival_of(index)
                if utterance.done:
                    self.utterances.popleft()
                    events.append({"type": "utterance_ended", "utterance": utterance.number, "frames": utterance.next_ready, "interrupted": False})
        if not speaking:
            return LiveFrame(self.generator.frame(source), source)
        image = self.generator.composite(source, self.generator.draw(np.array([source]), _batch(conditioning))[0])
        reference = int(conditioning[0]) if self.lipsync.conditioning == "mouth" else None
        return LiveFrame(image, source, utterance.number, index, arrival, index < due, reference, events)


def _batch(conditioning) -> np.ndarray:
    return np.asarray(conditioning)[None]
