"use strict";
// Sortable leaderboard tables, no dependencies (the site works offline).
// Click a column header's button to sort by it: metric columns start with the better values,
// text columns A-Z; a second click reverses. Missing values (empty data-value) always go last.
(function () {
  function key(cell, type) {
    var raw = cell.getAttribute("data-value");
    if (raw === null || raw === "") return null;
    if (type === "number") {
      var n = Number(raw);
      return Number.isFinite(n) ? n : null;
    }
    return raw;
  }

  function compare(a, b, type) {
    if (type === "number") return a < b ? -1 : a > b ? 1 : 0;
    return a.localeCompare(b, undefined, { sensitivity: "base", numeric: true });
  }

  function sortTable(table, col, th) {
    var type = th.getAttribute("data-type") || "text";
    var current = th.getAttribute("aria-sort");
    var dir;
    if (current === "ascending") dir = "descending";
    else if (current === "descending") dir = "ascending";
    else dir = th.getAttribute("data-better") === "higher" ? "descending" : "ascending";
    var tbody = table.tBodies[0];
    var rows = Array.prototype.slice.call(tbody.rows);
    rows.sort(function (ra, rb) {
      var a = key(ra.cells[col], type);
      var b = key(rb.cells[col], type);
      if (a === null && b === null) return 0;
      if (a === null) return 1;
      if (b === null) return -1;
      var c = compare(a, b, type);
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { tbody.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (h) {
      h.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", dir);
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("table.sortable").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, col) {
        var button = th.querySelector("button");
        if (button) button.addEventListener("click", function () { sortTable(table, col, th); });
      });
    });
  });
})();
