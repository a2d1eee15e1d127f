// The prompts page: the spoken seconds of each path, updated as an admin types.
// The server counts them (POST /admin/prompts/budget, the form as typed, unsaved),
// exactly as publishing does; without this script the table shows the saved draft.
(function () {
  "use strict";
  var form = document.querySelector("form[data-budget-url]");
  var table = document.querySelector("table.budget-paths");
  var overText = document.querySelector(".over-text");
  if (!form || !table || !window.fetch) { return; }
  var timer = null;
  function refresh() {
    fetch(form.dataset.budgetUrl, {method: "POST", body: new FormData(form),
                                   credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (!answer || !answer.paths) { return; }
        answer.paths.forEach(function (path) {
          var row = table.querySelector('tr[data-path="' + CSS.escape(path.path) + '"]');
          if (!row) { return; }
          var cell = row.querySelector("td.seconds");
          cell.firstChild.nodeValue = path.seconds;
          row.classList.toggle("over", path.over);
          cell.querySelector(".over-mark").textContent =
            path.over ? " " + overText.textContent : "";
        });
      })
      .catch(function () { /* the figures stay as they were */ });
  }
  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  });
}());
