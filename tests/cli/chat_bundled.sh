#!/usr/bin/env bash
# `vlmamba chat` with a scripted two-turn conversation about a bundled image: one reply per turn on stdout, each
# the bundled model's answer. Usage: chat_bundled.sh VLMAMBA_BINARY REPO_DIR
set -eu
bin=$1
repo=$2
model=$repo/zoo/shapes-vlmamba
out=$(printf 'What shapes are there, from left to right?\nHow many shapes are there?\n' |
      "$bin" chat -m "$model" --image "$model/examples/describe.png" -n 24 --temperature 0 -t 2 2>/dev/null)
echo "$out"
[ "$(printf '%s\n' "$out" | wc -l)" -eq 2 ] || { echo "FAIL: expected 2 replies"; exit 1; }
printf '%s\n' "$out" | sed -n 1p | grep -q "green star, blue star, purple square, blue square" ||
  { echo "FAIL: turn 1 does not list the shapes"; exit 1; }
printf '%s\n' "$out" | sed -n 2p | grep -qw 4 || { echo "FAIL: turn 2 does not answer 4"; exit 1; }
# A saved conversation, loaded by a new process, continues as the uninterrupted one did.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'What shapes are there, from left to right?\n/save %s\n' "$tmp/state.safetensors" |
  "$bin" chat -m "$model" --image "$model/examples/describe.png" -n 24 --temperature 0 -t 2 >/dev/null 2>&1
resumed=$(printf '/load %s\nHow many shapes are there?\n' "$tmp/state.safetensors" |
          "$bin" chat -m "$model" -n 24 --temperature 0 -t 2 2>/dev/null)
[ "$resumed" = "$(printf '%s\n' "$out" | sed -n 2p)" ] ||
  { echo "FAIL: the resumed conversation answered '$resumed'"; exit 1; }
# Another model's state is refused with one error line and exit 1.
printf '/load %s\n' "$tmp/state.safetensors" |
  "$bin" chat -m "$repo/tests/data/mamba/tiny-tied/hf-f32" -n 2 >/dev/null 2>"$tmp/err" && { echo "FAIL: loaded"; exit 1; }
grep -q "saved by another model" "$tmp/err" || { echo "FAIL: $(cat "$tmp/err")"; exit 1; }
echo "chat: two turns answered; a saved state continues in a new process"
