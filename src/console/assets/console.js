// What every console page shares: the session (who is logged in; a 401 sends the browser to
// the login page and back after), escaping, state names, and shrinking a phone photo.
"use strict";
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
let me = { role: "", grids: [] };

const ROLES = { admin: "管理员 admin", operator: "值班员 operator", grid_worker: "网格员 grid worker", camera: "摄像机 camera", platform: "平台 platform" };
const STATES = {
  pending: "待复核 pending", confirmed: "已确认 confirmed", false_alarm: "误报 false alarm",
  dispatched: "已派遣 dispatched", cleared: "已处置 cleared", verified: "核查通过 verified",
  not_cleared: "核查未通过 not cleared", closed: "已结案 closed",
};
const badge = (s) => '<span class="state ' + esc(s) + '">' + esc(STATES[s] || s) + "</span>";

function toLogin() { location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search); }
async function api(url, opts) {
  const r = await fetch(url, Object.assign({ credentials: "same-origin" }, opts));
  if (r.status === 401) { toLogin(); return new Promise(() => {}); }
  return r;
}
// Fills the header with who is logged in (`label(me)`: default their role) and a logout link;
// a grid worker sees no links to live views or metrics, and a link to their own page.
async function whoami(label) {
  me = await (await api("/api/me")).json();
  const shown = label ? label(me) : (ROLES[me.role] || me.role);
  $("who").innerHTML = "<span><b>" + esc(me.name) + "</b> · " + esc(shown) + "</span><a href=\"#\" id=\"logout\">退出 Log out</a>";
  $("logout").onclick = async (e) => { e.preventDefault(); await fetch("/api/logout", { method: "POST" }).catch(() => {}); location.href = "/login"; };
  const worker = me.role === "grid_worker";
  for (const a of document.querySelectorAll("header a.staff")) a.style.display = worker ? "none" : "";
  for (const a of document.querySelectorAll("header a.worker")) a.style.display = worker ? "" : "none";
  return me;
}

// A phone photo shrunk to at most 1600 px on a canvas, as a JPEG data URL (quality 0.85).
async function shrink(file, max = 1600, quality = 0.85) {
  let src;
  try {
    src = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (_) {
    src = await new Promise((ok, fail) => {
      const i = new Image();
      i.onload = () => ok(i);
      i.onerror = () => fail(new Error("这不是照片 this file is not a picture"));
      i.src = URL.createObjectURL(file);
    });
  }
  const w = src.width || src.naturalWidth, h = src.height || src.naturalHeight;
  const k = Math.min(1, max / Math.max(w, h));
  const c = document.createElement("canvas");
  c.width = Math.max(1, Math.round(w * k)); c.height = Math.max(1, Math.round(h * k));
  c.getContext("2d").drawImage(src, 0, 0, c.width, c.height);
  return c.toDataURL("image/jpeg", quality);
}
