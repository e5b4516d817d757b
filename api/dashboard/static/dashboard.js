// Shopfloor dashboard: draws the ECharts charts whose data the server put in the page, and redraws them after
// htmx swaps in a refreshed view. Everything else (pages, tables, refresh) is server-rendered HTML.
(function () {
  "use strict";

  var STATE_COLORS = {
    running: "#2e9d46", idle: "#e0b000", down: "#d13438", setup: "#3a7bd5",
    planned_stop: "#8a8f98", not_reporting: "#5c2d91", unknown: "#d0d4da"
  };

  function messages() {
    var el = document.getElementById("i18n");
    return el ? JSON.parse(el.textContent) : {};
  }

  function source(el) {
    var s = document.getElementById(el.dataset.source);
    return s ? JSON.parse(s.textContent) : null;
  }

  function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + " %"; }

  function lang() { return document.body.dataset.lang === "zh" ? "ZH" : "EN"; }

  // Networking rate by hour, with the Guangdong 75 % line.
  function networking(chart, data, t) {
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis", valueFormatter: pct },
      xAxis: { type: "category", data: data.x.map(function (x) { return x.slice(5, 16).replace("T", " "); }) },
      yAxis: { type: "value", min: 0, max: 1, axisLabel: { formatter: pct } },
      series: [{
        name: t.nw_rate, type: "line", step: "end", data: data.rate, connectNulls: false,
        markLine: { symbol: "none", lineStyle: { color: "#d13438", type: "dashed" },
                    label: { formatter: t.nw_threshold }, data: [{ yAxis: data.threshold }] }
      }]
    });
  }

  // KPI trend lines: a NULL bucket is a gap (never drawn as zero); hovering shows why it is empty.
  function trend(chart, data, t, el) {
    var kpis = el.dataset.kpis.split(",");
    var asPct = el.dataset.percent === "1";
    var fmt = asPct ? pct : function (v) { return v === null || v === undefined ? "—" : v.toFixed(3); };
    chart.setOption({
      animation: false,
      legend: { top: 0 },
      tooltip: {
        trigger: "axis",
        formatter: function (items) {
          var i = items[0].dataIndex, out = [items[0].axisValue];
          kpis.forEach(function (k) {
            var s = data.series[k], v = s.values[i];
            out.push(s.name + ": " + (v === null ? t.tr_gap + " (" + (s.reasons[i] || "") + ")" : fmt(v)));
          });
          return out.join("<br>");
        }
      },
      xAxis: { type: "category", data: data.x },
      yAxis: { type: "value", axisLabel: { formatter: fmt } },
      series: kpis.map(function (k) {
        return { name: data.series[k].name, type: "line", data: data.series[k].values, connectNulls: false,
                 showSymbol: data.x.length < 60 };
      })
    });
  }

  // Downtime Pareto: bars by cause, cumulative share as a line on the right axis.
  function pareto(chart, data, t) {
    var longest = data.length ? data[0][1] : 0;
    var unit = longest >= 7200 ? 3600 : 60;  // hours for long losses, minutes for short ones
    var unitName = unit === 3600 ? t.ls_hours : t.ls_minutes;
    chart.setOption({
      animation: false,
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      xAxis: { type: "category", data: data.map(function (d) { return t["loss_" + d[0]] || t["ls_" + d[0]] || d[0]; }) },
      yAxis: [{ type: "value", name: unitName }, { type: "value", min: 0, max: 1, axisLabel: { formatter: pct } }],
      series: [
        { name: unitName, type: "bar", data: data.map(function (d) { return +(d[1] / unit).toFixed(2); }) },
        { name: t.ls_cumulative, type: "line", yAxisIndex: 1, data: data.map(function (d) { return d[2]; }),
          tooltip: { valueFormatter: pct } }
      ]
    });
  }

  // State timeline per machine for one day: an ECharts custom series drawing one rectangle per interval;
  // a rectangle is at least one pixel wide so that micro-stops stay visible.
  function gantt(chart, data, t) {
    var items = [], first = Infinity, last = -Infinity;
    data.rows.forEach(function (row, i) {
      row.intervals.forEach(function (iv) {
        var a = Date.parse(iv[0]), b = Date.parse(iv[1]);
        first = Math.min(first, a);
        last = Math.max(last, b);
        items.push({ value: [i, a, b, iv[2]], itemStyle: { color: STATE_COLORS[iv[2]] || "#999" } });
      });
    });
    // open on the part of the day that has data (zoom out with the slider or the mouse wheel)
    var from = Date.parse(data.start), to = Date.parse(data.end);
    if (items.length) {
      var pad = Math.max((last - first) * 0.05, 60000);
      from = Math.max(from, first - pad);
      to = Math.min(to, last + pad);
    }
    chart.setOption({
      animation: false,
      tooltip: {
        formatter: function (p) {
          var v = p.value, s = Math.round((v[2] - v[1]) / 1000);
          return data.machines[v[0]] + "<br>" + (t["state_" + v[3]] || v[3]) + ": " +
            new Date(v[1]).toLocaleTimeString() + " – " + new Date(v[2]).toLocaleTimeString() + " (" + s + " s)";
        }
      },
      grid: { left: 110, right: 20, top: 10, bottom: 40 },
      xAxis: { type: "time", min: Date.parse(data.start), max: Date.parse(data.end) },
      yAxis: { type: "category", data: data.machines, inverse: true },
      dataZoom: [{ type: "inside", xAxisIndex: 0, filterMode: "weakFilter", startValue: from, endValue: to },
                 { type: "slider", xAxisIndex: 0, height: 16, bottom: 4, startValue: from, endValue: to }],
      series: [{
        type: "custom", encode: { x: [1, 2], y: 0 }, data: items,
        renderItem: function (params, api) {
          var start = api.coord([api.value(1), api.value(0)]);
          var end = api.coord([api.value(2), api.value(0)]);
          var h = api.size([0, 1])[1] * 0.6;
          var rect = echarts.graphic.clipRectByRect(
            { x: start[0], y: start[1] - h / 2, width: Math.max(end[0] - start[0], 1), height: h },
            { x: params.coordSys.x, y: params.coordSys.y, width: params.coordSys.width, height: params.coordSys.height });
          return rect && { type: "rect", shape: rect, style: api.style() };
        }
      }]
    });
  }

  // Tier readiness: build an evidence pack through the API (the signed-in cookie is the credential) and offer it.
  function evidence(button) {
    var t = messages(), out = document.getElementById("evidence-result");
    button.disabled = true;
    out.textContent = t.ti_building;
    fetch("/api/v1/evidence", {
      method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
      body: button.dataset.request
    }).then(function (r) {
      return r.json().then(function (body) { return { ok: r.ok, body: body }; });
    }).then(function (res) {
      button.disabled = false;
      if (!res.ok) { out.textContent = t.ti_failed + ": " + (res.body.detail || ""); return; }
      out.textContent = "";
      var a = document.createElement("a");
      a.id = "evidence-download";
      a.href = res.body.download;
      a.textContent = t.ti_download + " #" + res.body.id + " (sha256 " + res.body.sha256.slice(0, 12) + "…)";
      out.appendChild(a);
    }).catch(function (err) {
      button.disabled = false;
      out.textContent = t.ti_failed + ": " + err;
    });
  }

  document.addEventListener("click", function (e) {
    if (e.target && e.target.id === "evidence-build") { evidence(e.target); }
  });

  var DRAW = { networking: networking, trend: trend, pareto: pareto, gantt: gantt };

  function draw(root) {
    if (typeof echarts === "undefined") { return; }
    var t = messages();
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var data = source(el);
      if (!data) { return; }
      var old = echarts.getInstanceByDom(el);
      if (old) { old.dispose(); }
      var chart = echarts.init(el, null, { locale: lang(), renderer: "canvas" });
      DRAW[el.dataset.chart](chart, data, t, el);
      el.dataset.drawn = "1";
    });
  }

  document.addEventListener("DOMContentLoaded", function () { draw(document); });
  document.addEventListener("htmx:after:swap", function () { draw(document); });
  window.addEventListener("resize", function () {
    if (typeof echarts === "undefined") { return; }
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var c = echarts.getInstanceByDom(el);
      if (c) { c.resize(); }
    });
  });
})();
