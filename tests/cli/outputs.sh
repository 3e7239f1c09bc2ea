#!/usr/bin/env bash
# Outputs and files that go away (issue 18): a read-only output directory, a full disk (a file-size limit, ulimit -f),
# a model file truncated while in use (SIGBUS), and bad flag values. Each ends in exit 1 with one stderr line naming
# the file, and loses nothing: no partial output, an existing output left as it was.
# Usage: outputs.sh VLMAMBA_BINARY REPO_DIR
set -u
bin=$1
repo=$2
data=$repo/tests/data
tmp=$(mktemp -d)
chmod 755 "$tmp"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$tmp"' EXIT
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

# expect_error NAME PATTERN: the last command's exit code was 1 and $tmp/err is one line matching PATTERN.
expect_error() {
  [ "$rc" -eq 1 ] || bad "$1: exit $rc, expected 1"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || bad "$1: stderr has $(wc -l <"$tmp/err") lines, expected 1: $(cat "$tmp/err")"
  grep -q -- "$2" "$tmp/err" || bad "$1: stderr does not match '$2': $(cat "$tmp/err")"
}

cp -r "$data/pytorch/mamba-f32" "$tmp/in"
chmod -R a+rX "$tmp/in"

# 1. A full disk: the converted file is larger than the file-size limit. Write errors are reported (EFBIG), the
#    temporary file is removed and an existing output stays as it was.
echo "old contents" >"$tmp/out.safetensors"
(ulimit -f 16; "$bin" convert "$tmp/in" "$tmp/out.safetensors" >/dev/null 2>"$tmp/err")
rc=$?
expect_error "convert past ulimit -f" "out.safetensors.tmp: File too large"
[ "$(cat "$tmp/out.safetensors")" = "old contents" ] || bad "convert past ulimit -f: the existing output was changed"
[ ! -e "$tmp/out.safetensors.tmp" ] || bad "convert past ulimit -f: left out.safetensors.tmp behind"
(ulimit -f 1; "$bin" logits -m "$tmp/in" --ids 3,4,5 -o "$tmp/logits.safetensors" >/dev/null 2>"$tmp/err")
rc=$?
grep -v "^loaded" "$tmp/err" >"$tmp/err1" && mv "$tmp/err1" "$tmp/err"
expect_error "logits past ulimit -f" "logits.safetensors.tmp: File too large"
[ ! -e "$tmp/logits.safetensors" ] && [ ! -e "$tmp/logits.safetensors.tmp" ] || bad "logits past ulimit -f: left a file"
# Within the limit the same command works.
"$bin" convert "$tmp/in" "$tmp/out.safetensors" >/dev/null 2>"$tmp/err" || bad "convert: exit $?: $(cat "$tmp/err")"

# 2. A read-only output directory. Root writes anywhere, so as root the command runs as nobody (setpriv).
mkdir "$tmp/ro"
chmod 555 "$tmp/ro"
as_user=()
if [ "$(id -u)" -eq 0 ]; then
  if command -v setpriv >/dev/null; then
    as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  else
    echo "skipping the read-only test: running as root without setpriv" >&2
  fi
fi
if [ "$(id -u)" -ne 0 ] || [ ${#as_user[@]} -gt 0 ]; then
  cp "$bin" "$tmp/vlmamba" && chmod 755 "$tmp/vlmamba"  # the build tree may not be readable by nobody
  "${as_user[@]}" "$tmp/vlmamba" convert "$tmp/in" "$tmp/ro/out.safetensors" >/dev/null 2>"$tmp/err"
  rc=$?
  expect_error "convert into a read-only directory" "ro/out.safetensors.tmp for writing: Permission denied"
  [ -z "$(ls -A "$tmp/ro")" ] || bad "convert into a read-only directory: left $(ls -A "$tmp/ro")"
fi

# 3. A model file truncated while the model is in use: the next read of a lost page raises SIGBUS; the CLI prints
#    one line naming the file and exits 1. chat loads the model, then waits for its first line on stdin. The model
#    is the bundled one with its bf16 weights widened to f32, and --mmap keeps the loaded weights views of the mapped
#    file (by default they are copied into memory, and a truncated file no longer matters).
cp -r "$repo/zoo/shapes-vlmamba" "$tmp/model"
python3 - "$tmp/model/model.safetensors" <<'PY'
import json, struct, sys
path = sys.argv[1]
raw = open(path, 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
header, data = json.loads(raw[8:8 + n]), raw[8 + n:]
out, offset = bytearray(), 0
for name, e in sorted((k, v) for k, v in header.items() if k != '__metadata__'):
    b, end = e['data_offsets']
    chunk = data[b:end]
    if e['dtype'] == 'BF16':  # bf16 -> f32: the same bits in the high half
        wide = bytearray(2 * len(chunk))
        wide[2::4], wide[3::4] = chunk[0::2], chunk[1::2]
        chunk, e['dtype'] = bytes(wide), 'F32'
    e['data_offsets'] = [offset, offset + len(chunk)]
    out += chunk
    offset += len(chunk)
text = json.dumps(header).encode()
text += b' ' * (-len(text) % 8)
open(path, 'wb').write(struct.pack('<Q', len(text)) + text + out)
PY
mkfifo "$tmp/stdin"
"$bin" chat -m "$tmp/model" --mmap <"$tmp/stdin" >/dev/null 2>"$tmp/chat_err" &
chat=$!
pids+=("$chat")
exec 3>"$tmp/stdin"
for _ in $(seq 100); do grep -q "loaded" "$tmp/chat_err" && break; sleep 0.1; done
grep -q "loaded" "$tmp/chat_err" || bad "chat: no 'loaded' line: $(cat "$tmp/chat_err")"
truncate -s 4096 "$tmp/model/model.safetensors"
echo "How many shapes are there?" >&3
exec 3>&-
wait "$chat"
rc=$?
grep -v "loaded" "$tmp/chat_err" >"$tmp/err"
expect_error "a model file truncated while in use" "model.safetensors: the file shrank while it was in use"

# 4. Bad values: one line that says what was expected.
"$bin" generate -t abc -m "$tmp/in" -p hi >/dev/null 2>"$tmp/err"
rc=$?
[ "$rc" -eq 1 ] || bad "-t abc: exit $rc, expected 1"
grep -q "expected a whole number of threads from 1 to 4096, got 'abc'" "$tmp/err" || bad "-t abc: $(cat "$tmp/err")"

# 5. eval's questions file nested beyond the JSON depth limit: one line naming file and line, no recursion.
python3 -c "print('{\"question_id\": 1, \"text\": \"q\", \"x\": ' + '[' * 100000 + ']' * 100000 + '}')" >"$tmp/deep.jsonl"
"$bin" eval -m "$repo/zoo/shapes-vlmamba" --questions "$tmp/deep.jsonl" --image-folder "$tmp" \
  -o "$tmp/answers.jsonl" >/dev/null 2>"$tmp/err"
rc=$?
expect_error "eval with deeply nested questions" "deep.jsonl:1"

if [ "$fails" -ne 0 ]; then
  echo "$fails check(s) failed" >&2
  exit 1
fi
echo "outputs: all checks passed"
