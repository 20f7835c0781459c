// pushd panel: local times and live updates. Every page is complete without
// this file; it only swaps numbers in place as the daemon sends them.
"use strict";
(function () {
  var thisYear = new Date().getFullYear();

  // Times arrive in UTC (kept as the hover title); show them in local time,
  // to the second where the page says precision matters.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d.getTime())) return;
      var o = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
      if (d.getFullYear() !== thisYear) o.year = "numeric";
      if (t.closest(".precise")) { o.second = "2-digit"; o.year = "numeric"; }
      t.textContent = new Intl.DateTimeFormat(undefined, o).format(d);
    });
  }

  // "Push again": a datetime-local means the browser's own timezone.
  function tzOffsets() {
    document.querySelectorAll("[data-tz-offset]").forEach(function (i) {
      i.value = String(new Date().getTimezoneOffset());
    });
  }

  var url = document.body.getAttribute("data-live");
  // The page's own data is this fresh; an older update is no news.
  var pageAt = Number(document.body.getAttribute("data-at") || 0);
  var source = null;
  var dot = document.querySelector("[data-conn]");

  function setAll(scope, selector, fn) {
    scope.querySelectorAll(selector).forEach(fn);
  }

  function apply(msg) {
    if (msg.at < pageAt) return;
    // A page that shows one state as a whole (Scripts) is drawn again
    // when that state changes.
    if (msg.fingerprint !== undefined) {
      var shown = document.body.getAttribute("data-fingerprint");
      if (shown !== null && shown !== msg.fingerprint) location.reload();
      return;
    }
    var ids = msg.rows.map(function (r) { return String(r.id); }).join(",");
    var list = document.querySelector("[data-ids]");
    if (list && list.getAttribute("data-ids") !== ids) { location.reload(); return; }
    for (var i = 0; i < msg.rows.length; i++) {
      var r = msg.rows[i];
      var el = document.querySelector('[data-push="' + r.id + '"]');
      if (!el) continue;
      // A new status changes what the page offers: draw it again.
      if (el.getAttribute("data-status") !== r.status) { location.reload(); return; }
      // So does a new A/B phase (the winner chosen: the pick buttons go).
      if (el.hasAttribute("data-phase") && el.getAttribute("data-phase") !== r.phase) { location.reload(); return; }
      Object.keys(r.fields).forEach(function (k) {
        setAll(el, '[data-field="' + k + '"]', function (n) {
          if (n.textContent !== r.fields[k]) n.textContent = r.fields[k];
        });
      });
      setAll(el, "progress[data-progress]", function (p) {
        p.max = r.progress[1];
        p.value = r.progress[0];
      });
      if (r.svg) {
        setAll(el, "[data-svg]", function (fig) {
          var doc = new DOMParser().parseFromString(r.svg, "image/svg+xml");
          if (doc.documentElement && doc.documentElement.nodeName === "svg") {
            fig.replaceChildren(document.importNode(doc.documentElement, true));
          }
        });
      }
    }
  }

  function open() {
    if (source || !url || document.hidden) return;
    source = new EventSource(url);
    source.addEventListener("update", function (e) {
      try { apply(JSON.parse(e.data)); } catch (err) { /* a bad frame: wait for the next */ }
    });
    source.onopen = function () { if (dot) dot.hidden = false; };
    source.onerror = function () { if (dot) dot.hidden = true; };
  }

  function close() {
    if (source) { source.close(); source = null; }
    if (dot) dot.hidden = true;
  }

  // Nothing is streamed to a tab nobody is looking at.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) close(); else open();
  });

  localTimes(document);
  tzOffsets();
  open();
})();
