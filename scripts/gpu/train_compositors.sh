#!/bin/bash
# On a GPU machine (`device` tool): train the compositor (`train --renderer unet`) of the
# avatars packed into .devdata/ by scripts/gpu/pack_crops.py, and send back each best
# checkpoint in fp16 (its record kept), split to the tool's 16 MiB file limit:
#   cat NAME.part* > AVATAR/checkpoints/compositor/best.safetensors (and best.json beside it).
# Arguments: NAME:HOLDOUT_SECONDS:WIDTH:MINUTES ...
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 scripts/gpu/unpack_crops.py .devdata || exit 1
for spec in "$@"; do
  IFS=: read -r name holdout width minutes <<< "$spec"
  python3 scripts/gpu/launch.py train --avatar ".devdata/$name" --renderer unet --holdout-seconds "$holdout" \
    --width "$width" --minutes "$minutes" --batch-size 32 --device cuda 2>&1 | grep -v "━" | tee -a "$OUT/log.txt"
  python3 - "$name" <<'PY'
import os, sys
from safetensors import safe_open
from safetensors.torch import save_file
name, stem = sys.argv[1], f".devdata/{sys.argv[1]}/checkpoints/compositor/best"
with safe_open(f"{stem}.safetensors", framework="pt") as f:
    weights = {k: f.get_tensor(k) for k in f.keys()}
    metadata = f.metadata()
save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, f"/tmp/{name}.safetensors", metadata=metadata)
PY
  split -b 15m -d "/tmp/$name.safetensors" "$OUT/$name.part"
  cp ".devdata/$name/checkpoints/compositor/best.json" "$OUT/$name.best.json"
done
ls -la "$OUT"
