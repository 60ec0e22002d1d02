// Draws the page's charts with Chart.js from the JSON the page embeds (no data from elsewhere).
"use strict";
(function () {
  function when(seconds) {
    return new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19);
  }
  function draw(canvasId, dataId, stepped) {
    const canvas = document.getElementById(canvasId);
    const source = document.getElementById(dataId);
    if (!canvas || !source) return;
    const data = JSON.parse(source.textContent);
    // points: [{time: unix seconds, <data.y>: value}, ...] as the JSON API gives them
    const points = data.points.filter(function (p) { return p[data.y] !== null; })
                              .map(function (p) { return { x: p.time, y: p[data.y] }; });
    new Chart(canvas, {
      type: "line",
      data: { datasets: [{ label: data.label, data: points, stepped: stepped, borderColor: "#1f6feb",
                           backgroundColor: "rgba(31, 111, 235, 0.15)", fill: !stepped, pointRadius: 3 }] },
      options: {
        animation: false, maintainAspectRatio: false, parsing: false,
        scales: { x: { type: "linear", ticks: { callback: when, maxTicksLimit: 6 } } },
        plugins: { tooltip: { callbacks: { title: function (items) { return when(items[0].parsed.x); } } } }
      }
    });
  }
  draw("champion-chart", "champion-data", true);
  draw("credit-chart", "credit-data", true);
})();
