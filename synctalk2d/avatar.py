"""The avatar directory: what preprocess writes and every later stage reads.

Layout (names are a contract between stages)::

    avatar.json       metadata; written last, so its presence means "complete"
    frames/           full frames, ``{index:06d}.jpg`` (random access by index)
    landmarks.npy     float32 (N, 68, 2), iBUG 68-point, full-frame pixel coordinates
    boxes.npy         int32 (N, 4), square crop boxes x1, y1, x2, y2 (full-frame pixels)
    crops.npy         uint8 (N, 328, 328, 3) RGB face crops, memory-mappable (training cache)
    audio.wav         16 kHz mono PCM, exactly N / 25 seconds long
    mel.npy           float32 (T, 80) log-mel frames at 80 per second (see audio.mel)

Later stages add their own sub-directories (``checkpoints/`` ...), each with its own
config saved next to what it produced.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from synctalk2d.atomic import write_json_atomic
from synctalk2d.errors import UserError
from synctalk2d.media.audio import SAMPLE_RATE

FORMAT_VERSION = 1
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # audio.wav samples per video frame (640)
CROP_SIZE = 328  # stored crop size; models see the centre 320x320


@dataclass
class AvatarInfo:
    """Contents of ``avatar.json``."""

    format_version: int
    fps: int
    num_frames: int
    width: int
    height: int
    source: str
    audio_source: str
    landmark_model: str
    created: str
    tool_version: str
    face_detected_share: float


def _entry(name: str) -> property:
    """A read-only ``Path`` property: ``name`` inside the avatar directory."""
    return property(lambda self: self.root / name, doc=f"``{name}`` in the avatar directory")


class Avatar:
    """A preprocessed person: frames, landmarks, crops and audio, by frame index."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    # -- paths (the layout in the module docstring) -------------------------------------
    info_path = _entry("avatar.json")
    frames_dir = _entry("frames")
    landmarks_path = _entry("landmarks.npy")
    boxes_path = _entry("boxes.npy")
    crops_path = _entry("crops.npy")
    audio_path = _entry("audio.wav")
    mel_path = _entry("mel.npy")

    def frame_path(self, index: int) -> Path:
        return self.frames_dir / f"{index:06d}.jpg"

    def features_path(self, feature_type: str) -> Path:
        """Per-frame audio features of one type, written by training (stage
        ``audio-encoder`` for ave, ``features`` for the pretrained ones)."""
        return self.root / "features" / f"{feature_type}.npy"

    # -- state -----------------------------------------------------------------------
    def is_complete(self) -> bool:
        return self.info_path.is_file()

    @classmethod
    def open(cls, root: str | Path) -> Avatar:
        """Open a complete avatar, or fail with a message that says what to run."""
        avatar = cls(root)
        if not avatar.is_complete():
            raise UserError(f"{avatar.root} is not a complete avatar (no avatar.json); run `synctalk2d preprocess VIDEO --avatar DIR` first")
        return avatar

    @property
    def info(self) -> AvatarInfo:
        data = json.loads(self.info_path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise UserError(
                f"{self.root} has avatar format {data.get('format_version')}, this synctalk2d reads format {FORMAT_VERSION}; preprocess the video again"
            )
        return AvatarInfo(**data)

    def write_info(self, info: AvatarInfo) -> None:
        write_json_atomic(self.info_path, asdict(info))

    def __len__(self) -> int:
        return self.info.num_frames

    # -- data ------------------------------------------------------------------------
    def landmarks(self) -> np.ndarray:
        return np.load(self.landmarks_path)

    def boxes(self) -> np.ndarray:
        return np.load(self.boxes_path)

    def crops(self) -> np.ndarray:
        """The (N, 328, 328, 3) uint8 RGB crop cache, memory-mapped (no copy)."""
        return np.load(self.crops_path, mmap_mode="r")

    def mel(self) -> np.ndarray:
        return np.load(self.mel_path)

    def features(self, feature_type: str) -> np.ndarray:
        """(N, ...) audio features of ``feature_type``, checked against the frame count."""
        path = self.features_path(feature_type)
        if not path.is_file():
            first = "audio-encoder" if feature_type == "ave" else "features"
            raise UserError(f"{path} does not exist; run `synctalk2d train --avatar {self.root} --stage {first}` first")
        features = np.load(path)
        if len(features) != self.info.num_frames:
            raise UserError(f"{path} has {len(features)} frames, the avatar {self.info.num_frames}; delete it and train again")
        return features

    def frame(self, index: int, width: int | None = None) -> np.ndarray:
        """Full frame ``index`` as an (H, W, 3) uint8 RGB array, or scaled to ``width``
        pixels wide (aspect kept). Scaling down decodes the JPEG at 1/2, 1/4 or 1/8 size
        first, which is several times faster than decoding it whole."""
        flags = cv2.IMREAD_COLOR
        if width is not None and width < self.info.width:
            factor = max((f for f in (1, 2, 4, 8) if self.info.width / f >= width), default=1)
            flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
        bgr = cv2.imread(str(self.frame_path(index)), flags)
        if bgr is None:
            raise UserError(f"frame {index} of {self.root} is missing or unreadable")
        if width is not None and bgr.shape[1] != width:
            height = round(self.info.height * width / self.info.width)
            bgr = cv2.resize(bgr, (width, height), interpolation=cv2.INTER_LINEAR)  # less than 2x left to shrink
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
