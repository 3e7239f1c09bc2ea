#!/usr/bin/env bash
# The bundled model on the bundled test split: C++ `vlmamba eval` must match the PyTorch reference's accuracy
# (zoo/reference/train.py --eval-only on the same split: 50/50) within 0.5 pp, i.e. exactly here.
# Usage: shapes_eval.sh VLMAMBA_BINARY REPO_DIR
set -eu
bin=$1
repo=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
split=$repo/tests/data/shapes
"$bin" eval -m "$repo/zoo/shapes-vlmamba" --questions "$split/questions.jsonl" --image-folder "$split/images" \
  -o "$tmp/answers.jsonl" -t 2 2>"$tmp/err" || { cat "$tmp/err"; exit 1; }
acc=$("$bin" score --answers "$tmp/answers.jsonl" --gt "$split/gt.jsonl" --json 2>/dev/null |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["overall"]["accuracy"])')
echo "bundled model on tests/data/shapes: accuracy $acc (PyTorch reference: 1.0)"
python3 -c "import sys; sys.exit(0 if abs($acc - 1.0) <= 0.005 else 1)"
