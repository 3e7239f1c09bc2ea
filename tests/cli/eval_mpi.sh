#!/usr/bin/env bash
# vlmamba eval / score (SPEC §8.3, docs/eval.md): one process vs `mpirun -np 2` gives the same merged answers;
# LLaVA's chunk boundaries; empty shards; resume; bad input names the file and line; score per type.
# Usage: eval_mpi.sh VLMAMBA_BINARY DATA_DIR [MPIRUN]
# The model is tests/data/vlmamba/tiny-siglip-vssl2-bsm (random weights, LM vocab 128) plus a hand-written
# byte-level BPE tokenizer.json of 46 tokens, so that every id fits the LM's embedding.
set -u
bin=$1
data=$2
mpirun=${3:-mpirun}
tmp=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"' EXIT
fails=0
bad() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }
export OMP_NUM_THREADS=1

# The model directory: the tiny VL-Mamba + a tokenizer over lowercase letters, digits, space and '?'.
model=$tmp/tiny-eval
mkdir -p "$model"
cp "$data/vlmamba/tiny-siglip-vssl2-bsm/config.json" "$data/vlmamba/tiny-siglip-vssl2-bsm/model.safetensors" "$model/"
python3 - "$model/tokenizer.json" <<'PY'
import json, sys
syms = ['<|endoftext|>', '<|padding|>'] + list('abcdefghijklmnopqrstuvwxyz0123456789?') + ['Ġ']
merges = [['Ġ', 'w'], ['Ġ', 'i'], ['Ġ', 's'], ['Ġ', 'c'], ['h', 'a'], ['Ġ', 't']]
for a, b in merges: syms.append(a + b)
assert len(syms) <= 128
bl = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
tok = {'version': '1.0', 'truncation': None, 'padding': None,
       'added_tokens': [{'id': i, 'content': s, 'single_word': False, 'lstrip': False, 'rstrip': False,
                         'normalized': False, 'special': True} for i, s in enumerate(syms[:2])],
       'normalizer': {'type': 'NFC'}, 'pre_tokenizer': bl, 'post_processor': bl, 'decoder': bl,
       'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                 'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                 'vocab': {s: i for i, s in enumerate(syms)}, 'merges': merges}}
json.dump(tok, open(sys.argv[1], 'w'))
PY

# 7 questions over 6 images (two share wide.png); ids mix strings and integers, as LLaVA's files do.
imgs=$tmp/images
mkdir -p "$imgs/sub"
cp "$data"/images/{wide.png,tall.jpg,small.png,gray.png,rgba.png} "$imgs/"
cp "$data/images/photo.jpg" "$imgs/sub/"
q=$tmp/questions.jsonl
cat >"$q" <<'EOF'
{"question_id": "q0", "image": "wide.png", "text": "what colour is the circle?"}
{"question_id": "q1", "image": "wide.png", "text": "how many shapes?"}
{"question_id": 2, "image": "tall.jpg", "text": "is the star left of the square?"}

{"question_id": "q3", "image": "small.png", "text": "what shape is red?"}
{"question_id": "q4", "image": "gray.png", "text": "which shape is above?"}
{"question_id": 5, "image": "rgba.png", "text": "describe the image"}
{"question_id": "q6", "image": "sub/photo.jpg", "text": "what is this?"}
EOF
ev() { "$bin" eval -m "$model" --questions "$q" --image-folder "$imgs" -n 6 -t 1 "$@"; }
nlines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo missing; fi; }

# One process: 7 answers in LLaVA's format, in question order, model_id = the directory's name.
mkdir -p "$tmp/one"
ev -o "$tmp/one/A.jsonl" 2>"$tmp/err" || bad "eval: exit $?: $(cat "$tmp/err")"
[ "$(nlines "$tmp/one/A.jsonl")" = 7 ] || bad "eval: $(nlines "$tmp/one/A.jsonl") answers, expected 7"
python3 - "$tmp/one/A.jsonl" <<'PY' || bad "eval: answers format"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r['question_id'] for r in rows] == ['q0', 'q1', 2, 'q3', 'q4', 5, 'q6'], rows
for r in rows:
    assert list(r) == ['question_id', 'prompt', 'text', 'answer_id', 'model_id', 'metadata'], r
    assert r['model_id'] == 'tiny-eval' and r['metadata'] == {} and len(r['answer_id']) == 22, r
    assert r['text'] == r['text'].strip(), r
assert rows[1]['prompt'] == 'how many shapes?'
PY
grep -q "7 to answer" "$tmp/err" || bad "eval: stderr lacks the plan: $(cat "$tmp/err")"
grep -q "images/s" "$tmp/err" || bad "eval: stderr lacks images/s: $(cat "$tmp/err")"

# The same run again answers nothing (everything is already there) and leaves the file as it was.
cp "$tmp/one/A.jsonl" "$tmp/one.bak"
ev -o "$tmp/one/A.jsonl" 2>"$tmp/err" || bad "eval rerun: exit $?"
grep -q "0 to answer, 7 already" "$tmp/err" || bad "eval rerun: $(cat "$tmp/err")"
cmp -s "$tmp/one/A.jsonl" "$tmp/one.bak" || bad "eval rerun changed the answers file"

# mpirun -np 2: each rank takes its chunk from OMPI_COMM_WORLD_RANK/SIZE and writes A.<i>_of_2.jsonl; merged ==
# one process.
mkdir -p "$tmp/mpi"
"$mpirun" -np 2 --allow-run-as-root --oversubscribe "$bin" eval -m "$model" --questions "$q" --image-folder "$imgs" \
  -n 6 -t 1 -o "$tmp/mpi/A.jsonl" >"$tmp/mpi.out" 2>&1 || bad "mpirun eval: exit $?: $(cat "$tmp/mpi.out")"
[ "$(nlines "$tmp/mpi/A.0_of_2.jsonl")" = 4 ] && [ "$(nlines "$tmp/mpi/A.1_of_2.jsonl")" = 3 ] \
  || bad "mpirun eval: shards have $(nlines "$tmp/mpi/A.0_of_2.jsonl") and $(nlines "$tmp/mpi/A.1_of_2.jsonl") lines, expected 4 and 3"
"$bin" eval --merge -o "$tmp/mpi/A.jsonl" --questions "$q" 2>"$tmp/err" || bad "eval --merge: $(cat "$tmp/err")"
cmp -s "$tmp/one/A.jsonl" "$tmp/mpi/A.jsonl" || bad "mpirun -np 2 merged answers differ from one process:
$(diff "$tmp/one/A.jsonl" "$tmp/mpi/A.jsonl")"

# mpirun -np 2 over one question: rank 1's shard is empty, and that is fine.
head -1 "$q" >"$tmp/q1.jsonl"
mkdir -p "$tmp/mpi1"
"$mpirun" -np 2 --allow-run-as-root --oversubscribe "$bin" eval -m "$model" --questions "$tmp/q1.jsonl" \
  --image-folder "$imgs" -n 6 -t 1 -o "$tmp/mpi1/A.jsonl" >"$tmp/mpi.out" 2>&1 || bad "mpirun empty shard: $(cat "$tmp/mpi.out")"
[ "$(nlines "$tmp/mpi1/A.1_of_2.jsonl")" = 0 ] || bad "mpirun empty shard: rank 1 wrote $(nlines "$tmp/mpi1/A.1_of_2.jsonl") lines"
"$bin" eval --merge -o "$tmp/mpi1/A.jsonl" 2>/dev/null || bad "eval --merge with an empty shard: exit $?"
[ "$(cat "$tmp/mpi1/A.jsonl")" = "$(head -1 "$tmp/one/A.jsonl")" ] || bad "empty shard merge: $(cat "$tmp/mpi1/A.jsonl")"

# --num-chunks 3: LLaVA's boundaries (chunks of ceil(7/3) = 3: [0,3) [3,6) [6,7)); the env rank is ignored.
for i in 0 1 2; do
  OMPI_COMM_WORLD_RANK=1 OMPI_COMM_WORLD_SIZE=2 ev --num-chunks 3 --chunk-idx $i -o "$tmp/c3/A.jsonl" 2>/dev/null \
    || bad "--num-chunks 3 --chunk-idx $i: exit $?"
done
got=$(for i in 0 1 2; do nlines "$tmp/c3/A.${i}_of_3.jsonl"; done | tr '\n' ' ')
[ "$got" = "3 3 1 " ] || bad "--num-chunks 3: shard sizes $got, expected 3 3 1"
[ ! -e "$tmp/c3/A.0_of_2.jsonl" ] || bad "--num-chunks did not override OMPI_COMM_WORLD_SIZE"
"$bin" eval --merge -o "$tmp/c3/A.jsonl" 2>/dev/null && cmp -s "$tmp/one/A.jsonl" "$tmp/c3/A.jsonl" \
  || bad "--num-chunks 3 merged answers differ from one process"
# More chunks than questions: an empty shard, exit 0, without loading the model.
"$bin" eval -m "$imgs" --questions "$q" --image-folder "$imgs" --num-chunks 10 --chunk-idx 9 -o "$tmp/c10/A.jsonl" \
  2>"$tmp/err" || bad "empty chunk: exit $?: $(cat "$tmp/err")"
[ "$(nlines "$tmp/c10/A.9_of_10.jsonl")" = 0 ] || bad "empty chunk: $(nlines "$tmp/c10/A.9_of_10.jsonl") lines"
ev --num-chunks 2 --chunk-idx 2 -o "$tmp/bad.jsonl" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "chunk-idx" "$tmp/err" || bad "--chunk-idx 2 of 2: $(cat "$tmp/err")"

# Resume: 3 answers and a line cut short by a killed run; the rest is appended, the result equals one process.
mkdir -p "$tmp/res"
head -3 "$tmp/one/A.jsonl" >"$tmp/res/A.jsonl"
printf '{"question_id": "q3", "prom' >>"$tmp/res/A.jsonl"
ev -o "$tmp/res/A.jsonl" 2>"$tmp/err" || bad "resume: exit $?: $(cat "$tmp/err")"
grep -q "4 to answer, 3 already" "$tmp/err" || bad "resume: $(cat "$tmp/err")"
cmp -s "$tmp/one/A.jsonl" "$tmp/res/A.jsonl" || bad "resume: answers differ from one process"

# Bad input: exit 1, one stderr line naming the file and line.
one_line_err() {  # $1: what; $2: expected text on stderr
  local rc=$?
  [ $rc -eq 1 ] || bad "$1: exit $rc, expected 1"
  [ "$(wc -l <"$tmp/err")" -eq 1 ] || bad "$1: stderr has $(wc -l <"$tmp/err") lines, expected 1: $(cat "$tmp/err")"
  grep -qF -- "$2" "$tmp/err" || bad "$1: stderr lacks '$2': $(cat "$tmp/err")"
}
sed 's/sub\/photo.jpg/nope.png/' "$q" >"$tmp/q_missing.jsonl"
"$bin" eval -m "$model" --questions "$tmp/q_missing.jsonl" --image-folder "$imgs" -o "$tmp/x.jsonl" >/dev/null 2>"$tmp/err"
one_line_err "missing image" "q_missing.jsonl:8: image"
{ head -2 "$q"; echo '{"question_id": "q9", "image": "wide.png", "text": '; } >"$tmp/q_badjson.jsonl"
"$bin" eval -m "$model" --questions "$tmp/q_badjson.jsonl" --image-folder "$imgs" -o "$tmp/x.jsonl" >/dev/null 2>"$tmp/err"
one_line_err "bad JSON" "q_badjson.jsonl:3: expected a JSON object"
{ head -2 "$q"; echo '{"question_id": "q9", "image": "wide.png"}'; } >"$tmp/q_notext.jsonl"
"$bin" eval -m "$model" --questions "$tmp/q_notext.jsonl" --image-folder "$imgs" -o "$tmp/x.jsonl" >/dev/null 2>"$tmp/err"
one_line_err "no text" "q_notext.jsonl:3: expected \"text\""
cp "$data/images/corrupt.jpg" "$imgs/"
{ head -1 "$q"; echo '{"question_id": "c", "image": "corrupt.jpg", "text": "hi"}'; } >"$tmp/q_corrupt.jsonl"
"$bin" eval -m "$model" --questions "$tmp/q_corrupt.jsonl" --image-folder "$imgs" -o "$tmp/y.jsonl" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && tail -1 "$tmp/err" | grep -q "q_corrupt.jsonl:2 (question_id \"c\"): .*corrupt.jpg" \
  || bad "corrupt image: $(cat "$tmp/err")"
[ "$(nlines "$tmp/y.jsonl")" = 1 ] || bad "corrupt image: the answer before it was not kept"

# score: GT with types; right answers written in upper case with spaces around, so normalisation is needed.
python3 - "$tmp/one/A.jsonl" "$tmp/gt.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
types = ['color', 'count', 'relation', 'color', 'relation', 'describe', 'count']
right = [True, False, True, True, True, False, False]  # color 2/2, count 0/2, relation 2/2, describe 0/1
with open(sys.argv[2], 'w') as f:
    for r, t, ok in zip(rows, types, right):
        ans = '  ' + r['text'].upper() + ' \t' if ok else r['text'] + ' wrong'
        f.write(json.dumps({'question_id': r['question_id'], 'answer': ans, 'type': t}) + '\n')
PY
"$bin" score --answers "$tmp/one/A.jsonl" --gt "$tmp/gt.jsonl" >"$tmp/table" 2>"$tmp/err" || bad "score: exit $?"
expect_row() { grep -qE "^$1 +$2 +$3 +$4%$" "$tmp/table" || bad "score: no row '$1 $2 $3 $4%' in: $(cat "$tmp/table")"; }
expect_row color 2 2 100.00
expect_row count 2 0 0.00
expect_row relation 2 2 100.00
expect_row describe 1 0 0.00
expect_row overall 7 4 57.14
# Shards (a missing file falls back to A.<i>_of_<N>.jsonl), listed files, duplicates: the same numbers.
rm "$tmp/mpi/A.jsonl"
a=$("$bin" score --answers "$tmp/mpi/A.jsonl" --gt "$tmp/gt.jsonl" --json 2>/dev/null)
b=$("$bin" score --answers "$tmp/c3/A.0_of_3.jsonl" "$tmp/c3/A.1_of_3.jsonl" "$tmp/c3/A.2_of_3.jsonl" \
    "$tmp/one/A.jsonl" --gt "$tmp/gt.jsonl" --json 2>/dev/null)
python3 - "$a" "$b" <<'PY' || bad "score --json: $a / $b"
import json, sys
for s in sys.argv[1:]:
    j = json.loads(s)
    assert j['overall'] == {'questions': 7, 'correct': 4, 'accuracy': 4 / 7}, j
    assert j['types']['relation']['correct'] == 2 and j['missing'] == 0 and j['extra'] == 0, j
PY
# An unanswered question counts as wrong.
head -5 "$tmp/one/A.jsonl" >"$tmp/part.jsonl"
"$bin" score --answers "$tmp/part.jsonl" --gt "$tmp/gt.jsonl" 2>"$tmp/err" | grep -qE "^overall +7 +4 " \
  && grep -q "2 questions unanswered" "$tmp/err" || bad "score with missing answers: $(cat "$tmp/err")"
"$bin" score --answers "$tmp/nothing.jsonl" --gt "$tmp/gt.jsonl" >/dev/null 2>"$tmp/err"
one_line_err "score without answers" "nothing.jsonl"

for sub in eval score; do "$bin" "$sub" --help >/dev/null || bad "$sub --help"; done

[ $fails -eq 0 ] && echo "eval/score: all checks passed"
exit $((fails > 0))
