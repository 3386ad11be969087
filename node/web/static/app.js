// motcua node: small progressive enhancements; every page works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // Choosing a procedure reloads the form with its checklist (the button does the same without JS).
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { if (select.value) { select.form.submit(); } });
  });
  // Keep the due-date preview current while the form is open (the 15:00 rule moves it).
  var due = document.querySelector("[data-preview]");
  if (due) {
    var refresh = function () {
      fetch(due.getAttribute("data-preview"), { headers: { "Accept": "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (data) { document.getElementById("han-tra-gia-tri").textContent = data.due_long; }
        })
        .catch(function () { /* the server-rendered value stays */ });
    };
    setInterval(refresh, 60000);
  }
  // Move focus to the error summary so keyboard and screen-reader users land on it.
  var summary = document.getElementById("tom-tat-loi");
  if (summary) { summary.focus(); }
});
