// A button with data-confirm asks before it acts (approving the review gate starts minutes of training):
// "Cancel" in the dialog stops the click, so neither the form nor HTMX sends anything.
(function () {
  "use strict";
  document.addEventListener(
    "click",
    (event) => {
      const button = event.target.closest("[data-confirm]");
      if (button && !window.confirm(button.dataset.confirm)) {
        event.preventDefault();
        event.stopImmediatePropagation();
      }
    },
    true,
  );
})();
