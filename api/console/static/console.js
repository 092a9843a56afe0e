// Removes a revealed value from the page when its display window ends (no inline script:
// the Content-Security-Policy allows scripts from this file only).
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-expires-in]").forEach(function (box) {
    var left = parseInt(box.getAttribute("data-expires-in"), 10) || 0;
    var counter = box.querySelector(".countdown");
    var tick = setInterval(function () {
      left -= 1;
      if (counter) { counter.textContent = String(Math.max(left, 0)); }
      if (left <= 0) {
        clearInterval(tick);
        box.textContent = "";
        var gone = document.createElement("p");
        gone.className = "expired";
        gone.textContent = "The value was removed from this page. Reveal it again if you still need it.";
        box.appendChild(gone);
      }
    }, 1000);
  });
});
