// queuer web: refresh the live regions and ask before destructive forms. No library.
(function () {
  "use strict";

  function refresh(region) {
    var url = region.getAttribute("data-refresh");
    var every = Number(region.getAttribute("data-interval")) || 3000;
    var status = document.getElementById("refresh-status");
    var busy = false;

    function say(text, stale) {
      if (!status) return;
      status.textContent = text;
      status.classList.toggle("stale", stale);
    }

    function tick() {
      // A hidden tab asks for nothing; one request at a time.
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          region.innerHTML = html;
          say("updated " + new Date().toLocaleTimeString(), false);
        })
        .catch(function (error) {
          say("not updated: " + error.message, true);
        })
        .finally(function () {
          busy = false;
        });
    }

    setInterval(tick, every);
    document.addEventListener("visibilitychange", tick);
  }

  document.querySelectorAll("[data-refresh]").forEach(refresh);

  document.addEventListener("submit", function (event) {
    var message = event.target.getAttribute("data-confirm");
    if (message && !window.confirm(message)) event.preventDefault();
  });
})();
