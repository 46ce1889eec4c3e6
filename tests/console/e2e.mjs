// Drives the operator console in Debian's headless Chromium, as an operator would:
//   node e2e.mjs editor BASE_URL CAMERA TOKEN SHOT_DIR   draw a zone by clicking on the frame, save
//   node e2e.mjs events BASE_URL SHOT_DIR                open the newest event's evidence
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [mode, base, ...rest] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
page.on("pageerror", (e) => { console.error("page error:", e.message); process.exitCode = 3; });
try {
  if (mode === "editor") {
    const [camera, token, shots] = rest;
    await page.goto(base + "/zones");
    await page.waitForSelector(`#camera option[value="${camera}"]`, { state: "attached" });
    await page.selectOption("#camera", camera);
    await page.waitForSelector('#frame[data-loaded="1"]', { timeout: 30000 });
    await page.click("#new-zone");
    await page.fill("#zone-id", "painted-strip");
    await page.fill("#zone-name", "画出的禁停区");
    await page.selectOption("#zone-kind", "no_parking");
    await page.fill("#zone-dwell", "6");
    await page.fill("#zone-grid", "第八网格");
    // The lower paving of the street, corner by corner, then one corner dragged into place.
    const box = await page.locator("#canvas").boundingBox();
    const at = (x, y) => [box.x + x * box.width, box.y + y * box.height];
    for (const [x, y] of [[0.05, 0.62], [0.95, 0.62], [0.95, 0.99], [0.30, 0.90]]) {
      await page.mouse.click(...at(x, y));
    }
    await page.mouse.move(...at(0.30, 0.90));
    await page.mouse.down();
    await page.mouse.move(...at(0.18, 0.95), { steps: 5 });
    await page.mouse.move(...at(0.05, 0.99), { steps: 5 });
    await page.mouse.up();
    await page.fill("#token", token);
    await page.waitForTimeout(500);
    await page.screenshot({ path: shots + "/zone-editor-drawn.png" });
    await page.click("#save");
    await page.waitForSelector("#status.ok, #status.error", { timeout: 30000 });
    const status = await page.textContent("#status");
    const ok = await page.$("#status.ok");
    await page.waitForTimeout(3500); // a fresh frame with the saved zone
    await page.screenshot({ path: shots + "/zone-editor-saved.png" });
    console.log(JSON.stringify({ saved: !!ok, status, zones: await page.textContent("#zone-list") }));
    if (!ok) process.exitCode = 2;
  } else if (mode === "events") {
    const [shots] = rest;
    await page.goto(base + "/events");
    await page.waitForSelector("tr.event-row", { timeout: 30000 });
    const rows = await page.locator("tr.event-row").count();
    await page.waitForFunction(() => [...document.querySelectorAll("img.thumb")].some(i => i.complete && i.naturalWidth > 0));
    await page.click("tr.event-row");
    await page.waitForSelector("#evidence-full");
    await page.waitForFunction(() => { const i = document.getElementById("evidence-full"); return i.complete && i.naturalWidth > 0; });
    const width = await page.evaluate(() => document.getElementById("evidence-full").naturalWidth);
    await page.screenshot({ path: shots + "/event-browser.png", fullPage: true });
    console.log(JSON.stringify({ rows, evidence_width: width, detail: await page.textContent("#detail h3") }));
  } else {
    throw new Error("mode must be editor or events");
  }
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
