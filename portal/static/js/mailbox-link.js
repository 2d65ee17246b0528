// Fill the server fields from the chosen preset and lock them (the server applies the preset on submit);
// back to manual entry unlocks and clears them.
(function () {
  var select = document.getElementById("preset_id");
  if (!select) return;
  var parts = ["host", "port", "security"];
  function apply() {
    var option = select.options[select.selectedIndex];
    var manual = select.value === "";
    ["imap", "smtp"].forEach(function (protocol) {
      parts.forEach(function (part) {
        var field = document.getElementById(protocol + "_" + part);
        if (!field) return;
        var value = option.getAttribute("data-" + protocol + "-" + part);
        if (!manual && value !== null) field.value = value;
        if (manual && part === "host" && field.readOnly) field.value = "";
        field.readOnly = !manual;
        field.classList.toggle("bg-body-secondary", !manual);
        if (field.tagName === "SELECT") field.style.pointerEvents = manual ? "" : "none";
      });
    });
    var noAuth = document.getElementById("smtp_no_auth");
    if (noAuth && !manual) noAuth.checked = option.getAttribute("data-smtp-no-auth") === "1";
  }
  select.addEventListener("change", apply);
  if (select.value !== "") apply();
})();
