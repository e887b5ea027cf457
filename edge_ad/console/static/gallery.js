// edge_ad console, NG gallery: keyboard shortcuts (j/k move, h frame/heatmap, 1-9 label buttons, l type a label)
// and live refresh: an NG verdict on /events (server-sent events) brings its card in at the top. The card is the
// one the server renders (the gallery page fetched again, its new cards taken over): one markup, escaped by the
// server's templates, with the same label forms and CSRF token; nothing from the event is put into the page.
"use strict";
(function () {
  const gallery = document.getElementById("gallery");
  if (!gallery) return;
  const KEEP = 48; // cards kept, as many as the server shows
  const cards = () => Array.from(gallery.querySelectorAll("article.shot"));
  let current = null; // the selected card (an element: new cards shift the indexes)

  function mark(card) {
    if (current === card) return;
    if (current) current.classList.remove("selected");
    current = card;
    card.classList.add("selected");
  }

  function select(i) {
    const all = cards();
    if (i < 0 || i >= all.length) return;
    mark(all[i]);
    all[i].focus({ preventScroll: true });
    all[i].scrollIntoView({ block: "nearest" });
  }

  gallery.addEventListener("focusin", (event) => {
    const card = event.target instanceof Element ? event.target.closest("article.shot") : null;
    if (card) mark(card);
  });

  function toggle(card) {
    const img = card.querySelector("img.shot-image");
    const { heatmap, image } = card.dataset;
    if (!img || !heatmap || !image) return;
    img.src = img.getAttribute("src") === heatmap ? image : heatmap;
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
    if (typing) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const card = current && current.isConnected ? current : null;
    const at = card ? cards().indexOf(card) : -1;
    if (event.key === "j" || event.key === "ArrowRight") select(at + 1);
    else if (event.key === "k" || event.key === "ArrowLeft") select(Math.max(at - 1, 0));
    else if (event.key === "h" && card) toggle(card);
    else if (event.key === "l" && card) {
      const input = card.querySelector("form.custom input[name=label]");
      if (input) input.focus();
    } else if (/^[1-9]$/.test(event.key) && card) {
      const button = card.querySelector(`form.quick button[data-key="${event.key}"]`);
      if (button) button.click();
    } else return;
    event.preventDefault();
  });

  // -- live refresh ------------------------------------------------------------------------------

  if (!window.EventSource || !window.fetch || !window.DOMParser) return;
  let busy = false; // a fetch of the page is under way
  let again = false; // another NG arrived meanwhile: fetch once more afterwards
  let leaving = false; // a form was sent: this page is about to be replaced
  const abort = new AbortController(); // ...and a fetch still under way must not set the session cookie after it
  const source = new EventSource("/events");

  function adopt(fresh) {
    const known = new Set(cards().map((c) => c.dataset.key));
    const added = [];
    for (const card of fresh.querySelectorAll("#gallery > article.shot")) {
      if (known.has(card.dataset.key)) break; // the rest the page shows already (or older files)
      added.push(document.importNode(card, true));
    }
    if (added.length === 0) return;
    const empty = document.getElementById("gallery-empty");
    if (empty) empty.remove();
    gallery.prepend(...added);
    const all = cards();
    for (const card of all.slice(KEEP)) {
      if (card === current) current = null;
      card.remove();
    }
    all.slice(0, KEEP).forEach((card, i) => { card.id = `shot-${i + 1}`; }); // the newest is shot-1, as served
  }

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        const response = await fetch("/gallery", {
          credentials: "same-origin", headers: { Accept: "text/html" }, signal: abort.signal,
        });
        if (leaving) return;
        if (!response.ok || new URL(response.url).pathname !== "/gallery") { source.close(); return; } // logged out
        adopt(new DOMParser().parseFromString(await response.text(), "text/html"));
      } while (again && !leaving);
    } catch (err) {
      if (!leaving) console.warn("edge_ad gallery:", err);
    } finally {
      busy = false;
    }
  }

  source.addEventListener("verdict", (event) => {
    try {
      const v = JSON.parse(event.data);
      if (v.verdict === "NG" && !leaving) refresh();
    } catch (err) {
      console.warn("edge_ad gallery:", err);
    }
  });
  document.addEventListener("submit", () => { leaving = true; source.close(); abort.abort(); });
})();
