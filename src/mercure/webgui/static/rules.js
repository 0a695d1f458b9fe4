// The rule editor's tester: a file too big for the tester is refused here, before it is
// sent (the server refuses it too, but a refused upload would otherwise show nothing).
(function () {
  "use strict";

  function say(text) {
    var result = document.getElementById("tester-result");
    if (!result) {
      return;
    }
    var message = document.createElement("p");
    message.className = "flash bad";
    message.id = "tester-problem";
    message.setAttribute("role", "alert");
    message.textContent = text;
    result.replaceChildren(message);
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "tester-form") {
      return;
    }
    var input = document.getElementById("test-file");
    var limit = parseInt(form.getAttribute("data-max-upload"), 10);
    var file = input && input.files && input.files[0];
    if (file && limit && file.size > limit) {
      event.preventDefault();
      say(file.name + " is " + Math.round(file.size / 1024) + " KiB; the tester reads files up to " +
        Math.round(limit / 1024) + " KiB. Test with a smaller instance of the series, or with the " +
        "series once it is received.");
    }
  });

  document.addEventListener("htmx:responseError", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "tester-form") {
      say("The test failed (" + event.detail.xhr.status + "): " + event.detail.xhr.statusText);
    }
  });
})();
