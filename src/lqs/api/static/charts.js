// Charts from markup: <canvas data-chart='{"type": "bar", "data": {...}}'
// aria-label="..." role="img"> becomes a Chart.js chart, on the page and in content htmx
// swaps in. The configuration is JSON in an attribute, so no inline script is needed.
(function () {
  "use strict";

  var reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)").matches;

  function draw(canvas) {
    if (canvas.dataset.chartDrawn) {
      return;
    }
    var config = JSON.parse(canvas.dataset.chart);
    config.options = config.options || {};
    if (reducedMotion) {
      config.options.animation = false;
    }
    new window.Chart(canvas, config);
    canvas.dataset.chartDrawn = "true";
  }

  window.htmx.onLoad(function (root) {
    if (root.matches && root.matches("canvas[data-chart]")) {
      draw(root);
    }
    root.querySelectorAll("canvas[data-chart]").forEach(draw);
  });
})();
