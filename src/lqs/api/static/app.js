// Behaviour every dashboard page shares. No page has inline script: the
// Content-Security-Policy allows only this origin's files.
(function () {
  "use strict";

  // htmx requests carry the page's CSRF token as a header (lqs.api.browser_session).
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) {
      event.detail.headers["X-CSRF-Token"] = meta.getAttribute("content");
    }
  });
})();
