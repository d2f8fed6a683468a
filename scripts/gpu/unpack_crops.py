"""On the GPU machine: rebuild each packed avatar's crops.npy from the JPEG crops
`pack_crops.py` wrote (the held-out frames stay black: training never reads them).

    python3 scripts/gpu/unpack_crops.py PACKED_DIR
"""

import json
import sys
from pathlib import Path

import cv2
import numpy as np

for root in sorted(Path(sys.argv[1]).iterdir()):
    if not (root / "crops_jpg.npy").is_file():
        continue
    info = json.loads((root / "avatar.json").read_text())
    blob, offsets = np.load(root / "crops_jpg.npy"), np.load(root / "crops_offsets.npy")
    crops = np.lib.format.open_memmap(root / "crops.npy", "w+", np.uint8, (info["num_frames"], 328, 328, 3))
    for i in range(len(offsets) - 1):
        crops[i] = cv2.cvtColor(cv2.imdecode(blob[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    crops.flush()
    print(root.name, len(offsets) - 1, "crops", flush=True)
