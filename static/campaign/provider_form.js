// The provider form (messages/admin_providers.py): only the fields of the chosen kind are shown.
// Without this script every kind's fields show, each under its kind's title; only the chosen one's are read.
(function () {
  "use strict";
  function update() {
    var select = document.getElementById("id_kind");
    if (!select) return;
    document.querySelectorAll("fieldset.provider-kind").forEach(function (fieldset) {
      fieldset.hidden = !fieldset.classList.contains("provider-kind-" + select.value);
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("id_kind");
    if (!select) return;
    select.addEventListener("change", update);
    update();
  });
})();
