// Keyboard review: j/k move between claims, y/n/u decide the current one and move on to the next, z undoes the
// reviewer's last decision, x excludes or includes the pair. The keys click the same buttons a mouse would, so
// HTMX (or a plain form post without it) does the rest.
(function () {
  "use strict";
  let current = 0;
  let decided = null; // the claim just decided, until its answer is swapped in

  function chips() {
    return Array.from(document.querySelectorAll("[data-claim]"));
  }

  function mark(index, scroll) {
    const all = chips();
    if (!all.length) return;
    current = Math.max(0, Math.min(index, all.length - 1));
    all.forEach((chip, i) => chip.classList.toggle("current", i === current));
    if (scroll) all[current].scrollIntoView({ block: "nearest" });
  }

  function press(selector) {
    const button = document.querySelector(selector);
    if (button) button.click();
    return Boolean(button);
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select, [contenteditable]")) return;
    const key = event.key;
    if (key === "j" || key === "k") {
      mark(current + (key === "j" ? 1 : -1), true);
    } else if (key === "y" || key === "n" || key === "u") {
      const all = chips();
      const button = all[current] && all[current].querySelector(`button[data-key="${key}"]`);
      if (!button) return;
      decided = all[current].dataset.claim;
      button.click();
    } else if (key === "x" || key === "z") {
      if (!press(`button[data-key="${key}"]`)) return;
    } else {
      return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    const zoom = event.target.closest("[data-zoom]");
    if (zoom) {
      event.preventDefault();
      zoom.querySelector("img").classList.toggle("zoomed");
      return;
    }
    const chip = event.target.closest("[data-claim]");
    if (chip) mark(chips().indexOf(chip), false);
  });

  // After a decision what changed is swapped in. Move on to the next claim: on the pair page the decided chip
  // stays, so the one after it; in the queue it leaves, so the one that now holds its place.
  document.addEventListener("htmx:afterSettle", () => {
    const stays = decided !== null && chips().some((chip) => chip.dataset.claim === decided);
    mark(stays ? current + 1 : current, decided !== null);
    decided = null;
    document.getElementById("flash").textContent = "";
  });
  document.addEventListener("htmx:responseError", (event) => {
    decided = null;
    document.getElementById("flash").textContent = event.detail.xhr.responseText || "The request failed.";
  });
  document.addEventListener("DOMContentLoaded", () => mark(0, false));
})();
