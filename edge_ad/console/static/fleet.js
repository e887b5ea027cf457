// edge_ad console, fleet page: reloads the table every 5 s (the server renders it: /fleet?fragment=1).
"use strict";
(function () {
  const table = document.getElementById("fleet-table");
  if (!table) return;

  async function refresh() {
    try {
      const response = await fetch("/fleet?fragment=1", { cache: "no-store", credentials: "same-origin" });
      if (response.redirected || !response.ok) { window.location.reload(); return; } // logged out: the login page
      table.innerHTML = await response.text(); // rendered and escaped by the server
    } catch (err) {
      // the console is unreachable for a moment: keep the last table, try again
    }
    window.setTimeout(refresh, 5000);
  }
  window.setTimeout(refresh, 5000);
})();
