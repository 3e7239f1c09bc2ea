#!/usr/bin/env bash
# Loopback load figures of vlmamba serve on the bundled model (docs/performance.md "Serving"): for --parallel 1 and
# --parallel 8, C clients x R requests (new images and follow-up turns, greedy; tests/server/load.mjs), p50/p99
# latency, aggregate completion tokens/s, the prefix-cache hit rate, and the server's RSS after every round of
# requests and the cache's bytes (growth beyond the cache's would show a leak); with the cache and without. Then a two-turn conversation: the follow-up's time to first token against the
# first turn's.
#   bench/serve_load.sh VLMAMBA_BIN [CLIENTS] [REQUESTS] [ROUNDS]     (defaults 32 10 4: 1,280 requests per setting)
# SETTINGS="PARALLEL:CACHE_MB ..." picks the settings (default "1:256 8:256 1:0 8:0").
set -euo pipefail
bin=$(realpath "$1"); C=${2:-32}; R=${3:-10}; rounds=${4:-4}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
metric() { curl -s "http://127.0.0.1:$port/metrics" | sed -n "s/^$1 //p"; }
for setting in ${SETTINGS:-1:256 8:256 1:0 8:0}; do
  np=${setting%:*} mb=${setting#*:}
  "$bin" serve -m "$root/zoo/shapes-vlmamba" --port 0 --parallel "$np" --cache-mb "$mb" 2> "$work/log" & pid=$!
  port=
  until [ -n "$port" ]; do sleep 0.1; port=$(sed -n 's|.* on http://127.0.0.1:\([0-9]*\),.*|\1|p' "$work/log"); done
  for r in $(seq "$rounds"); do
    out=$(node "$root/tests/server/load.mjs" "http://127.0.0.1:$port" "$root/tests/data/shapes" --clients "$C" --requests "$R" --offset $((r * 13)) 2>&1 || true)
    rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status); hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
    echo "parallel $np cache $mb MiB round $r: $(echo "$out" | node -e 'const j=JSON.parse(require("fs").readFileSync(0,"utf8"));console.log(`${j.requests} requests, ${j.errors} errors, p50 ${j.p50_ms} ms, p99 ${j.p99_ms} ms, ${j.tokens_per_s} tokens/s, ${j.wall_s} s`)'), RSS $((rss / 1024)) MiB (peak $((hwm / 1024)) MiB), cache $(( $(metric vlmamba_prefix_cache_bytes) / 1048576 )) MiB"
  done
  echo "parallel $np cache $mb MiB: prefix cache $(metric vlmamba_prefix_cache_hits_total) hits, $(metric vlmamba_prefix_cache_misses_total) misses; prefilled $(metric vlmamba_prefill_tokens_total) of $(metric vlmamba_prompt_tokens_total) prompt positions; $(metric vlmamba_requests_total) requests"
  kill $pid; wait $pid 2>/dev/null || true; pid=
done
