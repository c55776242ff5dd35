// beambridge console: the overview's throughput chart (uPlot, shipped with the package).
(function () {
  "use strict";
  var holder = document.getElementById("throughput-chart");
  var source = document.getElementById("throughput-data");
  if (!holder || !source || !window.uPlot) return;
  var chart = JSON.parse(source.textContent);
  var names = Object.keys(chart.series);
  if (!names.length) return;
  var n = chart.series[names[0]].length;
  var xs = [];
  for (var i = 0; i < n; i++) xs.push(chart.start + (i + 0.5) * chart.bucket_s);
  var palette = ["#0969da", "#2da44e", "#bf8700", "#8250df", "#cf222e", "#1b7c83"];
  var series = [{}].concat(names.map(function (name, k) {
    return { label: name, stroke: palette[k % palette.length], width: 2 };
  }));
  var data = [xs].concat(names.map(function (name) { return chart.series[name]; }));
  var width = Math.max(280, holder.clientWidth);
  new uPlot({ width: width, height: 260, series: series, axes: [{}, { label: "jobs / min" }] }, data, holder);
})();
