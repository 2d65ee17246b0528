// Fill the server fields from the chosen preset; the server applies the preset again on submit.
(function () {
  var select = document.getElementById("preset_id");
  if (!select) return;
  select.addEventListener("change", function () {
    var option = select.options[select.selectedIndex];
    ["imap", "smtp"].forEach(function (protocol) {
      ["host", "port", "security"].forEach(function (part) {
        var value = option.getAttribute("data-" + protocol + "-" + part);
        var field = document.getElementById(protocol + "_" + part);
        if (value !== null && field) field.value = value;
      });
    });
  });
})();
