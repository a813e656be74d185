// Draws the page's charts with the vendored Chart.js (static/webapp/vendor/VENDORED.md) from the JSON the view
// put in <script id="chart-data" type="application/json">: webapp/charts.py says what each chart holds. The data
// comes as JSON rather than inline script because the CSP allows neither inline scripts nor inline styles.
(function () {
  "use strict";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
  const source = document.getElementById("chart-data");
  if (!source || !window.Chart) return;

  function formatted(value, unit) {
    if (value === null || value === undefined) return "—";
    const digits = Number.isInteger(value) ? {} : { maximumSignificantDigits: 4 };
    return value.toLocaleString("en", digits) + unit;
  }

  // A series is one line (or bars); an interval around it adds its low and high bounds, filled between.
  function datasets(spec) {
    const sets = [];
    for (const series of spec.series) {
      const colour = PALETTE[series.colour % PALETTE.length];
      sets.push({
        label: series.label,
        data: series.values,
        borderColor: colour,
        backgroundColor: colour,
        borderDash: series.dashed ? [6, 4] : [],
        pointRadius: spec.x.length > 40 ? 0 : 3,
        pointHoverRadius: 5,
        spanGaps: true,
      });
      if (series.low && series.high) {
        const band = { borderColor: "transparent", backgroundColor: colour + "33", pointRadius: 0, spanGaps: true };
        sets.push({ ...band, band: true, label: series.label + ", 95% low", data: series.low, fill: false });
        sets.push({ ...band, band: true, label: series.label + ", 95% high", data: series.high, fill: "-1" });
      }
    }
    return sets;
  }

  function options(spec) {
    const counts = spec.series.every((series) => series.values.every((v) => v === null || Number.isInteger(v)));
    const y = {
      title: { display: true, text: spec.y_title },
      ticks: { callback: (value) => formatted(value, spec.unit), precision: counts ? 0 : undefined },
      // Counts and rates start at 0 (all zeros drew an axis from -1 to 1).
      beginAtZero: spec.kind === "bar" || spec.series.every((s) => s.values.every((v) => v === null || v >= 0)),
    };
    if (spec.unit === "%") Object.assign(y, { min: 0, max: 100 });
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      interaction: { mode: "index", intersect: false },
      // offset: the first and last points sit inside the plot, not on its edges.
      scales: { x: { offset: true, title: { display: true, text: spec.x_title } }, y },
      plugins: {
        legend: {
          display: spec.series.length > 1,
          position: "bottom",
          labels: {
            filter: (item, data) => !data.datasets[item.datasetIndex].band,
            usePointStyle: true,
            pointStyle: "line", // a short stroke: dashed for a series measured against the truth
            font: { size: 11 },
          },
        },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? `${spec.x_title}: ${items[0].label}` : ""),
            label: (item) => `${item.dataset.label}: ${formatted(item.parsed.y, spec.unit)}`,
          },
        },
      },
    };
  }

  for (const spec of JSON.parse(source.textContent)) {
    const canvas = document.getElementById(spec.id);
    if (!canvas) continue;
    new window.Chart(canvas, {
      type: spec.kind,
      data: { labels: spec.x, datasets: datasets(spec) },
      options: options(spec),
    });
  }
})();
