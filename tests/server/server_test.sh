#!/usr/bin/env bash
# ctest `server`: vlmamba serve on loopback ports, driven by real clients (the official `openai` npm package,
# playwright-core with Debian's chromium, curl):
#   1. two example questions through the openai client, streamed and not; a follow-up turn from the prefix cache;
#   2. every bad request of the API (status, OpenAI error type), the server answering /health after each;
#   3. the chat page in a headless browser;
#   4. a load test: 32 clients x 10 requests (new images and follow-ups) at --parallel 8 with the prefix cache,
#      each answer equal to the serial greedy answer (--parallel 1, no cache);
#   5. a full queue answers 503.
# Usage: tests/server/server_test.sh VLMAMBA_BIN   (node_modules: `npm ci` in tests/server; scripts/test does it)
set -euo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
model=$root/zoo/shapes-vlmamba
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
[ -d "$here/node_modules/openai" ] || { echo "server_test: run 'npm ci' in tests/server first" >&2; exit 1; }

# start NAME ARGS...: starts a server on a free port; sets $port.
start() {
  local name=$1; shift
  "$bin" serve -m "$model" --port 0 "$@" 2> "$work/$name.log" &
  pids+=($!)
  for _ in $(seq 300); do
    port=$(sed -n 's|.* on http://127.0.0.1:\([0-9]*\),.*|\1|p' "$work/$name.log")
    [ -n "$port" ] && return 0
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/$name.log" >&2; echo "server_test: $name died" >&2; exit 1; }
    sleep 0.1
  done
  echo "server_test: $name did not start" >&2; exit 1
}

start main --parallel 8 --cache-mb 64 --max-prompt-tokens 2000 --max-body 2M --allow-image-dir "$model/examples"
base=http://127.0.0.1:$port
echo "== 1. openai client ($base)"
node "$here/openai_client.mjs" "$base" "$model/examples" "$root/tests/data/shapes/images/test_00049.png"

echo "== 2. bad requests"
b64() { base64 -w0 "$1"; }
png=$(b64 "$model/examples/count.png")
img() { printf '{"type":"image_url","image_url":{"url":"%s"}}' "$1"; }
user() { printf '{"messages":[{"role":"user","content":[%s{"type":"text","text":"What color is it?"}]}]}' "$1"; }
# expect STATUS TYPE NAME BODY_FILE: posts the body, checks the status and error.type, then that /health answers.
expect() {
  local status=$1 type=$2 name=$3 file=$4 got
  got=$(curl -s -o "$work/reply.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$file" "$base/v1/chat/completions" || true)
  local t
  t=$(node -e 'try{console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).error.type)}catch{console.log("-")}' "$work/reply.json")
  if [ "$got" != "$status" ] || [ "$t" != "$type" ]; then
    echo "FAIL $name: expected $status $type, got $got $t: $(head -c 300 "$work/reply.json")" >&2; exit 1
  fi
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/health")" = 200 ] || { echo "FAIL: no /health after $name" >&2; exit 1; }
  echo "ok: $name -> $got $t: $(node -e 'console.log(JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")).error.message.slice(0,110))' "$work/reply.json")"
}
body() { printf '%s' "$1" > "$work/body.json"; echo "$work/body.json"; }
expect 400 invalid_request_error "invalid JSON" "$(body '{"messages": [')"
expect 400 invalid_request_error "no messages" "$(body '{"model":"x"}')"
expect 400 invalid_request_error "empty messages" "$(body '{"messages":[]}')"
expect 400 invalid_request_error "unknown role" "$(body '{"messages":[{"role":"robot","content":"hi"}]}')"
expect 400 invalid_request_error "unknown content part" \
  "$(body '{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}')"
expect 400 invalid_request_error "bad base64" "$(body "$(user "$(img 'data:image/png;base64,@@@@'),")")"
expect 400 invalid_request_error "undecodable image" \
  "$(body "$(user "$(img "data:image/png;base64,$(printf 'not an image at all' | base64 -w0)"),")")"
expect 400 invalid_request_error "oversized image" \
  "$(body "$(user "$(img "data:image/png;base64,$(b64 "$root/tests/data/images/huge.png")"),")")"
nine=""; for _ in $(seq 9); do nine+="$(img "data:image/png;base64,$png"),"; done
expect 400 invalid_request_error "too many images" "$(body "$(user "$nine")")"
long=$(printf 'what color is the square %.0s' $(seq 800))
expect 400 invalid_request_error "prompt over the limit" "$(body "{\"messages\":[{\"role\":\"user\",\"content\":\"$long\"}]}")"
expect 400 invalid_request_error "unknown model" "$(body '{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}')"
expect 400 invalid_request_error "http image URL" "$(body "$(user "$(img 'http://169.254.169.254/latest/meta-data'),")")"
expect 400 invalid_request_error "file URL outside --allow-image-dir" "$(body "$(user "$(img "file://$model/config.json"),")")"
expect 400 invalid_request_error "bad max_tokens" "$(body '{"messages":[{"role":"user","content":"hi"}],"max_tokens":-3}')"
head -c 3000000 /dev/zero | tr '\0' 'a' > "$work/big.json"
expect 413 invalid_request_error "body over --max-body" "$work/big.json"
# A file:// URL under the allowed directory is read.
[ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' --data-binary \
  "$(user "$(img "file://$model/examples/count.png"),")" "$base/v1/chat/completions")" = 200 ]
echo "ok: a file:// URL under --allow-image-dir is read"

echo "== 3. chat page in chromium"
node "$here/browser.mjs" "$base" "$model/examples/count.png" "How many shapes are there?" 4 ${VLMAMBA_SCREENSHOT:+"$VLMAMBA_SCREENSHOT"}

echo "== 4. load: 32 clients x 10 requests at --parallel 8 against the serial greedy answers"
start serial --parallel 1 --cache-mb 0
node "$here/load.mjs" "http://127.0.0.1:$port" "$root/tests/data/shapes" --clients 32 --requests 10 --record "$work/expected.json"
node "$here/load.mjs" "$base" "$root/tests/data/shapes" --clients 32 --requests 10 --check "$work/expected.json"
curl -s "$base/metrics" | grep -E '^vlmamba_(prefix_cache_(hits|misses)_total|requests_total|request_errors_total) '

echo "== 5. a full queue answers 503"
start tight --parallel 1 --queue 0
q=$(body "$(user "$(img "data:image/png;base64,$png"),")")
cp=()
for i in $(seq 24); do
  curl -s -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' --data-binary "@$q" \
    "http://127.0.0.1:$port/v1/chat/completions" > "$work/q$i" &
  cp+=($!)
done
wait "${cp[@]}"
codes=$(cat "$work"/q* | sort | uniq -c | tr '\n' ' ')
echo "statuses: $codes"
grep -qx 503 "$work"/q* || { echo "FAIL: no 503 from a full queue" >&2; exit 1; }
grep -qx 200 "$work"/q* || { echo "FAIL: no request was answered" >&2; exit 1; }
[ "$(grep -vx -e 200 -e 503 "$work"/q* | wc -l)" = 0 ] || { echo "FAIL: statuses other than 200/503" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health")" = 200 ]
echo "server_test: all passed"
