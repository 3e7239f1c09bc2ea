// The chat page in a real browser (playwright-core driving Debian's chromium, headless): load /, pick a bundled
// image, ask, read the streamed answer, ask a follow-up in the same conversation.
//   node browser.mjs BASE_URL IMAGE QUESTION EXPECTED [SCREENSHOT.png]
import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const [base, image, question, expected, screenshot] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, headless: true, args: ["--no-sandbox"] });
try {
  const page = await browser.newPage({ viewport: { width: 820, height: 640 } });
  page.on("pageerror", (e) => { throw e; });
  await page.goto(base + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent !== "");
  await page.setInputFiles("#image", image);
  await page.waitForSelector("#preview:not([hidden])");
  await page.fill("#question", question);
  await page.click("#send");
  const answer = page.locator(".msg.assistant[data-done='1']").first();
  await answer.waitFor({ timeout: 30000 });
  const text = await answer.evaluate((el) => el.firstChild.textContent);
  assert.equal(text, expected, "the streamed answer on the page");
  await page.fill("#question", "How many red shapes are there?");
  await page.click("#send");
  await page.locator(".msg.assistant[data-done='1']").nth(1).waitFor({ timeout: 30000 });
  const follow = await page.locator(".msg.assistant").nth(1).evaluate((el) => el.firstChild.textContent);
  assert.ok(/^\d+$/.test(follow), `a count as the follow-up answer, got "${follow}"`);
  if (screenshot) await page.screenshot({ path: screenshot });
  console.log(`ok: the chat page answered "${question}" with "${text}", then "${follow}"`);
} finally {
  await browser.close();
}
