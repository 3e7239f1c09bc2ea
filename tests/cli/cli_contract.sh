#!/usr/bin/env bash
# CLI contract (SPEC §8.3): exit codes, one-line errors on stderr, --print-ids on stdout, greedy ids vs transformers.
# Usage: cli_contract.sh VLMAMBA_BINARY DATA_DIR
set -u
bin=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# inspect: every bad corpus file exits 1 with exactly one stderr line naming the file; good ones exit 0.
for f in "$data"/safetensors/bad_*; do
  name=$(basename "$f")
  "$bin" inspect "$f" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] || bad "inspect $name: exit $rc, expected 1"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || bad "inspect $name: stderr has $(wc -l <"$tmp/err") lines, expected 1"
  grep -q "$name" "$tmp/err" || bad "inspect $name: stderr does not name the file: $(cat "$tmp/err")"
done
for f in "$data"/safetensors/good_*; do
  "$bin" inspect "$f" >"$tmp/out" 2>"$tmp/err" || bad "inspect $(basename "$f"): exit $?, expected 0: $(cat "$tmp/err")"
done

# generate --print-ids: stdout carries only the JSON list; greedy ids equal transformers' (golden greedy_ids).
read_ids() {  # the I64 tensor $2 of safetensors file $1, as "a, b, c"
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n])[sys.argv[2]]
b, e = h['data_offsets']
vals = struct.unpack('<%dq' % ((e - b) // 8), raw[8 + n + b:8 + n + e])
print(', '.join(map(str, vals)))
PY
}
for cfg in tiny-tied tiny-untied; do
  golden="$data/mamba/$cfg/golden.safetensors"
  prompt=$(read_ids "$golden" input_ids | tr -d ' ')
  expect="[$(read_ids "$golden" greedy_ids)]"
  for v in hf-f32 ssm-f32; do
    got=$("$bin" generate -m "$data/mamba/$cfg/$v" --ids "$prompt" --temp 0 --print-ids --ignore-eos -n 24 2>"$tmp/err")
    [ "$got" = "$expect" ] || bad "generate $cfg/$v: got $got, expected $expect"
  done
done

# Bad input: an id past the embedding, an empty prompt, a missing model dir, an unknown subcommand option.
"$bin" generate -m "$data/mamba/tiny-tied/hf-f32" --ids 5,100000 -n 2 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "outside the embedding" "$tmp/err" || bad "out-of-range id: $(cat "$tmp/err")"
"$bin" generate -m "$data/mamba/tiny-tied/hf-f32" --ids "" -n 2 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "non-empty prompt" "$tmp/err" || bad "empty prompt: $(cat "$tmp/err")"
"$bin" generate -m "$data/mamba/tiny-tied/hf-f32" -p "hi" -n 2 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "tokenizer.json" "$tmp/err" || bad "-p without tokenizer: $(cat "$tmp/err")"

# logits: writes (L, V) float32.
"$bin" logits -m "$data/mamba/tiny-untied/hf-f32" --ids 3,4,5 -o "$tmp/l.safetensors" 2>/dev/null || bad "logits exit $?"
"$bin" inspect "$tmp/l.safetensors" | grep -q "logits.*F32.*(3, 128)" || bad "logits shape: $("$bin" inspect "$tmp/l.safetensors")"

# run: greedy ids after the image prefix equal the float64 reference; one directory == component directories.
for m in tiny-siglip-vssl2-bsm tiny-clip-mlp; do
  d="$data/vlmamba/$m"
  golden="$d/golden.safetensors"
  prompt=$(read_ids "$golden" input_ids | tr -d ' ')
  expect="[$(read_ids "$golden" greedy_ids)]"
  got=$("$bin" run -m "$d" --pixels "$golden" --ids "$prompt" --temp 0 --print-ids --ignore-eos -n 16 2>"$tmp/err")
  [ "$got" = "$expect" ] || bad "run $m: got $got, expected $expect ($(cat "$tmp/err"))"
done
d="$data/vlmamba/tiny-siglip-vssl2-bsm"
a=$("$bin" run -m "$d" --image "$data/images/wide.png" --ids 5,6,7 --temp 0 --print-ids -n 8 2>/dev/null)
b=$("$bin" run -m "$d-components" --image "$data/images/wide.png" --ids 5,6,7 --temp 0 --print-ids -n 8 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] || bad "run: one directory gave $a, components gave $b"
"$bin" run -m "$d" --image "$data/images/wide.png" --ids 5,6,7 --temp 0 --json -n 4 2>/dev/null | grep -q '"timings_s"' \
  || bad "run --json has no timings"
"$bin" run -m "$d" --image "$data/images/fake.webp" --ids 5 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "unsupported image format: webp" "$tmp/err" || bad "run webp: $(cat "$tmp/err")"
"$bin" logits -m "$d" --pixels "$d/golden.safetensors" --ids 3,4,5 -o "$tmp/vl.safetensors" 2>/dev/null || bad "vl logits"
"$bin" inspect "$tmp/vl.safetensors" | grep -q "logits.*F32.*(3, 128)" || bad "vl logits shape"

for sub in run chat inspect generate logits tokenize detokenize preprocess vision convert eval score; do
  "$bin" "$sub" --help >/dev/null || bad "$sub --help"
done

# --device cuda where there is no GPU (or no CUDA in the build): exit 1 with one error line that names CUDA (after
# the load progress line).
"$bin" generate -m "$data/mamba/tiny-untied/hf-f32" --ids 5,6,7 -n 2 --device cuda >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ $rc -ne 0 ]; then
  { [ $rc -eq 1 ] && [ "$(grep -c "error" "$tmp/err")" -eq 1 ] && tail -1 "$tmp/err" | grep -q "error.*CUDA"; } ||
    bad "generate --device cuda without a GPU: exit $rc, stderr: $(cat "$tmp/err")"
fi

# PyTorch checkpoints: every bad file exits 1 with one stderr line naming it; a directory with pytorch_model.bin
# works with -m; convert writes the same tensors as safetensors.
for f in "$data"/pytorch/bad/*.pt "$data"/pytorch/bad/*.bin; do
  [ -f "$f" ] || continue
  name=$(basename "$f")
  "$bin" inspect "$f" >/dev/null 2>"$tmp/err"
  rc=$?
  { [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "$name" "$tmp/err"; } ||
    bad "inspect pytorch/bad/$name: exit $rc, stderr: $(cat "$tmp/err")"
done
"$bin" logits -m "$data/pytorch/mamba-f32" --ids 3,4,5 -o "$tmp/pt.safetensors" 2>/dev/null || bad "logits on a .bin dir"
"$bin" convert "$data/pytorch/mamba-f32" "$tmp/conv.safetensors" 2>/dev/null || bad "convert exit $?"
"$bin" inspect "$tmp/conv.safetensors" | grep -q "backbone.embedding.weight" || bad "convert: tensor names"

# Papercuts: argument errors exit 1; an unknown subcommand lists the known ones; generate on a VL-Mamba says run;
# --version names the build; inspect names the model family and variant.
"$bin" generate --no-such-flag >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] || bad "argument error: exit code is not 1"
"$bin" frobnicate >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "commands: .*run" "$tmp/err" || bad "unknown subcommand: $(cat "$tmp/err")"
"$bin" generate -m "$d" -p hi -n 2 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "use \`vlmamba run" "$tmp/err" || bad "generate on a VL-Mamba: $(cat "$tmp/err")"
"$bin" --version | grep -q "CUDA .*SIMD" || bad "--version: $("$bin" --version)"
"$bin" inspect "$d" | grep -q "^model: VL-Mamba, variant siglip/vss_l2/bsm" || bad "inspect DIR: no model line"
"$bin" run -m "$d" --image "$tmp/missing.png" --ids 5 >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && ! grep -q "^loaded" "$tmp/err" || bad "a missing image is reported before the model loads"
"$bin" run -m "$d" --ids 5,6,7 --temp 0 -n 3 --print-ids >/dev/null 2>"$tmp/err" || bad "run without an image"

[ $fails -eq 0 ] && echo "cli contract: all checks passed"
exit $((fails > 0))
