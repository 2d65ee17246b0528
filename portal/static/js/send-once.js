// A second click on 送信 while the first send is still on its way would send the mail twice: ignore it.
(function () {
  document.querySelectorAll("form[data-send-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      var submitter = event.submitter;
      if (!submitter || submitter.value !== "send") return;  // inserting a template may be repeated
      if (form.dataset.sending === "1") {
        event.preventDefault();
        return;
      }
      form.dataset.sending = "1";
      submitter.classList.add("disabled");
      submitter.setAttribute("aria-disabled", "true");
    });
  });
})();
