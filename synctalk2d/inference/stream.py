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

Each frame carries the 40 ms of audio it speaks (silence when idle), so a transport that
sends both from the same tick keeps voice and lips together by construction. An utterance
starts once the audio buffered beyond its first frame covers the gap to the next chunk,
as measured on the chunks so far (`ArrivalPattern`): 20 ms chunks start as soon as the
look-ahead allows, 200 ms chunks wait for one more chunk's worth, a TTS that renders
faster than real time starts at once. If audio still runs late (a stalled source), the
frame is held: the last mouth is shown again with silence, and the utterance resumes
where it paused, so audio and video never part.
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from synctalk2d.audio.speech_features import LOOKAHEAD_ROUNDING_SECONDS, LOOKAHEAD_SECONDS, GrowingArray
from synctalk2d.audio.windows import FRAMES_BEFORE, FRAMES_PER_WINDOW
from synctalk2d.avatar import FPS, SAMPLES_PER_FRAME
from synctalk2d.errors import UserError
from synctalk2d.inference.lipsync import LipSync
from synctalk2d.inference.mouth import with_wanted
from synctalk2d.inference.picker import Crossings
from synctalk2d.inference.schedule import PingPong
from synctalk2d.media.audio import SAMPLE_RATE

MAX_BUFFERED_SECONDS = 600.0  # audio one session may hold that has not been spoken yet
MAX_GAP_SECONDS = 1.0  # longest wait between chunks that an utterance's start makes room for
START_MARGIN_SECONDS = 0.005  # beyond the expected gap, for scheduling noise
GAPS_REMEMBERED = 16  # recent gaps between chunks that the expected gap is the longest of
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
        """(reference, reference it crosses from, share, the wanted shape) for ``shape`` drawn on avatar frame
        ``source``, with the shapes ``ahead`` of it (their targets are taken to be posed as
        ``source``: the head moves little within the look-ahead)."""
        shapes = np.stack([shape, *ahead[:PICK_LOOKAHEAD_FRAMES]])
        row = np.array(self.crossings(*self.pick(shapes, np.repeat(self.poses[source][None], len(shapes), axis=0))), np.float64)
        return with_wanted(row, shape[None])[0]


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


class ArrivalPattern:
    """How audio arrives: the longest of the recent gaps between chunks of an utterance
    (the wait the buffer must bridge), or, before any gap was seen, the first chunk's own
    duration (chunks sent at real-time pace arrive that far apart)."""

    def __init__(self):
        self.gaps: deque[float] = deque(maxlen=GAPS_REMEMBERED)
        self.first_duration = 0.0
        self.last_arrival: float | None = None

    def chunk(self, seconds: float, now: float, opens_utterance: bool) -> None:
        if not opens_utterance and self.last_arrival is not None:
            self.gaps.append(now - self.last_arrival)
        elif not self.first_duration:
            self.first_duration = seconds
        self.last_arrival = now

    @property
    def expected_gap(self) -> float:
        return min(MAX_GAP_SECONDS, max(self.gaps) if self.gaps else self.first_duration)


@dataclass
class Utterance:
    number: int
    conditioning: MouthReferences | AudioWindows
    received_after: list[int] = field(default_factory=list)  # samples received once each chunk had arrived
    arrival_times: list[float] = field(default_factory=list)  # ... and when it arrived
    audio: GrowingArray = field(default_factory=GrowingArray)  # its samples, forgotten once spoken
    unfed: list = field(default_factory=list)  # samples pushed but not yet given to the conditioning
    complete: bool = False  # `end` was called: no more audio will come
    ready: deque = field(default_factory=deque)  # conditioning of frames made ready but not shown yet (see `for_frame`)
    next_ready: int = 0  # index of the frame ready[0] belongs to
    started: bool = False  # its first frame was shown
    last: object = None  # the conditioning shown last, held if audio runs late

    def frame_audio(self, index: int) -> np.ndarray:
        """The 40 ms of audio frame ``index`` speaks (zero-padded past the end)."""
        start = index * SAMPLES_PER_FRAME
        samples = self.audio.since(start)[:SAMPLES_PER_FRAME]
        self.audio.forget_before(start)
        return samples.copy() if len(samples) == SAMPLES_PER_FRAME else np.pad(samples, (0, SAMPLES_PER_FRAME - len(samples)))

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


SILENCE = np.zeros(SAMPLES_PER_FRAME, np.float32)
SILENCE.setflags(write=False)


@dataclass
class LiveFrame:
    """One tick of a live stream: the picture and the audio that go out together."""

    image: np.ndarray | None  # (H, W, 3) uint8 RGB (None: not drawn, its tick was skipped)
    source: int  # the avatar frame it is drawn on
    audio: np.ndarray = field(default_factory=lambda: SILENCE)  # (640,) float32 16 kHz: the 40 ms it speaks
    utterance: int | None = None  # the utterance it speaks (None: idle)
    index: int | None = None  # its frame number within the utterance
    arrival: float | None = None  # when the audio it speaks arrived (for latency)
    held: bool = False  # its own audio came too late: the previous mouth is shown again, silent
    reference: int | None = None  # mouth conditioning: the avatar frame whose mouth it shows
    events: list[dict] = field(default_factory=list)


class LiveSession:
    """One live stream of one avatar (see the module docstring). Thread-safe: audio is
    pushed from one thread while frames are drawn in another."""

    def __init__(self, lipsync: LipSync, width: int | None = None, start_frame: int = 0):
        self.lipsync = lipsync
        self.generator = lipsync.generator_at(width)
        self.walk = PingPong(len(lipsync.avatar), start_frame)
        self.utterances: deque[Utterance] = deque()
        self.arrivals = ArrivalPattern()
        self.pending_events: list[dict] = []  # for the next frame (an interrupt's)
        self.lookahead = lookahead_seconds(lipsync)
        self.numbered = 0
        self.tick = -1
        self.lock = threading.Lock()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        return self.generator.frame(0).shape[1::-1]

    @property
    def busy(self) -> bool:
        """An utterance is being spoken or waits to be."""
        with self.lock:
            return bool(self.utterances)

    def _open(self) -> tuple[Utterance, bool]:
        if not self.utterances or self.utterances[-1].complete:
            self.utterances.append(Utterance(self.numbered, conditioning_stream(self.lipsync)))
            self.numbered += 1
            return self.utterances[-1], True
        return self.utterances[-1], False

    def push(self, samples: np.ndarray, now: float) -> None:
        """Add 16 kHz mono float audio of the utterance being spoken (opening one if
        needed), received at time ``now`` (seconds, `time.perf_counter`)."""
        if not len(samples):
            return
        with self.lock:
            pending = sum(u.received - u.next_ready * SAMPLES_PER_FRAME for u in self.utterances)
            if pending + len(samples) > MAX_BUFFERED_SECONDS * SAMPLE_RATE:
                raise UserError(f"more than {MAX_BUFFERED_SECONDS:.0f} s of audio is waiting to be spoken; send it no faster than it plays")
            samples = np.asarray(samples, np.float32)
            utterance, opened = self._open()
            self.arrivals.chunk(len(samples) / SAMPLE_RATE, now, opened)
            utterance.unfed.append(samples)  # the features are computed by the drawing thread, not the caller's
            utterance.audio.append(samples)
            utterance.received_after.append(utterance.received + len(samples))
            utterance.arrival_times.append(now)

    def end(self) -> None:
        """The utterance being received is complete: its last frames can be drawn."""
        with self.lock:
            if self.utterances:
                self.utterances[-1].complete = True

    def interrupt(self) -> list[dict]:
        """Stop speaking now: everything not yet shown is dropped. The ``utterance_ended``
        events are returned and also carried by the next frame decided, so a stream sends
        them after the last frame that spoke (one may be in the making as this is called)."""
        with self.lock:
            events = [{"type": "utterance_ended", "utterance": u.number, "interrupted": True} for u in self.utterances if u.started]
            self.utterances.clear()
            self.pending_events += events
            return events

    @staticmethod
    def _feed(utterance: Utterance, pieces: list[np.ndarray], complete: bool) -> list:
        for samples in pieces:
            utterance.conditioning.push(samples)
        if complete and utterance.conditioning.num_frames is None:
            utterance.conditioning.end()
        return utterance.conditioning.take()

    def _may_start(self, utterance: Utterance, now: float | None) -> bool:
        """Whether the first frame can be shown without a later one waiting for its audio:
        chunks arrive at least as fast as they play, up to `ArrivalPattern.expected_gap`
        apart, so the audio received beyond what frame 0 needs, plus the time already
        waited since the last chunk, must bridge that gap (or all of the utterance is in)."""
        if not utterance.ready:
            return False
        if now is None or utterance.conditioning.num_frames is not None:
            return True
        beyond_first = utterance.received / SAMPLE_RATE - self.lookahead - LOOKAHEAD_ROUNDING_SECONDS
        return beyond_first + now - utterance.arrival_times[-1] >= self.arrivals.expected_gap + START_MARGIN_SECONDS

    def next_frame(self, tick: int, now: float | None = None, draw: bool = True) -> LiveFrame:
        """The frame for clock tick ``tick`` at time ``now`` (None: start speech as soon as
        a frame is ready). Ticks count 25 fps frames; skipped ticks advance the walk so the
        recording keeps its pace. ``draw=False`` decides the frame and its audio without
        drawing it (a transport that fell behind). Decisions are made under the lock, the
        drawing outside it, so a push never waits for the features, a decode or a paste."""
        with self.lock:
            steps = tick - self.tick if self.tick >= 0 else 1
            self.tick = tick
            source = int(self.walk.take(max(steps, 1))[-1])
            arrived = [(u, u.unfed, u.complete) for u in self.utterances]
            for utterance in self.utterances:
                utterance.unfed = []
        taken = [(u, self._feed(u, pieces, complete)) for u, pieces, complete in arrived]  # only this thread touches the conditioning
        with self.lock:
            for utterance, shapes in taken:
                utterance.ready.extend(shapes)
            while self.utterances and self.utterances[0].done and not self.utterances[0].started:
                self.utterances.popleft()  # an utterance with no frames at all
            carried, self.pending_events = self.pending_events, []
            utterance = self.utterances[0] if self.utterances else None
            speaking = utterance is not None and (utterance.started or self._may_start(utterance, now))
            if speaking:
                events = carried
                if not utterance.started:
                    utterance.started = True
                    events.append({"type": "utterance_started", "utterance": utterance.number})
                held = not utterance.ready
                if not held:
                    utterance.last = utterance.ready.popleft()
                    utterance.next_ready += 1
                index = utterance.next_ready - 1
                audio = SILENCE if held else utterance.frame_audio(index)
                conditioning = utterance.conditioning.for_frame(utterance.last, source, list(utterance.ready))
                arrival = utterance.arrival_of(index)
                if utterance.done:
                    self.utterances.popleft()
                    events.append({"type": "utterance_ended", "utterance": utterance.number, "frames": utterance.next_ready, "interrupted": False})
        if not speaking:
            return LiveFrame(self.generator.frame(source) if draw else None, source, events=carried)
        image = self.generator.composite(source, self.generator.draw(np.array([source]), _batch(conditioning))[0]) if draw else None
        reference = int(conditioning[0]) if self.lipsync.conditioning == "mouth" else None
        return LiveFrame(image, source, audio, utterance.number, index, arrival, held, reference, events)


def _batch(conditioning) -> np.ndarray:
    return np.asarray(conditioning)[None]


GATE_OPEN_RMS = 0.01  # 20 ms of audio this loud (-40 dBFS) opens an utterance
GATE_CLOSE_SECONDS = 1.0  # quieter than that for this long ends it
GATE_PREROLL_SECONDS = 0.3  # audio kept from before the opening, so a soft onset is not cut


class SpeechGate:
    """Utterances from a continuous track (a microphone, a TTS played into a call): the
    audio goes to ``session`` from just before it gets loud until it has been quiet for
    `GATE_CLOSE_SECONDS`, then the utterance ends and the avatar idles. What is quiet
    inside an utterance is spoken as silence (the mouth rests there by itself)."""

    def __init__(self, session: LiveSession):
        self.session = session
        self.open = False
        self.quiet = 0  # samples quiet since the last loud piece
        self.preroll = GrowingArray()
        self.pending = np.zeros(0, np.float32)

    def feed(self, samples: np.ndarray, now: float) -> None:
        self.pending = np.concatenate([self.pending, np.asarray(samples, np.float32)])
        piece = SAMPLE_RATE // 50
        while len(self.pending) >= piece:
            chunk, self.pending = self.pending[:piece], self.pending[piece:]
            loud = float(np.sqrt(np.mean(chunk**2))) >= GATE_OPEN_RMS
            if not self.open and loud:
                self.open, self.quiet = True, 0
                kept = int(GATE_PREROLL_SECONDS * SAMPLE_RATE)
                self.session.push(np.concatenate([self.preroll.since(max(self.preroll.start, self.preroll.total - kept)), chunk]), now)
            elif self.open:
                self.session.push(chunk, now)
                self.quiet = 0 if loud else self.quiet + piece
                if self.quiet >= GATE_CLOSE_SECONDS * SAMPLE_RATE:
                    self.open = False
                    self.session.end()
            if not self.open:
                self.preroll.append(chunk)
                self.preroll.forget_before(self.preroll.total - int(GATE_PREROLL_SECONDS * SAMPLE_RATE))  # lazily: `since` picks the last of it
