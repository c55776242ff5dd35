// beambridge console: live updates from the service's event stream (server-sent events).
// Messages arrive in batches (at most ten a second); each batch is applied in one animation frame, and a
// job's many events within a frame collapse to its newest state, so a page stays responsive at
// thousands of events per second.
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

  function flush() {
    scheduled = false;
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
        if (ev.from === "CREATED") created.push(ev.job_id);
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
