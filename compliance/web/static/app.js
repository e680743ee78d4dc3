// Clearance compliance console: small progressive enhancements. Every page
// works without this script.
(function () {
  "use strict";
  document.addEventListener("click", function (ev) {
    var t = ev.target;
    if (t && t.hasAttribute && t.hasAttribute("data-print")) {
      window.print();
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    // Move focus to the first error so keyboard and screen-reader users hear it.
    var err = document.querySelector("[role=alert]");
    if (err) {
      err.setAttribute("tabindex", "-1");
      err.focus();
    }
  });
  // "/" jumps to the first filter field, as in many search tools.
  document.addEventListener("keydown", function (ev) {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) {
      return;
    }
    var tag = (document.activeElement && document.activeElement.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
      return;
    }
    var first = document.querySelector("main form input:not([type=hidden]), main form textarea");
    if (first) {
      ev.preventDefault();
      first.focus();
    }
  });
})();
