(function () {
  "use strict";
  var search = document.getElementById("row-search");
  var outcome = document.getElementById("row-outcome");
  var shown = document.getElementById("rows-shown");
  var table = document.getElementById("rows");
  if (!search || !outcome || !table) { return; }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var texts = rows.map(function (row) { return row.textContent.toLowerCase(); });
  function apply() {
    var words = search.value.trim().toLowerCase();
    var kind = outcome.value;
    var count = 0;
    for (var i = 0; i < rows.length; i++) {
      var keep = (!kind || rows[i].getAttribute("data-outcome") === kind) &&
        (!words || texts[i].indexOf(words) !== -1);
      rows[i].hidden = !keep;
      if (keep) { count++; }
    }
    shown.textContent = String(count);
  }
  search.addEventListener("input", apply);
  outcome.addEventListener("change", apply);
  apply();
}());
