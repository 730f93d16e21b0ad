// queuer web: refresh the live regions, ask before destructive forms, send each form once. No library.
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
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      return;
    }
    // A form POSTs once: a double click on "Yes, re-queue them" would add every job twice.
    if (form.method === "post") {
      if (form.hasAttribute("data-sent")) event.preventDefault();
      form.setAttribute("data-sent", "");
    }
  });

  // A page the Back button restores from the browser's cache may send its forms again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-sent]").forEach(function (form) {
      form.removeAttribute("data-sent");
    });
  });
})();
