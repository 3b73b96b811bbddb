// iamsweep report: filters and sorting for the findings. Optional: without JavaScript every
// row is shown, in report order (drift first). Makes no request of any kind.
(function () {
  "use strict";
  var table = document.getElementById("findings-table");
  var controls = document.getElementById("controls");
  if (!table || !controls) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.forEach(function (r, i) { r.dataset.order = i; });
  var q = document.getElementById("f-q");
  var kind = document.getElementById("f-kind");
  var action = document.getElementById("f-action");
  var owner = document.getElementById("f-owner");
  var drift = document.getElementById("f-drift");
  var shown = document.getElementById("shown");

  // The action filter offers the statuses present, in the order they first appear.
  var seen = {};
  rows.forEach(function (r) {
    var a = r.dataset.action;
    if (!seen[a]) {
      seen[a] = true;
      var o = document.createElement("option");
      o.value = a;
      o.textContent = a === "none" ? "no action" : a;
      action.appendChild(o);
    }
  });

  // The owner filter offers the owners present (the `owner_tag` values), sorted.
  var owners = {};
  rows.forEach(function (r) { if (r.dataset.owner) owners[r.dataset.owner] = true; });
  Object.keys(owners).sort().forEach(function (name) {
    var o = document.createElement("option");
    o.value = name;
    o.textContent = name;
    owner.appendChild(o);
  });

  // A filtered view can be shared: #q=alice&kind=redundant_direct&action=detached&drift=1
  function fromHash() {
    var h = location.hash.replace(/^#/, "");
    if (h.indexOf("=") < 0) return;
    h.split("&").forEach(function (part) {
      var kv = part.split("=");
      var v = decodeURIComponent((kv[1] || "").replace(/\+/g, " "));
      if (kv[0] === "q") q.value = v;
      if (kv[0] === "kind") kind.value = v;
      if (kv[0] === "action") action.value = v;
      if (kv[0] === "owner") owner.value = v;
      if (kv[0] === "drift") drift.checked = v === "1";
    });
  }

  function toHash() {
    var parts = [];
    if (q.value) parts.push("q=" + encodeURIComponent(q.value));
    if (kind.value) parts.push("kind=" + encodeURIComponent(kind.value));
    if (action.value) parts.push("action=" + encodeURIComponent(action.value));
    if (owner.value) parts.push("owner=" + encodeURIComponent(owner.value));
    if (drift.checked) parts.push("drift=1");
    if (history.replaceState) {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
    }
  }

  function apply() {
    var needle = q.value.trim().toLowerCase();
    var n = 0;
    rows.forEach(function (r) {
      var ok = (!needle || r.textContent.toLowerCase().indexOf(needle) >= 0) &&
        (!kind.value || r.dataset.kind === kind.value) &&
        (!action.value || r.dataset.action === action.value) &&
        (!owner.value || r.dataset.owner === owner.value) &&
        (!drift.checked || r.dataset.drift === "1");
      r.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = "Showing " + n + " of " + rows.length + " findings";
  }

  [q, kind, action, owner, drift].forEach(function (el) {
    el.addEventListener("input", function () { apply(); toHash(); });
    el.addEventListener("change", function () { apply(); toHash(); });
  });

  // Sortable columns: each header becomes a button (keyboard: Tab, then Enter or Space).
  function sortable(t) {
    var heads = t.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = th.textContent;
      b.setAttribute("aria-label", "Sort by " + th.textContent);
      th.textContent = "";
      th.appendChild(b);
      b.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir);
        var tb = t.tBodies[0];
        var list = Array.prototype.slice.call(tb.rows);
        var key = function (r) {
          var c = r.cells[col];
          return c ? (c.dataset.sort || c.textContent).trim() : "";
        };
        list.sort(function (a, b) {
          var x = key(a), y = key(b);
          var nx = Number(x), ny = Number(y);
          var d = (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny))
            ? nx - ny : x.localeCompare(y, undefined, { numeric: true });
          if (d === 0) d = a.dataset.order - b.dataset.order;
          return dir === "ascending" ? d : -d;
        });
        list.forEach(function (r) { tb.appendChild(r); });
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table[data-sortable]"), function (t, i) {
    if (!t.tHead) return;
    Array.prototype.forEach.call(t.tBodies[0].rows, function (r, j) {
      if (r.dataset.order === undefined) r.dataset.order = j;
    });
    sortable(t);
  });

  controls.hidden = false;
  fromHash();
  apply();
})();
