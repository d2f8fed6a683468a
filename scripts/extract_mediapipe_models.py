"""Reproduce synctalk2d/face/models/ from MediaPipe's own wheel (Apache-2.0).

    python scripts/extract_mediapipe_models.py [--wheel FILE]

Without ``--wheel`` it downloads mediapipe 0.10.21 for CPython 3.11 / Linux x86-64 with pip
(the last releases that carry the .tflite files in the wheel; the model files are the same
in every platform's wheel). Then it copies the two models and MediaPipe's licence into the
package and checks their SHA-256 against the ones the package ships, so a change of the
files cannot pass unnoticed.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "0.10.21"
MEMBERS = {
    "mediapipe/modules/face_detection/face_detection_short_range.tflite": "face_detection_short_range.tflite",
    "mediapipe/modules/face_landmark/face_landmark.tflite": "face_landmark.tflite",
    f"mediapipe-{VERSION}.dist-info/LICENSE": "LICENSE",
}
SHA256 = {
    "face_detection_short_range.tflite": "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    "face_landmark.tflite": "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
}
DESTINATION = Path(__file__).resolve().parents[1] / "synctalk2d" / "face" / "models"


def download(folder: Path) -> Path:
    platform = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--only-binary=:all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", *platform, "-d", str(folder), f"mediapipe=={VERSION}"], check=True)
    return next(folder.glob("mediapipe-*.whl"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="a mediapipe wheel already on disk")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download(Path(tmp))
        with zipfile.ZipFile(wheel) as archive:
            for member, name in MEMBERS.items():
                (DESTINATION / name).write_bytes(archive.read(member))
    for name, expected in SHA256.items():
        digest = hashlib.sha256((DESTINATION / name).read_bytes()).hexdigest()
        print(f"{name}: {digest} {'ok' if digest == expected else 'DIFFERS from the shipped file'}")
        if digest != expected:
            sys.exit(1)


if __name__ == "__main__":
    main()
