#!/usr/bin/env bash
# `vlmamba run` and `vlmamba logits` on the tiny Cobra fixture (tests/data/cobra, made by zoo/fixtures/make_cobra.py
# with timm): the greedy reply equals timm + the reference LM's, from the files as shipped, with the towers named by
# vlmamba.json or by --tower flags; a missing tower is one error line and exit code 1.
# Usage: cobra.sh VLMAMBA_BINARY TEST_DATA_DIR
set -eu
bin=$1
data=$2/cobra
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ids=$("$bin" run -m "$data/cobra+tiny" --image "$data/image.png" -p "What is in the picture?" --temp 0 -n 16 \
      --print-ids -t 2 2>"$tmp/err")
[ "$ids" = "[314, 314, 590, 590, 281, 285, 550, 66, 392, 492, 492, 492, 492, 492, 492, 492]" ] ||
  { echo "FAIL: cobra+tiny replied $ids"; cat "$tmp/err"; exit 1; }
grep -q "cobra dino+siglip/fused_mlp" "$tmp/err" || { echo "FAIL: variant not reported"; cat "$tmp/err"; exit 1; }
ids=$("$bin" run -m "$data/cobra-siglip+tiny" --image "$data/image.png" -p "How many shapes are there?" --temp 0 \
      -n 16 --print-ids -t 2 2>/dev/null)
[ "$ids" = "[314, 314, 104, 294, 294, 294, 112, 112, 397, 397, 397, 301, 301, 160, 730, 730]" ] ||
  { echo "FAIL: cobra-siglip+tiny replied $ids"; exit 1; }
# The same directory without vlmamba.json: the towers and the tokenizer come from the flags.
mkdir -p "$tmp/cobra/checkpoints"
cp "$data/cobra+tiny/config.json" "$tmp/cobra/"
cp "$data/cobra+tiny/checkpoints/latest-checkpoint.pt" "$tmp/cobra/checkpoints/"
"$bin" logits -m "$tmp/cobra" --tower dino="$data/dino" --tower siglip="$data/siglip" \
  --tokenizer "$2/tokenizer/tokenizer.json" --image "$data/image.png" --ids 29,93,405 -o "$tmp/logits.safetensors" \
  2>"$tmp/err" || { echo "FAIL: logits"; cat "$tmp/err"; exit 1; }
grep -q "wrote logits (3, 824)" "$tmp/err" || { echo "FAIL: $(cat "$tmp/err")"; exit 1; }
# A missing tower: exit 1 and one line naming the flag to pass.
"$bin" run -m "$tmp/cobra" --tower siglip="$data/siglip" --image "$data/image.png" --ids 5 -n 1 >/dev/null \
  2>"$tmp/err" && { echo "FAIL: ran without the dino tower"; exit 1; }
[ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "pass --tower dino=DIR" "$tmp/err" ||
  { echo "FAIL: $(cat "$tmp/err")"; exit 1; }
echo "cobra: run and logits on the fixture; towers from vlmamba.json and from --tower"
