// switchyard dashboard: live regions and forms that submit without a page load.
// Written for this project (no framework). Elements with data-live="<ms>" are refreshed
// from the same URL; forms with data-async post in the background and refresh them.
"use strict";

function swapLive(doc) {
  document.querySelectorAll("[data-live]").forEach(function (el) {
    var fresh = el.id && doc.getElementById(el.id);
    if (!fresh) return;
    var seen = {};
    el.querySelectorAll("tr[data-id]").forEach(function (tr) { seen[tr.dataset.id] = true; });
    var hadRows = Object.keys(seen).length > 0 || el.dataset.empty === "1";
    el.innerHTML = fresh.innerHTML;
    el.dataset.empty = fresh.querySelector("tr[data-id]") ? "" : "1";
    if (!hadRows) return;
    el.querySelectorAll("tr[data-id]").forEach(function (tr) {
      if (!seen[tr.dataset.id]) tr.classList.add("fresh");
    });
  });
}

function fetchPage(url, options) {
  return fetch(url, Object.assign({ credentials: "same-origin" }, options || {})).then(function (res) {
    if (new URL(res.url).pathname === "/ui/login") {
      window.location.href = res.url;
      return null;
    }
    return res.text().then(function (text) {
      return { ok: res.ok, doc: new DOMParser().parseFromString(text, "text/html") };
    });
  });
}

function startPolling() {
  var live = document.querySelector("[data-live]");
  if (!live) return;
  var every = parseInt(live.dataset.live, 10) || 2000;
  var busy = false;
  setInterval(function () {
    if (busy || document.hidden) return;
    busy = true;
    fetchPage(window.location.href)
      .then(function (page) { if (page && page.ok) swapLive(page.doc); })
      .catch(function () { /* the next tick tries again */ })
      .then(function () { busy = false; });
  }, every);
}

function flash(form, text, kind) {
  var box = form.parentElement.querySelector(".flash[data-for-forms]") || document.querySelector(".flash[data-for-forms]");
  if (!box) return;
  box.textContent = text;
  box.className = "flash " + kind;
  box.hidden = false;
}

function asyncForms() {
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (!form.matches || !form.matches("form[data-async]")) return;
    ev.preventDefault();
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    var button = form.querySelector("button");
    if (button) button.disabled = true;
    fetchPage(form.action, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams(new FormData(form)).toString(),
    })
      .then(function (page) {
        if (!page) return;
        swapLive(page.doc);
        var msg = page.doc.querySelector(".flash[data-for-forms]");
        flash(form, msg && !msg.hidden ? msg.textContent : (page.ok ? "Done." : "That did not work."), page.ok ? "ok" : "error");
      })
      .catch(function () { flash(form, "The server did not answer.", "error"); })
      .then(function () { if (button) button.disabled = false; });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  asyncForms();
  startPolling();
});
