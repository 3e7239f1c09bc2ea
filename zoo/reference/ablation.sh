#!/usr/bin/env bash
# Mini-ablation of the paper's connector and scan choices (issue 6, SPEC §3.2 Tables 4-5) at small scale.
#
# Trains the same small VL-Mamba (zoo/reference/train.py defaults) five times, with the same seed, data and
# wall-clock training budget each: mlp, vss_mlp/bsm, vss_mlp/csm, vss_l2/bsm, vss_l2/csm. Each run builds its
# own data (deterministic from the seed, so the data are identical), trains for --minutes, exports to
# $WORK/<variant>, and evaluates 1,000 held-out questions with the reference (float32, greedy).
#
#   zoo/reference/ablation.sh REPORT_DIR [MINUTES] [extra train.py arguments...]
#
# REPORT_DIR receives <variant>.json (train.py's train_report.json), <variant>.log and summary.md.
# Environment: PYTHON (default python3), WORK (model directories; default /tmp/vlmamba-ablation),
# SCENES (training scenes; default 100000: a short budget sees fewer samples than that),
# DEADLINE_S (hard wall limit for the whole script, default 555): a variant that would run past it is
# stopped, and variants that cannot start with enough time left are skipped (noted in summary.md).
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: ablation.sh REPORT_DIR [MINUTES] [train.py args...]}"
minutes="${2:-1.1}"
shift $(( $# >= 2 ? 2 : 1 ))
py="${PYTHON:-python3}"
work="${WORK:-/tmp/vlmamba-ablation}"
scenes="${SCENES:-100000}"
deadline=$(( $(date +%s) + ${DEADLINE_S:-555} ))
mkdir -p "$out" "$work"
export PYTHONUNBUFFERED=1

variants="mlp vss_mlp/bsm vss_mlp/csm vss_l2/bsm vss_l2/csm"
for v in $variants; do
    conn="${v%/*}"
    scan="bsm"
    [[ "$v" == */* ]] && scan="${v#*/}"
    name="${v//\//_}"
    left=$(( deadline - $(date +%s) ))
    need=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 20 }')
    if (( left < need )); then
        echo "== $v: skipped, ${left}s left (needs at least ${need}s)" | tee -a "$out/skipped.txt"
        continue
    fi
    echo "== $v (connector $conn, scan $scan, $minutes min, seed 0, $scenes scenes; ${left}s left)"
    t0=$(date +%s)
    timeout --signal=TERM --kill-after=5 "$(( left - 3 ))" \
        "$py" "$here/train.py" --out "$work/$name" --report "$out/$name.json" --connector "$conn" --scan "$scan" \
        --minutes "$minutes" --scenes "$scenes" --seed 0 "$@" 2>&1 | tee "$out/$name.log"
    echo "== $v: exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 ))s"
done

"$py" - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
types = ["color", "shape", "count", "relation", "describe", "overall"]
rows = ["| variant | steps | train s | ms/step | connector params | " + " | ".join(types) + " |",
        "|---" * (5 + len(types)) + "|"]
for name in ["mlp", "vss_mlp_bsm", "vss_mlp_csm", "vss_l2_bsm", "vss_l2_csm"]:
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        rows.append("| %s | (no report) |" % name)
        continue
    r = json.load(open(p))
    acc = r["accuracy"]
    rows.append("| %s | %d | %.0f | %.0f | %d | %s |" % (
        name, r["steps"], r["train_seconds"], 1e3 * r["train_seconds"] / max(1, r["steps"]), r["connector_params"],
        " | ".join("%.1f" % acc[t]["accuracy"] if t in acc else "-" for t in types)))
text = "\n".join(rows) + "\n"
open(os.path.join(out, "summary.md"), "w").write(text)
print(text)
EOF
