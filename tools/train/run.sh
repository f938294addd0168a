#!/usr/bin/env bash
# Re-runs the whole recipe from scratch: tokenizer, cross-fitted examples, training,
# held-out evaluation, conversion, catalog pack and demo profiles (tools/train/README.md).
# Run from the repository root. PALR_WORK (default /tmp/palr-train) holds everything
# intermediate; only models/ is written in the repository.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
WORK=${PALR_WORK:-/tmp/palr-train}
DATA=${PALR_DATA:-$ROOT/../shared/data/ml-latest-small}
export PALR_WORK=$WORK PALR_DATA=$DATA
CKPT=${CKPT:-$WORK/ckpt}
T=tools/train

swift build -c release --product palr-convert
swift build -c release --product palr
BIN=$ROOT/.build/release

python3 $T/make_tokenizer.py --out "$WORK/tokenizer.model"
python3 $T/build_examples.py --convert "$BIN/palr-convert"
python3 $T/check_retrieval.py --palr "$BIN/palr" --pack "$WORK/packs/fold0.gguf" --n 300
python3 $T/train.py --out "$CKPT" "$@"
python3 $T/evaluate.py --convert "$BIN/palr-convert" --ckpt "$CKPT" --q4

mkdir -p models
"$BIN/palr-convert" hf "$CKPT" -o models/palr-ml-small-q4_0.gguf --type q4_0 --scoring-mode letters \
    --history-step "${PALR_HISTORY_STEP:-1}" --name palr-ml-small
"$BIN/palr-convert" catalog --items "$DATA/movies.csv" --interactions "$DATA/ratings.csv" \
    -o models/ml-small-catalog.gguf --id ml-small-catalog --name "MovieLens latest-small"
python3 $T/make_demo_history.py --out models/demo-history.csv
python3 $T/check_swift_parity.py --palr "$BIN/palr" --model models/palr-ml-small-q4_0.gguf \
    --catalog models/ml-small-catalog.gguf --ckpt "$CKPT" --history models/demo-history.csv
