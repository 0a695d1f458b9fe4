// The logs page: keep the newest lines in view while the reader is at the bottom, and keep
// the page light during a long live tail (the oldest lines leave after MAX_LINES).
(function () {
  "use strict";

  var MAX_LINES = 5000;
  var follow = true;

  function box() {
    return document.getElementById("log-lines");
  }

  function atBottom(element) {
    return element.scrollHeight - element.scrollTop - element.clientHeight < 40;
  }

  document.addEventListener("DOMContentLoaded", function () {
    var element = box();
    if (element) {
      element.scrollTop = element.scrollHeight;
      element.addEventListener("scroll", function () {
        follow = atBottom(element);
      });
    }
  });

  document.addEventListener("htmx:afterSettle", function () {
    var element = box();
    if (!element) {
      return;
    }
    var lines = element.querySelectorAll(".log-line");
    for (var i = 0; i < lines.length - MAX_LINES; i++) {
      lines[i].remove();
    }
    if (follow) {
      element.scrollTop = element.scrollHeight;
    }
  });
})();
