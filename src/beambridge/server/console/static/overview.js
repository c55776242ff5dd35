// beambridge console: the throughput chart of the overview and throughput pages (uPlot, shipped with the
// package). window.bbThroughput.draw(chart) redraws it with new figures (live.js calls it).
(function () {
  "use strict";
  var holder = document.getElementById("throughput-chart");
  var source = document.getElementById("throughput-data");
  if (!holder || !source || !window.uPlot) return;
  var palette = ["#0969da", "#2da44e", "#bf8700", "#8250df", "#cf222e", "#1b7c83"];
  var plot = null;
  var drawn = "";

  function draw(chart) {
    var names = Object.keys(chart.series);
    var empty = document.getElementById("throughput-empty");
    if (empty) empty.hidden = names.length > 0;
    var n = names.length ? chart.series[names[0]].length : 0;
    var xs = [];
    for (var i = 0; i < n; i++) xs.push(chart.start + (i + 0.5) * chart.bucket_s);
    var data = [xs].concat(names.map(function (name) { return chart.series[name]; }));
    if (plot && names.join("\n") === drawn) {
      plot.setData(data);
      return;
    }
    if (plot) plot.destroy();
    plot = null;
    drawn = names.join("\n");
    if (!names.length) return;
    var series = [{}].concat(names.map(function (name, k) {
      return { label: name, stroke: palette[k % palette.length], width: 2 };
    }));
    var width = Math.max(280, holder.clientWidth);
    plot = new uPlot({ width: width, height: 260, series: series, axes: [{}, { label: "jobs / min" }] }, data, holder);
  }

  draw(JSON.parse(source.textContent));
  window.bbThroughput = { draw: draw };
})();
