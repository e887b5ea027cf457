// edge_ad console, recalibration wizard: follows a running recalibration and shows the result when it ends.
"use strict";
(function () {
  const job = document.getElementById("recal-job");
  if (!job || job.dataset.running !== "yes") return;
  const bar = document.getElementById("recal-progress");
  const set = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = String(value); };

  async function poll() {
    try {
      const response = await fetch("/recalibrate/progress", { cache: "no-store", credentials: "same-origin" });
      if (response.redirected || !response.ok) { window.location.reload(); return; }
      const p = await response.json();
      if (p.done) { window.location.reload(); return; } // the server renders the result
      set("recal-state", p.state);
      set("recal-count", p.collected);
      set("recal-frames", p.frames);
      if (bar) { bar.max = p.frames || 1; bar.value = p.collected || 0; }
    } catch (err) {
      set("recal-state", "console unreachable, retrying");
    }
    window.setTimeout(poll, 500);
  }
  window.setTimeout(poll, 500);
})();
