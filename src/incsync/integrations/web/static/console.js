// The console's behaviour on top of pages that work without it: the viewer's time zone, details
// that open on hover and keyboard focus as well as on click or tap, and the list kept up to date.
"use strict";
(function () {
  var zoneCookie = "incsync_zone";

  function cookie(name) {
    var found = document.cookie.split("; ").find(function (part) {
      return part.indexOf(name + "=") === 0;
    });
    return found ? found.slice(name.length + 1) : null;
  }

  // The server writes exact times in the zone this cookie names; the first page shows its own.
  // IANA names need no encoding; anything else is not sent.
  var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var zoneChanged = false;
  if (zone && /^[A-Za-z0-9_+\-\/]+$/.test(zone) && cookie(zoneCookie) !== zone) {
    document.cookie = zoneCookie + "=" + zone + "; path=/; max-age=31536000; samesite=strict";
    zoneChanged = true;
  }

  // Details open on hover and on keyboard focus, not only on click: opened so, they close when
  // the pointer or the focus leaves, or on Escape. One opened by click or tap stays open.
  function bindDetails(root) {
    root.querySelectorAll("details.more").forEach(function (details) {
      var summary = details.querySelector("summary");
      var transient = false;
      function show() {
        if (!details.open) { details.open = true; transient = true; }
      }
      function hide() {
        if (transient) { details.open = false; transient = false; }
      }
      details.addEventListener("mouseenter", show);
      details.addEventListener("mouseleave", hide);
      summary.addEventListener("focus", show);
      details.addEventListener("focusout", function (event) {
        if (!details.contains(event.relatedTarget)) { hide(); }
      });
      summary.addEventListener("click", function (event) {
        if (transient) { event.preventDefault(); transient = false; }
      });
      details.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && details.open) {
          details.open = false; transient = false; summary.focus();
        }
      });
    });
  }

  // Rows are matched across updates by their id (made from the source's key).
  function rowOf(element) {
    var row = element.closest("tr[id]");
    return row ? row.id : null;
  }

  function openRows(root) {
    var rows = new Set();
    root.querySelectorAll("details.more[open]").forEach(function (details) {
      rows.add(rowOf(details));
    });
    return rows;
  }

  // The list asks for its rows every poll interval; the server answers 304 while they are
  // unchanged, so a cycle's end shows within one interval and an idle list costs little.
  function poll(live) {
    var url = live.getAttribute("data-rows-url");
    var every = parseInt(live.getAttribute("data-poll-ms"), 10) || 1000;
    var etag = null;
    function replace(html) {
      var kept = openRows(live);
      var focused = document.activeElement;
      var focusRow = null, focusAction = null;
      if (focused && live.contains(focused)) {
        focusRow = rowOf(focused);
        focusAction = focused.getAttribute("data-action") ||
          (focused.tagName === "SUMMARY" ? "details" : "name");
      }
      live.innerHTML = html;
      live.querySelectorAll("details.more").forEach(function (details) {
        if (kept.has(rowOf(details))) { details.open = true; }
      });
      bindDetails(live);
      var row = focusRow === null ? null : document.getElementById(focusRow);
      if (row) {
        var target = focusAction === "details" ? row.querySelector("summary")
          : focusAction === "name" ? row.querySelector(".name a")
          : row.querySelector('[data-action="' + focusAction + '"]');
        if (target) { target.focus({ preventScroll: true }); }
      }
    }
    function tick() {
      if (document.hidden) { window.setTimeout(tick, every); return; }
      var headers = etag ? { "If-None-Match": etag } : {};
      fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 200) {
            etag = response.headers.get("ETag");
            return response.text().then(replace);
          }
          return null;
        })
        .catch(function () { /* the next tick tries again */ })
        .finally(function () { window.setTimeout(tick, every); });
    }
    window.setTimeout(tick, zoneChanged ? 0 : every);
  }

  function start() {
    bindDetails(document);
    var live = document.getElementById("live");
    if (live) { poll(live); }
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
