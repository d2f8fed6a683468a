"""Pack trained avatars for a GPU machine that has PyTorch but not the media packages
(`train_compositors.sh`): each avatar's records and mouth model, and its training frames'
crops as JPEGs (the holdout is left behind), so a 60 s avatar travels in ~22 MB.

    python scripts/gpu/pack_crops.py OUT_DIR AVATAR [AVATAR ...]
"""

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

out = Path(sys.argv[1])
for src in map(Path, sys.argv[2:]):
    dst = out / src.name
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for f in ["avatar.json", "boxes.npy", "landmarks.npy", "train.json"]:
        shutil.copy(src / f, dst / f)
    shutil.copytree(src / "checkpoints" / "mouth", dst / "checkpoints" / "mouth")
    used = json.loads((src / "train.json").read_text())["holdout_frames"][0]
    crops = np.load(src / "crops.npy", mmap_mode="r")
    blobs = [cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(c), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 93])[1] for c in crops[:used]]
    np.save(dst / "crops_jpg.npy", np.concatenate(blobs))
    np.save(dst / "crops_offsets.npy", np.cumsum([0] + [len(b) for b in blobs]))
    print(src.name, used, "of", len(crops), "crops packed")
