// vlmamba serve through the official `openai` npm client: a non-streamed and a streamed request with a bundled
// example image (answers checked against questions.jsonl), then a follow-up turn that must resume from the prefix
// cache and prefill only its new tokens (checked in usage and in /metrics).
//   node openai_client.mjs BASE_URL EXAMPLES_DIR FRESH_IMAGE   (FRESH_IMAGE: one the server has not seen)
import OpenAI from "openai";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

const [base, examples, fresh] = process.argv.slice(2);
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "unused" });
const dataUrl = (f) => "data:image/png;base64," + fs.readFileSync(f).toString("base64");
const cases = fs.readFileSync(path.join(examples, "questions.jsonl"), "utf8").trim().split("\n").map(JSON.parse);
const metric = async (name) => {
  const text = await (await fetch(base + "/metrics")).text();
  return Number(text.match(new RegExp("^" + name + " (\\S+)$", "m"))[1]);
};

const models = await client.models.list();
assert.equal(models.data.length, 1);
const model = models.data[0].id;

for (const c of cases) {
  const messages = [{ role: "user", content: [
    { type: "image_url", image_url: { url: dataUrl(path.join(examples, c.image)) } },
    { type: "text", text: c.text }] }];
  const r = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 32 });
  assert.equal(r.choices[0].message.content, c.answer, `non-streamed answer to "${c.text}"`);
  assert.equal(r.choices[0].finish_reason, "stop");
  assert.ok(r.usage.prompt_tokens > 64 && r.usage.completion_tokens > 0, JSON.stringify(r.usage));

  const stream = await client.chat.completions.create({ model, messages, temperature: 0, max_tokens: 32, stream: true });
  let text = "", finish = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? "";
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(text, c.answer, `streamed answer to "${c.text}"`);
  assert.equal(finish, "stop");
  assert.ok(chunks >= 3, `expected several chunks, got ${chunks}`);
  console.log(`ok: ${c.image}: "${c.text}" -> "${text}" (streamed in ${chunks} chunks)`);
}

// A follow-up turn about a new image: the client resends the conversation; the server resumes from the state
// after the first reply and prefills only the new tokens (the closing EOS and the new question).
const first = [{ role: "user", content: [
  { type: "image_url", image_url: { url: dataUrl(fresh) } }, { type: "text", text: "How many shapes are there?" }] }];
const r1 = await client.chat.completions.create({ model, messages: first, temperature: 0, max_tokens: 32, seed: 7 });
assert.equal(r1.usage.prompt_tokens_details.cached_tokens, 0, "a new image starts from nothing");
const prefilled0 = await metric("vlmamba_prefill_tokens_total");
const hits0 = await metric("vlmamba_prefix_cache_hits_total");
const follow = [...first, { role: "assistant", content: r1.choices[0].message.content },
                { role: "user", content: "How many red shapes are there?" }];
const r2 = await client.chat.completions.create({ model, messages: follow, temperature: 0, max_tokens: 32 });
const prefilled = (await metric("vlmamba_prefill_tokens_total")) - prefilled0;
const cached = r2.usage.prompt_tokens_details.cached_tokens;
assert.equal((await metric("vlmamba_prefix_cache_hits_total")) - hits0, 1, "the follow-up hits the prefix cache");
assert.equal(prefilled, r2.usage.prompt_tokens - cached, "only the uncached positions are prefilled");
assert.ok(cached >= r1.usage.prompt_tokens + r1.usage.completion_tokens,
          `the cache covers the first turn and its reply (cached ${cached}, first turn ${r1.usage.prompt_tokens} + ` +
          `${r1.usage.completion_tokens})`);
assert.ok(prefilled <= 12, `the follow-up prefilled ${prefilled} positions, expected only its new tokens`);
console.log(`ok: follow-up "${follow[2].content}" -> "${r2.choices[0].message.content}": ${cached} of ` +
            `${r2.usage.prompt_tokens} positions from the prefix cache, ${prefilled} prefilled; ` +
            `time to first token ${r2.timings.time_to_first_token_ms.toFixed(1)} ms against ` +
            `${r1.timings.time_to_first_token_ms.toFixed(1)} ms for the first turn`);
