// Copy buttons: <button data-copy-target="element-id">. No dependencies.
(function () {
  "use strict";

  function fallbackCopy(text) {
    // navigator.clipboard needs a secure context; plain-HTTP installs still get a working button.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function flash(button, label, className) {
    var original = button.dataset.label || button.textContent;
    button.dataset.label = original;
    button.textContent = label;
    if (className) button.classList.add(className);
    window.setTimeout(function () {
      button.textContent = original;
      if (className) button.classList.remove(className);
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    copy(source.textContent.trim()).then(
      function () { flash(button, "Copied", "copied"); },
      function () {
        // Leave the text selected so a manual copy is one keystroke away.
        window.getSelection().selectAllChildren(source);
        flash(button, "Press Ctrl+C", null);
      }
    );
  });
})();
