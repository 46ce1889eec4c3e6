// Drives the operator console in Debian's headless Chromium, as its users would:
//   node e2e.mjs editor  BASE_URL CAMERA USER PASSWORD SHOT_DIR         an admin logs in, draws a zone on the frame, saves
//   node e2e.mjs events  BASE_URL USER PASSWORD SHOT_DIR                open the first event's evidence
//   node e2e.mjs review  BASE_URL USER PASSWORD EVENT_A EVENT_B SHOT_DIR an operator: a wrong password, then confirms
//                                                                        and dispatches A, marks B a false alarm
//   node e2e.mjs grid    BASE_URL USER PASSWORD EVENT_A PHOTO SHOT_DIR   a grid worker on a phone marks A cleared with a photo
//   node e2e.mjs history BASE_URL USER PASSWORD EVENT_A SHOT_DIR         login with a foreign `next`, then A's review history
//   node e2e.mjs cluster BASE_URL USER PASSWORD CAMERAS SHOT_DIR         the cluster page, once it lists CAMERAS cameras
//   node e2e.mjs away    BASE_URL CAMERA USER PASSWORD SHOT_DIR         the zone editor of a node that does not run CAMERA
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { chromium } from "playwright-core";

const [mode, base, ...rest] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const desktop = { viewport: { width: 1360, height: 900 }, timezoneId: "Asia/Shanghai", locale: "zh-CN" };
const phone = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
                timezoneId: "Asia/Shanghai", locale: "zh-CN" };
const context = await browser.newContext(mode === "grid" ? phone : desktop);
const page = await context.newPage();
page.on("pageerror", (e) => { console.error("page error:", e.message); process.exitCode = 3; });
const path = () => new URL(page.url()).pathname;

// Opens `start`; the console sends the browser to its login page, which sends it on once the
// name and password are right. Waits for the page's header to say who is logged in.
async function login(start, user, password, landing) {
  await page.goto(base + start);
  await page.waitForURL((u) => u.pathname === "/login");
  const next = new URL(page.url()).searchParams.get("next");
  await page.fill("#name", user);
  await page.fill("#password", password);
  await Promise.all([page.waitForURL((u) => u.pathname === landing, { timeout: 15000 }), page.click("#submit")]);
  await page.waitForSelector("#who b");
  return { next, who: await page.textContent("#who b") };
}

// "2026-12-02T20:15" in Shanghai, `hours` from now (what a datetime-local field takes).
const shanghai = (hours) => new Date(Date.now() + (hours + 8) * 3600e3).toISOString().slice(0, 16);

try {
  if (mode === "editor") {
    const [camera, user, password, shots] = rest;
    const { next, who } = await login("/zones", user, password, "/zones");
    await page.waitForSelector(`#camera option[value="${camera}"]`, { state: "attached" });
    await page.selectOption("#camera", camera);
    await page.waitForSelector('#frame[data-loaded="1"]', { timeout: 30000 });
    if (await page.$("#token")) throw new Error("the editor still has a token field");
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
    await page.waitForTimeout(500);
    await page.screenshot({ path: shots + "/zone-editor-drawn.png" });
    await page.click("#save");
    await page.waitForSelector("#status.ok, #status.error", { timeout: 30000 });
    const status = await page.textContent("#status");
    const ok = await page.$("#status.ok");
    await page.waitForTimeout(3500); // a fresh frame with the saved zone
    await page.screenshot({ path: shots + "/zone-editor-saved.png" });
    console.log(JSON.stringify({ saved: !!ok, status, next, who, zones: await page.textContent("#zone-list") }));
    if (!ok) process.exitCode = 2;
  } else if (mode === "events") {
    const [user, password, shots] = rest;
    const { who } = await login("/events", user, password, "/events");
    await page.waitForSelector("tr.event-row", { timeout: 30000 });
    const rows = await page.locator("tr.event-row").count();
    await page.waitForFunction(() => [...document.querySelectorAll("img.thumb")].some(i => i.complete && i.naturalWidth > 0));
    await page.click("tr.event-row");
    await page.waitForSelector("#evidence-full");
    await page.waitForFunction(() => { const i = document.getElementById("evidence-full"); return i.complete && i.naturalWidth > 0; });
    const width = await page.evaluate(() => document.getElementById("evidence-full").naturalWidth);
    await page.screenshot({ path: shots + "/event-browser.png", fullPage: true });
    console.log(JSON.stringify({ rows, who, evidence_width: width, detail: await page.textContent("#detail h3") }));
  } else if (mode === "review") {
    const [user, password, a, b, shots] = rest;
    // A wrong password first: the page says so and stays.
    await page.goto(base + "/events");
    await page.waitForURL((u) => u.pathname === "/login");
    await page.fill("#name", user);
    await page.fill("#password", password + "-wrong");
    await page.click("#submit");
    await page.waitForFunction(() => document.getElementById("error").textContent.trim().length > 0);
    const loginError = await page.textContent("#error");
    await page.screenshot({ path: shots + "/login-error.png" });
    await page.fill("#password", password);
    await Promise.all([page.waitForURL((u) => u.pathname === "/events"), page.click("#submit")]);
    await page.waitForSelector("#who b");
    const who = await page.textContent("#who b");
    // The worklist: waiting for review, longest waiting first.
    const stateFilter = await page.inputValue("#f-state");
    await page.waitForSelector(`tr.event-row[data-id="${a}"]`, { timeout: 30000 });
    await page.waitForSelector(`tr.event-row[data-id="${b}"]`, { timeout: 30000 });
    const listed = await page.$$eval("tr.event-row", (rs) => rs.map((r) => r.dataset.state));
    await page.waitForFunction(() => [...document.querySelectorAll("img.thumb")].every(i => i.complete));
    await page.screenshot({ path: shots + "/review-worklist.png" });
    const detailOf = (id) => page.waitForSelector(`#detail-id[data-id="${id}"]`);
    const stateIs = (s) => page.waitForSelector(`#detail-state .state.${s}`, { timeout: 15000 });

    // A: confirm, then dispatch to the zone's unit with a due time.
    await page.click(`tr.event-row[data-id="${a}"]`);
    await detailOf(a);
    await page.fill("#confirm-note", "车辆停在人行道上 parked on the pavement");
    await page.click("#act-confirmed");
    await stateIs("confirmed");
    const unit = await page.inputValue("#dispatch-unit");
    await page.fill("#dispatch-due", shanghai(2));
    await page.fill("#dispatch-note", "请尽快处理 please move it");
    await page.click("#act-dispatched");
    await stateIs("dispatched");
    const afterDispatch = await page.textContent("#review-status");
    const actionsAfterDispatch = await page.$$eval(".actions .action", (as) => as.map((x) => x.id));
    await page.waitForFunction(() => { const i = document.getElementById("evidence-full"); return i && i.complete; });
    await page.screenshot({ path: shots + "/review-dispatched.png", fullPage: true });

    // B: a false alarm; reason "other" without a note is refused by the page, then sent with one.
    await page.click(`tr.event-row[data-id="${b}"]`);
    await detailOf(b);
    await page.selectOption("#fa-reason", "other");
    await page.click("#act-false_alarm");
    await page.waitForSelector("#review-status.error");
    const refused = await page.textContent("#review-status");
    await page.fill("#fa-note", "对面路缘允许临时停车 the kerb opposite allows short stops");
    await page.click("#act-false_alarm");
    await stateIs("false_alarm");
    const backToPending = !!(await page.$("#act-pending"));
    const rowStates = await page.$$eval("tr.event-row", (rs) => Object.fromEntries(rs.map((r) => [r.dataset.id, r.dataset.state])));
    await page.waitForSelector("#suppressions", { state: "visible" });
    await page.screenshot({ path: shots + "/review-false-alarm.png", fullPage: true });
    console.log(JSON.stringify({
      login_error: loginError, who, state_filter: stateFilter, listed, unit, after_dispatch: afterDispatch,
      actions_after_dispatch: actionsAfterDispatch, refused, back_to_pending: backToPending,
      a_row: rowStates[a], b_row: rowStates[b],
      a_state: "dispatched", b_state: "false_alarm", suppressions_visible: await page.isVisible("#suppressions"),
    }));
  } else if (mode === "grid") {
    const [user, password, a, photo, shots] = rest;
    // The start page sends a grid worker to their cases.
    const { who } = await login("/", user, password, "/grid");
    const card = `.card[data-id="${a}"]`;
    await page.waitForSelector(card, { timeout: 30000 });
    await page.waitForFunction(() => [...document.querySelectorAll("#todo img.evidence")].every(i => i.complete && i.naturalWidth > 0));
    await page.waitForFunction((c) => document.querySelector(c + " .dispatch").textContent.length > 0, card);
    const cards = await page.$$eval(".card", (cs) => cs.map((c) => ({ id: c.dataset.id, grid: c.dataset.grid, state: c.dataset.state })));
    const dispatch = await page.textContent(card + " .dispatch");
    const place = await page.textContent(card + " .place");
    const button = await page.locator(card + " button.big").boundingBox();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    await page.screenshot({ path: shots + "/grid-cases.png" });
    await page.tap(card + " button.big");
    await page.setInputFiles(card + " input.photo-input", photo);
    await page.waitForFunction((c) => { const i = document.querySelector(c + " img.preview"); return i && i.complete && i.naturalWidth > 0; }, card);
    await page.fill(card + " textarea.note", "车已驶离 the car has left");
    await page.locator(card + " .clear-form").scrollIntoViewIfNeeded();
    await page.screenshot({ path: shots + "/grid-clear-form.png" });
    await page.tap(card + " button.submit");
    await page.waitForSelector(card + " .done", { timeout: 30000 });
    const after = await page.getAttribute(card, "data-state");
    const done = await page.textContent(card + " .done");
    await page.locator(card).scrollIntoViewIfNeeded();
    await page.screenshot({ path: shots + "/grid-cleared.png" });
    console.log(JSON.stringify({
      who, cards, dispatch, place, button_height: button.height, button_width: button.width, overflow, state_after: after, done,
    }));
  } else if (mode === "cluster") {
    const [user, password, cameras, shots] = rest;
    const { who } = await login("/cluster", user, password, "/cluster");
    await page.waitForFunction((n) => document.querySelectorAll("#owners tr").length >= n, Number(cameras), { timeout: 30000 });
    const rows = await page.$$eval("#owners tr", (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
    const nodes = await page.$$eval("#nodes tr", (trs) => trs.map((tr) => tr.cells[0].textContent));
    await page.screenshot({ path: shots + "/cluster-page.png", fullPage: true });
    console.log(JSON.stringify({ who, rows, nodes, summary: await page.textContent("#summary") }));
  } else if (mode === "away") {
    const [camera, user, password, shots] = rest;
    const { who } = await login("/zones?camera=" + encodeURIComponent(camera), user, password, "/zones");
    await page.waitForFunction(() => document.getElementById("frame-info").textContent.includes("runs this camera"), null, { timeout: 20000 });
    const link = await page.getAttribute("#frame-info a", "href");
    await page.screenshot({ path: shots + "/zone-editor-away.png" });
    console.log(JSON.stringify({ who, camera: await page.inputValue("#camera"), info: await page.textContent("#frame-info"), link }));
  } else if (mode === "history") {
    const [user, password, a, shots] = rest;
    // A `next` pointing at another site is ignored: the login lands on this console.
    await page.goto(base + "/login?next=" + encodeURIComponent("//example.com/phish"));
    await page.fill("#name", user);
    await page.fill("#password", password);
    await Promise.all([page.waitForURL((u) => u.pathname === "/", { timeout: 15000 }), page.click("#submit")]);
    const landed = new URL(page.url()).origin === new URL(base).origin ? path() : page.url();
    await page.goto(base + "/events?state=&event=" + encodeURIComponent(a));
    await page.waitForSelector("table.history tr.review-cleared", { timeout: 15000 });
    await page.waitForFunction(() => [...document.querySelectorAll("table.history img.review-photo")].every(i => i.complete && i.naturalWidth > 0));
    const history = await page.$$eval("table.history tr[class^=review-]", (rs) => rs.map((r) => ({
      to: r.className.replace("review-", ""), text: r.textContent, photo: !!r.querySelector("img.review-photo"),
    })));
    await page.locator("table.history").scrollIntoViewIfNeeded();
    await page.screenshot({ path: shots + "/review-history.png", fullPage: true });
    // Logging out ends the session: the next page asks for a login again.
    await page.click("#logout");
    await page.waitForURL((u) => u.pathname === "/login");
    await page.goto(base + "/events");
    const afterLogout = path();
    console.log(JSON.stringify({ landed, history, after_logout: afterLogout }));
  } else {
    throw new Error("mode must be editor, events, review, grid or history");
  }
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
