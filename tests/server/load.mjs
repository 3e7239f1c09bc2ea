// A loopback load test of vlmamba serve: C concurrent clients x R requests each, a mix of new images and
// follow-up turns (each client resends its conversation, as OpenAI clients do), greedy.
//   node load.mjs BASE_URL SHAPES_DIR --clients C --requests R --record FILE   (serially: the expected answers)
//   node load.mjs BASE_URL SHAPES_DIR --clients C --requests R --check FILE    (concurrently: each answer must equal)
//   node load.mjs BASE_URL SHAPES_DIR --clients C --requests R [--offset K]    (concurrently, no check; K shifts the
//                                                                               questions drawn)
// Prints one JSON line: requests, errors, mismatches, wall seconds, p50/p99 latency (ms), completion tokens/s.
import fs from "node:fs";
import path from "node:path";

const [base, shapes, ...rest] = process.argv.slice(2);
const opt = (name, def) => { const i = rest.indexOf(name); return i >= 0 ? rest[i + 1] : def; };
const C = Number(opt("--clients", 32)), R = Number(opt("--requests", 10));
const record = opt("--record"), check = opt("--check"), offset = Number(opt("--offset", 0));
const questions = fs.readFileSync(path.join(shapes, "questions.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
const images = new Map();
const dataUrl = (f) => {
  if (!images.has(f)) images.set(f, "data:image/png;base64," + fs.readFileSync(path.join(shapes, "images", f)).toString("base64"));
  return images.get(f);
};
const followUps = ["How many shapes are there?", "What color is the circle?", "Is there a star?",
                   "What shapes are there, from left to right?"];

// Client c's script: request r starts a new conversation about an image when r % 3 == 0, else follows up.
function question(c, r) { return questions[(c * 7 + r * 3 + offset) % questions.length]; }

async function ask(messages) {
  const t0 = performance.now();
  const res = await fetch(base + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, temperature: 0, max_tokens: 48 }),
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${res.status} ${JSON.stringify(body)}`);
  return { text: body.choices[0].message.content, tokens: body.usage.completion_tokens, ms: performance.now() - t0 };
}

async function client(c, expected, out) {
  let messages = [];
  for (let r = 0; r < R; ++r) {
    if (r % 3 === 0) {
      const q = question(c, r);
      messages = [{ role: "user", content: [{ type: "image_url", image_url: { url: dataUrl(q.image) } },
                                            { type: "text", text: q.text }] }];
    } else {
      messages.push({ role: "user", content: followUps[(c + r) % followUps.length] });
    }
    const key = `${c}/${r}`;
    try {
      const a = await ask(messages);
      out.latencies.push(a.ms);
      out.tokens += a.tokens;
      out.answers[key] = a.text;
      if (expected && expected[key] !== a.text) out.mismatches.push({ key, expected: expected[key], got: a.text });
      messages.push({ role: "assistant", content: a.text });
    } catch (e) {
      out.errors.push(`${key}: ${e.message}`);
      messages.pop();
    }
  }
}

const expected = check ? JSON.parse(fs.readFileSync(check, "utf8")) : null;
const out = { latencies: [], tokens: 0, answers: {}, mismatches: [], errors: [] };
const t0 = performance.now();
if (record) for (let c = 0; c < C; ++c) await client(c, null, out);
else await Promise.all([...Array(C).keys()].map((c) => client(c, expected, out)));
const wall = (performance.now() - t0) / 1e3;
if (record) fs.writeFileSync(record, JSON.stringify(out.answers));
const lat = out.latencies.sort((a, b) => a - b);
const pct = (p) => lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : 0;
console.log(JSON.stringify({ requests: C * R, errors: out.errors.length, mismatches: out.mismatches.length,
  wall_s: +wall.toFixed(2), p50_ms: +pct(0.5).toFixed(1), p99_ms: +pct(0.99).toFixed(1),
  tokens_per_s: +(out.tokens / wall).toFixed(1), first_errors: out.errors.slice(0, 3),
  first_mismatches: out.mismatches.slice(0, 3) }));
process.exit(out.errors.length || out.mismatches.length ? 1 : 0);
