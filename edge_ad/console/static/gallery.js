// edge_ad console, NG gallery: keyboard shortcuts (j/k move, h frame/heatmap, 1-9 label buttons, l type a label).
"use strict";
(function () {
  const cards = Array.from(document.querySelectorAll("article.shot"));
  if (cards.length === 0) return;
  let current = -1;

  function select(i) {
    if (i < 0 || i >= cards.length) return;
    if (current >= 0) cards[current].classList.remove("selected");
    current = i;
    cards[i].classList.add("selected");
    cards[i].focus({ preventScroll: true });
    cards[i].scrollIntoView({ block: "nearest" });
  }

  cards.forEach((card, i) => card.addEventListener("focus", () => {
    if (current !== i) { if (current >= 0) cards[current].classList.remove("selected"); current = i; card.classList.add("selected"); }
  }));

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
    const card = current >= 0 ? cards[current] : null;
    if (event.key === "j" || event.key === "ArrowRight") select(current + 1);
    else if (event.key === "k" || event.key === "ArrowLeft") select(Math.max(current - 1, 0));
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
})();
