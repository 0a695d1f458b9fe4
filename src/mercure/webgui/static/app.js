// The web interface's own script (no inline scripts anywhere: the CSP forbids them).
// - every htmx request carries the session's CSRF token (X-CSRF-Token);
// - a 401 (session ended) goes to the sign-in page;
// - when the web interface stops answering, a banner says since when the page is stale.
(function () {
  "use strict";

  function meta(name) {
    var element = document.querySelector('meta[name="' + name + '"]');
    return element ? element.getAttribute("content") : "";
  }

  function timeNow() {
    return new Date().toLocaleTimeString();
  }

  var lastGood = timeNow();

  document.addEventListener("htmx:configRequest", function (event) {
    var token = meta("csrf-token");
    if (token) {
      event.detail.headers["X-CSRF-Token"] = token;
    }
  });

  function connection(ok) {
    var banner = document.getElementById("connection-banner");
    if (!banner) {
      return;
    }
    if (ok) {
      lastGood = timeNow();
      banner.hidden = true;
    } else {
      document.getElementById("connection-since").textContent = lastGood;
      banner.hidden = false;
    }
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    if (xhr && xhr.status === 401) {
      window.location.assign(meta("login-url") + "?ended=1");
      return;
    }
    connection(Boolean(xhr && xhr.status > 0 && xhr.status < 500));
  });

  document.addEventListener("htmx:sendError", function () {
    connection(false);
  });

  document.addEventListener("htmx:timeout", function () {
    connection(false);
  });

  window.mercure = { meta: meta, connection: connection };
})();
