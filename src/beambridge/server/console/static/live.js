// beambridge console: live updates from the service's event stream (server-sent events).
// Messages arrive in batches (at most ten a second); each batch is applied in one animation frame, and a
// job's many events within a frame collapse to its newest state, so a page stays responsive at
// thousands of events per second. The overview and throughput pages ("figures") do not count events
// themselves: a batch tells them something changed, and they fetch their figures again (one fetch at a
// time, at most one a second, and never more often than four times as long as the last one took).
(function () {
  "use strict";
  var root = document.querySelector("[data-live]");
  if (!root || !window.EventSource) return;
  var kind = root.getAttribute("data-live");
  var jobId = Number(root.getAttribute("data-live-job") || 0);
  var status = document.getElementById("live-status");
  var latest = new Map(); // job id -> newest event of the pending batch
  var timeline = []; // events of this job (job page)
  var created = []; // jobs created in the pending batch
  var unseen = new Set(); // jobs created since the page was drawn (jobs page)
  var scheduled = false;
  var figuresUrl = root.getAttribute("data-live-figures");
  var figures = { fetching: false, dirty: false, last: 0, cost: 0, timer: null };
  var live = (window.bbLive = { applied: 0, lastEventId: Number(root.getAttribute("data-live-after")), lastAppliedAt: 0 });

  function setStatus(text, cls) {
    if (!status) return;
    status.hidden = false;
    status.textContent = text;
    status.className = "live-status " + cls;
  }

  function when(iso) {
    return iso.replace("T", " ").slice(0, 19);
  }

  function paintState(el, state) {
    el.textContent = state;
    el.className = "state s-" + state + " flash";
    setTimeout(function () { el.classList.remove("flash"); }, 800);
  }

  function applyJobs() {
    var table = root.querySelector("tbody");
    latest.forEach(function (ev, id) {
      var row = table.querySelector('tr[data-job-id="' + id + '"]');
      if (!row) return;
      paintState(row.querySelector("[data-state]"), ev.to);
      row.querySelector("[data-updated]").textContent = when(ev.at);
      var reason = row.querySelector("[data-reason]");
      if (reason && ev.reason && /FAILED|RUN_ERROR|RUN_TIMEOUT|KILLED/.test(ev.to)) reason.textContent = ev.reason;
    });
    created.forEach(function (id) {
      if (!table.querySelector('tr[data-job-id="' + id + '"]')) unseen.add(id);
    });
    created = [];
    var banner = document.getElementById("live-new");
    if (banner && unseen.size) {
      banner.hidden = false;
      banner.querySelector("[data-count]").textContent = String(unseen.size);
    }
  }

  function applyJob() {
    var ev = latest.get(jobId);
    if (ev) paintState(document.getElementById("job-state"), ev.to);
    var body = root.querySelector("tbody");
    timeline.forEach(function (e) {
      var tr = document.createElement("tr");
      var cells = [when(e.at), null, "", e.reason || ""];
      cells.forEach(function (text, i) {
        var td = document.createElement("td");
        if (i === 1) {
          var a = document.createElement("span"), b = document.createElement("span");
          a.className = "state s-" + e.from; a.textContent = e.from;
          b.className = "state s-" + e.to; b.textContent = e.to;
          td.append(a, " → ", b);
        } else {
          td.textContent = text;
        }
        if (i === 0) td.className = "when";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    timeline = [];
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 1) return (seconds * 1000).toFixed(0) + " ms";
    if (seconds < 120) return seconds.toFixed(1) + " s";
    if (seconds < 7200) return (seconds / 60).toFixed(1) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function text(selector, value) {
    var el = document.querySelector(selector);
    if (el) el.textContent = String(value);
  }

  function paintFigures(f) {
    if (f.funnel) {
      var most = Math.max.apply(null, f.funnel.map(function (s) { return s[1]; }).concat([1]));
      f.funnel.forEach(function (s) {
        var width = s[1] ? Math.round((s[1] / most) * 2500) / 10 : 0;
        var count = root.querySelector('[data-stage="' + s[0] + '"]');
        var bar = root.querySelector('[data-bar="' + s[0] + '"]');
        if (count) { count.textContent = String(s[1]); count.setAttribute("x", String(100 + width)); }
        if (bar) bar.setAttribute("width", String(width));
      });
      text("#funnel-total", f.total);
    }
    var banner = document.getElementById("failures-banner");
    if (banner && f.failures_recent !== undefined) {
      banner.hidden = !f.failures_recent;
      text("#failures-count", f.failures_recent + (f.failures_recent === 1 ? " failure" : " failures") + " in the last hour");
      var list = banner.querySelector("ul");
      list.textContent = "";
      f.top_reasons.forEach(function (r) {
        var li = document.createElement("li");
        li.textContent = r[1] + " × " + r[0];
        list.appendChild(li);
      });
    }
    if (f.finished !== undefined) text("#finished-count", f.finished);
    var body = document.querySelector("#stage-times tbody");
    if (body && f.stages) {
      body.textContent = "";
      f.stages.forEach(function (s) {
        var tr = document.createElement("tr");
        [s.name, duration(s.median), duration(s.p95), String(s.count)].forEach(function (value) {
          var td = document.createElement("td");
          td.textContent = value;
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
    if (window.bbThroughput) window.bbThroughput.draw(f.chart);
  }

  function refreshFigures() {
    figures.dirty = true;
    if (figures.fetching || figures.timer) return;
    var wait = Math.max(1000, 4 * figures.cost) - (Date.now() - figures.last);
    if (wait > 0) {
      figures.timer = setTimeout(function () { figures.timer = null; refreshFigures(); }, wait);
      return;
    }
    figures.dirty = false;
    figures.fetching = true;
    figures.last = Date.now();
    fetch(figuresUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("figures: " + response.status);
        return response.json();
      })
      .then(function (f) {
        figures.cost = Date.now() - figures.last;
        requestAnimationFrame(function () {
          paintFigures(f);
          live.lastAppliedAt = Date.now();
          live.applied += 1;
        });
      })
      .catch(function () { setStatus("○ figures not updated", "off"); })
      .then(function () {
        figures.fetching = false;
        if (figures.dirty) refreshFigures();
      });
  }

  function flush() {
    scheduled = false;
    if (kind === "figures") {
      latest.clear();
      refreshFigures();
      return;
    }
    if (kind === "jobs") applyJobs(); else applyJob();
    latest.clear();
    live.lastAppliedAt = Date.now();
    live.applied += 1;
  }

  function connect() {
    var source = new EventSource("/ui/live/events?after=" + live.lastEventId);
    source.onopen = function () { setStatus("● live", "on"); };
    source.onerror = function () { setStatus("○ reconnecting", "off"); };
    source.addEventListener("refused", function (e) {
      setStatus("○ " + JSON.parse(e.data), "off");
      source.close();
    });
    source.addEventListener("events", function (e) {
      var batch = JSON.parse(e.data);
      batch.forEach(function (ev) {
        if (kind === "job" && ev.job_id !== jobId) return;
        latest.set(ev.job_id, ev);
        if (kind === "jobs" && ev.from === "CREATED") created.push(ev.job_id);
        if (kind === "job") timeline.push(ev);
      });
      live.lastEventId = batch[batch.length - 1].id;
      if (!scheduled) {
        scheduled = true;
        requestAnimationFrame(flush);
      }
    });
  }
  connect();
})();
