// The preset form: show the OAuth2 fields for OAuth2, the chosen provider's fields and how-to, and fill in
// Microsoft 365's or Google Workspace's servers when the provider is chosen (the server fills empty ones too).
(function () {
  var form = document.getElementById("preset-form");
  if (!form) return;
  var method = document.getElementById("auth_method");
  var provider = document.getElementById("oauth_provider");
  var oauthFields = document.getElementById("oauth-fields");
  var serverNote = document.getElementById("server-note");
  var parts = ["host", "port", "security"];

  function fillServers(onlyEmpty) {
    var option = provider.options[provider.selectedIndex];
    ["imap", "smtp"].forEach(function (protocol) {
      var host = document.getElementById(protocol + "_host");
      if (!option.hasAttribute("data-" + protocol + "-host")) return;
      if (onlyEmpty && host && host.value.trim() !== "") return;
      parts.forEach(function (part) {
        var field = document.getElementById(protocol + "_" + part);
        if (field) field.value = option.getAttribute("data-" + protocol + "-" + part);
      });
    });
  }

  function show() {
    var oauth = method.value === "oauth2";
    oauthFields.hidden = !oauth;
    form.querySelectorAll("[data-for-provider]").forEach(function (block) {
      block.hidden = block.getAttribute("data-for-provider").split(" ").indexOf(provider.value) === -1;
    });
    if (serverNote) serverNote.hidden = !oauth || provider.value === "oidc";
  }

  method.addEventListener("change", function () {
    show();
    if (method.value === "oauth2") fillServers(true);
  });
  provider.addEventListener("change", function () {
    show();
    fillServers(false);
  });
  show();
})();
