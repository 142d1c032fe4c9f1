/* The interactive run timeline of hpcpipe's report.html (hpcpipe/drivers/timeline_html.py).
 *
 * Self-contained: no library, no network. Reads the units from the JSON element with the
 * id hp-tl-data and draws one row per rank (and a last
 * row for the units blocked by a failed input, which never ran) on a canvas:
 *   - one colour per step; failed units cross-hatched in red with a red edge, units done or
 *     failed on a retry edged in black with a black corner, blocked units as orange diamonds;
 *   - mouse wheel (or the + and - buttons) zooms around the pointer, dragging pans, a
 *     double click (or "reset") shows the whole run;
 *   - hovering a unit shows its step, data id, rank, host, start, duration, state, attempts
 *     and error;
 *   - check boxes filter by step and by state; the search box finds data ids and zooms to
 *     them.
 * Every text from the data goes through textContent (never innerHTML).
 */
(function () {
  "use strict";
  var root = document.getElementById("hp-tl");
  if (!root) { return; }
  var data = JSON.parse(document.getElementById("hp-tl-data").textContent);
  var canvas = root.querySelector("canvas");
  var ctx = canvas.getContext("2d");
  var tip = root.querySelector(".hp-tl-tip");
  var status = root.querySelector(".hp-tl-status");
  var LABEL = 150, AXIS = 26, MARGIN = 8;
  var MARKS = {failed: "#d62728", blocked: "#ff7f0e", retried: "#000000"};

  // --- the rows and the units ----------------------------------------------------------
  var rows = data.ranks.map(function (r) {
    var host = data.hosts[String(r)] || "";
    return {label: "rank " + r + (host ? " \u00b7 " + host : ""), rank: r, units: []};
  });
  var blockedRow = null;
  var rowOfRank = {};
  rows.forEach(function (row, i) { rowOfRank[row.rank] = i; });
  var units = data.units.map(function (u, i) {
    return {i: i, step: u.s, key: u.k, rank: u.r, host: u.h, start: u.t,
            end: u.t + u.d, seconds: u.d, state: u.st, attempts: u.a, error: u.e,
            blocked: u.b === 1};
  });
  units.forEach(function (u) {
    if (u.blocked) {
      if (blockedRow === null) {
        blockedRow = rows.length;
        rows.push({label: "blocked (never ran)", rank: null, units: []});
      }
      u.row = blockedRow;
    } else {
      u.row = rowOfRank[u.rank];
    }
    rows[u.row].units.push(u);
  });
  rows.forEach(function (row) {
    row.units.sort(function (a, b) { return a.start - b.start; });
  });
  var span = Math.max(data.wall, 1e-3);
  var full = {t0: -0.01 * span, t1: span * 1.01};
  var view = {t0: full.t0, t1: full.t1};
  var hiddenSteps = {}, hiddenStates = {}, onlyRetried = false, found = null;
  var rowHeight = Math.max(6, Math.min(26, Math.floor(560 / Math.max(rows.length, 1))));

  function visible(u) {
    if (hiddenSteps[u.step] || hiddenStates[u.state]) { return false; }
    return !onlyRetried || u.attempts > 1;
  }

  // --- geometry ------------------------------------------------------------------------
  function plotWidth() { return Math.max(50, canvas.clientWidth - LABEL - MARGIN); }
  function xOf(t) { return LABEL + (t - view.t0) / (view.t1 - view.t0) * plotWidth(); }
  function tOf(x) { return view.t0 + (x - LABEL) / plotWidth() * (view.t1 - view.t0); }
  function yOf(row) { return AXIS + row * rowHeight; }

  function niceStep(range, target) {
    var raw = range / target, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= raw) { return steps[i] * power; }
    }
    return 10 * power;
  }

  function hatch(colour) {
    var tile = document.createElement("canvas");
    tile.width = tile.height = 6;
    var c = tile.getContext("2d");
    c.strokeStyle = colour;
    c.lineWidth = 1.2;
    c.beginPath();
    c.moveTo(0, 6); c.lineTo(6, 0); c.moveTo(0, 0); c.lineTo(6, 6);
    c.stroke();
    return ctx.createPattern(tile, "repeat");
  }
  var failedPattern = hatch(MARKS.failed);

  // --- drawing -------------------------------------------------------------------------
  function draw() {
    var dpr = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = AXIS + rows.length * rowHeight + MARGIN;
    canvas.style.height = height + "px";
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.font = "11px sans-serif";
    ctx.textBaseline = "middle";
    // rows
    rows.forEach(function (row, i) {
      ctx.fillStyle = i % 2 ? "#ffffff" : "#f3f3f3";
      ctx.fillRect(LABEL, yOf(i), plotWidth(), rowHeight);
      if (rowHeight >= 10 || i % Math.ceil(10 / rowHeight) === 0) {
        ctx.fillStyle = row.rank === null ? MARKS.blocked : "#333333";
        ctx.textAlign = "right";
        ctx.fillText(row.label.length > 24 ? row.label.slice(0, 23) + "\u2026" : row.label,
                     LABEL - 6, yOf(i) + rowHeight / 2);
      }
    });
    // time axis and grid
    var step = niceStep(view.t1 - view.t0, Math.max(2, plotWidth() / 90));
    ctx.textAlign = "center";
    ctx.strokeStyle = "#dddddd";
    ctx.fillStyle = "#333333";
    ctx.lineWidth = 1;
    for (var t = Math.ceil(view.t0 / step) * step; t <= view.t1; t += step) {
      var x = Math.round(xOf(t)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(x, AXIS - 4);
      ctx.lineTo(x, yOf(rows.length));
      ctx.stroke();
      var digits = step < 1 ? Math.min(6, Math.ceil(-Math.log10(step))) : 0;
      ctx.fillText(t.toFixed(digits) + " s", x, AXIS / 2 - 2);
    }
    // units
    ctx.save();
    ctx.beginPath();
    ctx.rect(LABEL, AXIS, plotWidth(), rows.length * rowHeight);
    ctx.clip();
    var shown = 0;
    units.forEach(function (u) {
      if (!visible(u)) { return; }
      var x0 = xOf(u.start), x1 = xOf(u.end);
      if (x1 < LABEL - 8 || x0 > LABEL + plotWidth() + 8) { return; }
      shown++;
      var y = yOf(u.row) + 2, h = rowHeight - 4;
      var colour = data.colours[u.step];
      if (u.blocked) {
        diamond(x0, y + h / 2, Math.max(3, h / 2), colour, MARKS.blocked);
        return;
      }
      var w = Math.max(1, x1 - x0);
      ctx.fillStyle = colour;
      ctx.fillRect(x0, y, w, h);
      if (u.state === "failed") {
        ctx.fillStyle = failedPattern;
        ctx.fillRect(x0, y, w, h);
        ctx.strokeStyle = MARKS.failed;
        ctx.lineWidth = 2;
        ctx.strokeRect(x0 + 1, y + 1, Math.max(w - 2, 0.5), h - 2);
      }
      if (u.attempts > 1) {
        ctx.strokeStyle = MARKS.retried;
        ctx.lineWidth = 1;
        ctx.strokeRect(x0 + 0.5, y + 0.5, Math.max(w - 1, 0.5), h - 1);
        ctx.fillStyle = MARKS.retried;
        ctx.beginPath();
        ctx.moveTo(x0, y); ctx.lineTo(x0 + Math.min(7, h / 2), y); ctx.lineTo(x0, y + Math.min(7, h / 2));
        ctx.fill();
      }
      if (found !== null && found[u.i]) {
        ctx.strokeStyle = "#1f1fff";
        ctx.lineWidth = 2;
        ctx.strokeRect(x0 - 2, y - 2, w + 4, h + 4);
      }
    });
    ctx.restore();
    status.textContent = shown + " of " + units.length + " units in view, " +
        Math.max(view.t0, 0).toFixed(2) + " s to " + Math.min(view.t1, span).toFixed(2) +
        " s of " + span.toFixed(2) + " s";
  }

  function diamond(x, y, r, fill, edge) {
    ctx.beginPath();
    ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y);
    ctx.closePath();
    ctx.fillStyle = fill;
    ctx.fill();
    ctx.strokeStyle = edge;
    ctx.lineWidth = 2;
    ctx.stroke();
  }

  // --- hovering ------------------------------------------------------------------------
  function unitAt(x, y) {
    var row = Math.floor((y - AXIS) / rowHeight);
    if (row < 0 || row >= rows.length || x < LABEL) { return null; }
    var best = null, bestDistance = 4;  // pixels: narrow bars and diamonds are reachable
    rows[row].units.forEach(function (u) {
      if (!visible(u)) { return; }
      var x0 = xOf(u.start), x1 = u.blocked ? x0 : Math.max(xOf(u.end), x0 + 1);
      var distance = x < x0 ? x0 - x : (x > x1 ? x - x1 : 0);
      if (u.blocked) { distance = Math.max(0, distance - rowHeight / 2); }
      if (distance < bestDistance) {
        best = u;
        bestDistance = distance;
      }
    });
    return best;
  }

  function line(label, value, cls) {
    var div = document.createElement("div");
    var b = document.createElement("b");
    b.textContent = label + ": ";
    div.appendChild(b);
    var text = document.createElement("span");
    text.textContent = value;
    if (cls) { text.className = cls; }
    div.appendChild(text);
    tip.appendChild(div);
  }

  function showTip(u, clientX, clientY) {
    tip.textContent = "";
    line("step", data.steps[u.step]);
    line("data id", u.key, "hp-tl-key");
    if (u.blocked) {
      line("rank", "none (never ran)");
      line("blocked at", u.start.toFixed(3) + " s (when its input failed)");
    } else {
      line("rank", String(u.rank));
      line("host", u.host);
      line("start", u.start.toFixed(3) + " s");
      line("duration", u.seconds.toFixed(3) + " s");
    }
    line("state", u.state + (u.attempts > 1 ? " (on attempt " + u.attempts + ")" : ""));
    line("attempts", String(u.attempts));
    if (u.error) { line("error", u.error, "hp-tl-error"); }
    tip.style.display = "block";
    var w = tip.offsetWidth, h = tip.offsetHeight;
    var left = clientX + 14, top = clientY + 14;
    if (left + w > window.innerWidth - 4) { left = Math.max(4, clientX - w - 14); }
    if (top + h > window.innerHeight - 4) { top = Math.max(4, clientY - h - 14); }
    tip.style.left = left + "px";
    tip.style.top = top + "px";
  }

  function hideTip() { tip.style.display = "none"; }

  // --- zoom and pan --------------------------------------------------------------------
  function zoom(factor, about) {
    var range = (view.t1 - view.t0) * factor;
    range = Math.min(Math.max(range, 1e-4), (full.t1 - full.t0) * 4);
    var frac = (about - view.t0) / (view.t1 - view.t0);
    view.t0 = about - frac * range;
    view.t1 = view.t0 + range;
    draw();
  }

  function local(event) {
    var box = canvas.getBoundingClientRect();
    return {x: event.clientX - box.left, y: event.clientY - box.top};
  }

  var drag = null;
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    var p = local(event);
    zoom(event.deltaY > 0 ? 1.25 : 0.8, tOf(Math.max(p.x, LABEL)));
  }, {passive: false});
  canvas.addEventListener("mousedown", function (event) {
    drag = {x: local(event).x, t0: view.t0, t1: view.t1};
    canvas.style.cursor = "grabbing";
  });
  window.addEventListener("mouseup", function () {
    drag = null;
    canvas.style.cursor = "crosshair";
  });
  canvas.addEventListener("mousemove", function (event) {
    var p = local(event);
    if (drag !== null) {
      var dt = (p.x - drag.x) / plotWidth() * (drag.t1 - drag.t0);
      view.t0 = drag.t0 - dt;
      view.t1 = drag.t1 - dt;
      hideTip();
      draw();
      return;
    }
    var u = unitAt(p.x, p.y);
    if (u === null) { hideTip(); } else { showTip(u, event.clientX, event.clientY); }
  });
  canvas.addEventListener("mouseleave", hideTip);
  canvas.addEventListener("dblclick", function () { reset(); });

  function reset() {
    view.t0 = full.t0;
    view.t1 = full.t1;
    draw();
  }

  // --- controls ------------------------------------------------------------------------
  function button(name, action) {
    root.querySelector("[data-action='" + name + "']").addEventListener("click", action);
  }
  button("zoom-in", function () { zoom(0.5, (view.t0 + view.t1) / 2); });
  button("zoom-out", function () { zoom(2, (view.t0 + view.t1) / 2); });
  button("reset", reset);

  function counts(field) {
    var out = {};
    units.forEach(function (u) { out[u[field]] = (out[u[field]] || 0) + 1; });
    return out;
  }

  function checkbox(container, text, swatch, onChange) {
    var label = document.createElement("label");
    var box = document.createElement("input");
    box.type = "checkbox";
    box.checked = true;
    box.addEventListener("change", function () { onChange(box.checked); draw(); });
    label.appendChild(box);
    label.appendChild(swatch);
    label.appendChild(document.createTextNode(text));
    container.appendChild(label);
    return box;
  }

  function swatch(style) {
    var s = document.createElement("span");
    s.className = "hp-tl-swatch";
    Object.keys(style).forEach(function (k) { s.style[k] = style[k]; });
    return s;
  }

  var stepCounts = counts("step");
  var stepBox = root.querySelector(".hp-tl-steps");
  data.steps.forEach(function (name, i) {
    checkbox(stepBox, name + " (" + (stepCounts[i] || 0) + ")",
             swatch({background: data.colours[i]}),
             function (on) { hiddenSteps[i] = !on; });
  });
  var stateCounts = counts("state");
  var stateBox = root.querySelector(".hp-tl-states");
  var stateStyles = {
    done: {background: "#cccccc"},
    failed: {background: "repeating-linear-gradient(45deg, #d62728 0 2px, #ffffff 2px 4px)",
             border: "2px solid #d62728"},
    blocked: {background: "#ffffff", border: "2px solid #ff7f0e", transform: "rotate(45deg)"},
    running: {background: "#1f77b4"},
    pending: {background: "#eeeeee"}
  };
  Object.keys(stateCounts).sort().forEach(function (state) {
    checkbox(stateBox, state + " (" + stateCounts[state] + ")",
             swatch(stateStyles[state] || {background: "#cccccc"}),
             function (on) { hiddenStates[state] = !on; });
  });
  var retried = units.filter(function (u) { return u.attempts > 1; }).length;
  if (retried) {
    var only = checkbox(stateBox, "only retried (" + retried + ")",
                        swatch({background: "#ffffff", border: "2px solid #000000"}),
                        function (on) { onlyRetried = on; });
    only.checked = false;
  }
  if (data.skipped) {
    var note = document.createElement("span");
    note.textContent = data.skipped + " unit(s) skipped (done by an earlier run), not drawn";
    stateBox.appendChild(note);
  }

  // --- finding data ids ------------------------------------------------------------------
  var search = root.querySelector(".hp-tl-search");
  search.addEventListener("input", function () {
    var text = search.value.trim();
    if (!text) { found = null; draw(); return; }
    found = {};
    var hits = units.filter(function (u) { return u.key.indexOf(text) >= 0 && visible(u); });
    hits.forEach(function (u) { found[u.i] = true; });
    if (hits.length) {
      var t0 = Math.min.apply(null, hits.map(function (u) { return u.start; }));
      var t1 = Math.max.apply(null, hits.map(function (u) { return u.end; }));
      var pad = Math.max((t1 - t0) * 0.1, span * 0.01);
      view.t0 = t0 - pad;
      view.t1 = t1 + pad;
    }
    draw();
  });

  /* The page coordinates of the middle of the first visible unit whose data id is `key`
   * (null if none is in view): what the search box highlights, and what a browser test
   * points the mouse at. */
  function locate(key) {
    for (var i = 0; i < units.length; i++) {
      var u = units[i];
      if (u.key !== key || !visible(u)) { continue; }
      var box = canvas.getBoundingClientRect();
      var x0 = xOf(u.start), x1 = u.blocked ? x0 : Math.max(xOf(u.end), x0 + 1);
      var x = (x0 + x1) / 2;
      if (x < LABEL || x > LABEL + plotWidth()) { return null; }
      return {x: box.left + x, y: box.top + yOf(u.row) + rowHeight / 2};
    }
    return null;
  }

  window.hpcpipeTimeline = {locate: locate, view: view, reset: reset, zoom: zoom};
  window.addEventListener("resize", draw);
  draw();
})();
