// The overview's 7-day chart: instances received and sent per hour (uPlot), refreshed every
// five minutes from the overview_chart JSON route.
(function () {
  "use strict";

  var REFRESH_MS = 5 * 60 * 1000;
  var chart = null;

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  // 24-hour clock; the date at midnight (the browser's time zone).
  function tick(ts) {
    var d = new Date(ts * 1000);
    if (d.getHours() === 0) {
      return d.getDate() + " " + MONTHS[d.getMonth()];
    }
    return pad(d.getHours()) + ":00";
  }

  function when(ts) {
    var d = new Date(ts * 1000);
    return d.getDate() + " " + MONTHS[d.getMonth()] + " " + pad(d.getHours()) + ":00";
  }

  function size(element) {
    return { width: Math.max(320, element.clientWidth), height: 260 };
  }

  function draw(element, data) {
    var columns = [data.x, data.received, data.dispatched];
    if (chart) {
      chart.setData(columns);
      return;
    }
    element.textContent = "";
    var dims = size(element);
    chart = new uPlot(
      {
        width: dims.width,
        height: dims.height,
        cursor: { drag: { x: true, y: false } },
        scales: { y: { range: function (u, min, max) { return [0, Math.max(10, max)]; } } },
        axes: [
          { values: function (u, splits) { return splits.map(tick); }, space: 60 },
          { label: "instances / hour", size: 70 },
        ],
        series: [
          { value: function (u, ts) { return ts == null ? "--" : when(ts); } },
          { label: "received", stroke: "#1f6feb", width: 2, fill: "rgba(31,111,235,0.08)" },
          { label: "sent", stroke: "#1a7f37", width: 2 },
        ],
      },
      columns,
      element
    );
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        chart.setSize(size(element));
      }).observe(element);
    }
  }

  function load(element) {
    fetch(element.dataset.src, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "X-Mercure-Poll": "1" },
    })
      .then(function (response) {
        if (response.status === 401) {
          window.location.assign(element.dataset.login + "?ended=1");
          return null;
        }
        return response.json();
      })
      .then(function (data) {
        if (!data) {
          return;
        }
        if (data.error) {
          if (!chart) {
            element.textContent = "Chart not available: " + data.error;
          }
          return;
        }
        draw(element, data);
      })
      .catch(function () {
        if (window.mercure) {
          window.mercure.connection(false);
        }
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var element = document.getElementById("throughput-chart");
    if (!element || typeof uPlot === "undefined") {
      return;
    }
    load(element);
    window.setInterval(function () {
      load(element);
    }, REFRESH_MS);
  });
})();
