// The IMAP/SMTP check can take several seconds: show that it is running, and ignore a second press that would
// start a second check (and a second link attempt) while the first is still on its way.
(function () {
  function busy(form, button) {
    form.dataset.checking = "1";
    button.classList.add("disabled");
    button.setAttribute("aria-disabled", "true");
    button.dataset.idleHtml = button.innerHTML;
    var spinner = document.createElement("span");
    spinner.className = "spinner-border spinner-border-sm me-1";
    spinner.setAttribute("aria-hidden", "true");
    button.replaceChildren(spinner, document.createTextNode(form.dataset.checkProgress));
    var status = form.querySelector("[data-check-status]");
    if (status) status.textContent = form.dataset.checkProgress;
  }

  document.querySelectorAll("form[data-check-progress]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.checking === "1") {
        event.preventDefault();
        return;
      }
      var button = event.submitter || form.querySelector("button[type=submit]");
      if (button) busy(form, button);
    });
  });

  // Coming back with the browser's back button restores the page as it was left: make the button usable again.
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) return;
    document.querySelectorAll("form[data-check-progress]").forEach(function (form) {
      form.dataset.checking = "";
      form.querySelectorAll("button[data-idle-html]").forEach(function (button) {
        button.innerHTML = button.dataset.idleHtml;
        button.classList.remove("disabled");
        button.removeAttribute("aria-disabled");
      });
    });
  });
})();
