// The "Try on real events" page follows a try the worker is filling: it asks the try's status
// every second and shows the page again once the try is done (a file: the Content-Security-Policy
// allows no inline script).
(function () {
  "use strict";
  function follow() {
    var box = document.getElementById("draft-try");
    if (!box || !box.dataset.statusUrl) return;
    var url = box.dataset.statusUrl;
    var progress = document.getElementById("draft-try-progress");
    function ask() {
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (state) {
          if (!state) { window.setTimeout(ask, 3000); return; }
          if (state.status !== "pending" && state.status !== "running") {
            window.location.reload();
            return;
          }
          if (progress && state.of) progress.firstChild.nodeValue = "Trying… " + state.done + " of " + state.of + " events ";
          window.setTimeout(ask, 1000);
        })
        .catch(function () { window.setTimeout(ask, 3000); });
    }
    window.setTimeout(ask, 1000);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", follow);
  else follow();
})();
