// redrive console: local times, countdowns, live regions and the buttons that
// call the JSON API. Every page reads fine without this script; it only adds
// live updates and the state-changing buttons (which POST JSON with
// Content-Type: application/json, as the API requires).
"use strict";

const POLL_MS = 1000;
// Sent with every request of this script. Under auth: the server accepts the
// session cookie on a state-changing request only with this header, which a
// form or script on another site cannot send (CSRF defence).
const CONSOLE_HEADER = { "X-Redrive-Console": "1" };

// The session ended (logout, expiry, revoked token, restart): log in again.
function toLogin() {
  location.href = "/console/login?next=" + encodeURIComponent(location.pathname + location.search);
}

function localiseTimes(root) {
  for (const el of root.querySelectorAll("time[datetime]")) {
    const d = new Date(el.getAttribute("datetime"));
    if (isNaN(d)) continue;
    el.textContent = d.toLocaleString();
    el.title = el.getAttribute("datetime") + " (UTC)";
  }
}

function human(ms) {
  if (ms <= 0) return "now";
  const s = Math.ceil(ms / 1000);
  if (s < 60) return s + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m " + (s % 60) + "s";
  return Math.floor(m / 60) + "h " + (m % 60) + "m";
}

function tickCountdowns() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-due]")) {
    const left = new Date(el.dataset.due).getTime() - now;
    el.textContent = left > 0 ? "in " + human(left) : "due now";
  }
  for (const el of document.querySelectorAll("[data-since]")) {
    const age = now - new Date(el.dataset.since).getTime();
    el.textContent = age > 1000 ? human(age) : "just now";
  }
}

// A region with data-poll is replaced by the fragment at that URL every
// POLL_MS, only when the fragment changed (the server renders nothing that
// changes with time alone), keeping keyboard focus on the same control.
function startPolling(el) {
  if (el.dataset.polling) return;
  el.dataset.polling = "1";
  let last = null; // the first answer always replaces the page's own rendering
  let busy = false;
  const refresh = async () => {
    if (busy || !el.isConnected) return;
    busy = true;
    try {
      const r = await fetch(el.dataset.poll, { headers: { Accept: "text/html", ...CONSOLE_HEADER }, cache: "no-store" });
      if (r.status === 401) return toLogin();
      if (r.ok) {
        const html = await r.text();
        if (html !== last) {
          last = html;
          const keep = keepResults(el);
          const focused = el.contains(document.activeElement) ? document.activeElement.id : "";
          el.innerHTML = html;
          restoreResults(el, keep);
          if (focused) document.getElementById(focused)?.focus();
          localiseTimes(el);
          tickCountdowns();
        }
      }
    } catch (_) {
      /* the next poll tries again */
    } finally {
      busy = false;
    }
  };
  el.refresh = refresh;
  setInterval(refresh, POLL_MS);
}

// The outcome messages of buttons inside a polled region survive its refreshes.
function keepResults(el) {
  return Array.from(el.querySelectorAll(".result")).map((r) => [r.closest("[data-stage]")?.dataset.stage, r.textContent, r.className]);
}

function restoreResults(el, kept) {
  for (const [stage, text, cls] of kept) {
    if (!text) continue;
    const scope = stage ? el.querySelector(`[data-stage="${CSS.escape(stage)}"]`) : el;
    const r = scope && scope.querySelector(".result");
    if (r) {
      r.textContent = text;
      r.className = cls;
    }
  }
}

async function postJson(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json", ...CONSOLE_HEADER },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    /* no JSON body */
  }
  if (!r.ok) {
    const e = (data && data.error) || {};
    throw new Error((e.code || "HTTP " + r.status) + ": " + (e.message || r.statusText));
  }
  return data;
}

function resultFor(el) {
  const scope = el.closest(".retry, .controls, section, main");
  return scope.querySelector(".result") || scope.parentElement.querySelector(".result");
}

function show(el, text, ok) {
  const r = resultFor(el);
  if (!r) return;
  r.textContent = text;
  r.className = "result " + (ok ? "ok" : "bad");
}

function refreshAll() {
  for (const el of document.querySelectorAll("[data-poll]")) if (el.refresh) el.refresh();
}

// A button with data-post: POST its data-body, after data-confirm if any.
async function onPost(btn) {
  if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
  btn.disabled = true;
  try {
    await postJson(btn.dataset.post, JSON.parse(btn.dataset.body || "{}"));
    show(btn, (btn.dataset.mode ? "Retry " + btn.dataset.mode : btn.textContent.trim()) + " requested.", true);
    refreshAll();
  } catch (e) {
    show(btn, e.message, false);
    btn.disabled = false;
  }
}

// The redrive form: the current filters plus mode, rate and max entries.
function redriveBody(section, dryRun) {
  const body = JSON.parse(section.dataset.filters || "{}");
  body.mode = section.querySelector("[name=mode]").value;
  const rate = section.querySelector("[name=rate]").value.trim();
  if (rate) body.rate = rate;
  const max = section.querySelector("[name=maxEntries]").value.trim();
  if (max) body.maxEntries = Number(max);
  body.dryRun = dryRun;
  return body;
}

async function onRedrive(btn) {
  const section = btn.closest("[data-queue]");
  const url = "/v1/dlq/queues/" + encodeURIComponent(section.dataset.queue) + "/redrive";
  const dry = btn.dataset.redrive === "dry";
  btn.disabled = true;
  try {
    const v = await postJson(url, redriveBody(section, dry));
    if (dry) {
      show(btn, `Dry run: ${v.wouldRedrive} would be redriven, ${v.wouldSkip} skipped, ${v.parked} poison left parked (of ${v.matched} matching). Nothing was changed.`, true);
    } else {
      show(btn, `Redrive run ${v.runId} started.`, true);
      refreshAll();
      const box = section.querySelector(".run-progress");
      box.innerHTML = "";
      const live = document.createElement("div");
      live.dataset.poll = "/console/dlq/runs/" + encodeURIComponent(v.runId) + "/live";
      const link = document.createElement("a");
      link.href = "/console/dlq/runs/" + encodeURIComponent(v.runId);
      link.textContent = "Open run " + v.runId;
      box.append(live, link);
      startPolling(live);
      live.refresh();
    }
  } catch (e) {
    show(btn, e.message, false);
  } finally {
    btn.disabled = false;
  }
}

async function onPurge(btn) {
  const section = btn.closest("[data-queue]");
  const count = document.getElementById("match-count");
  const n = count ? count.textContent : "the matching";
  if (!window.confirm(`Purge ${n} queued entries of ${section.dataset.queue}? They are deleted for good.`)) return;
  try {
    const v = await postJson(btn.dataset.purge, JSON.parse(section.dataset.filters || "{}"));
    show(btn, `Purged ${v.purged} entries.`, true);
    refreshAll();
  } catch (e) {
    show(btn, e.message, false);
  }
}

// The login form: the token is posted as JSON (never in a URL); the answer
// sets the session cookie, then the page asked for opens.
async function onLogin(form) {
  const r = form.querySelector(".result");
  try {
    await postJson("/console/login", { token: form.querySelector("[name=token]").value });
    location.href = form.dataset.next || "/console";
  } catch (e) {
    r.textContent = e.message;
    r.className = "result bad";
  }
}

async function onLogout(btn) {
  try {
    await postJson(btn.dataset.logout, {});
  } catch (_) {
    /* already ended */
  }
  location.href = "/console/login";
}

document.addEventListener("submit", (ev) => {
  if (ev.target.id !== "login") return;
  ev.preventDefault();
  onLogin(ev.target);
});

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button");
  if (!btn || btn.disabled) return;
  if (btn.dataset.logout) onLogout(btn);
  else if (btn.dataset.post) onPost(btn);
  else if (btn.dataset.redrive) onRedrive(btn);
  else if (btn.dataset.purge) onPurge(btn);
});

document.addEventListener("DOMContentLoaded", () => {
  localiseTimes(document);
  tickCountdowns();
  setInterval(tickCountdowns, 1000);
  for (const el of document.querySelectorAll("[data-poll]")) startPolling(el);
});
