// Billing pages: the card form (Stripe.js card Element + confirmCardSetup) and the print button.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-print]")) window.print();
  });

  var form = document.getElementById("card-form");
  if (!form) return;
  var errors = document.getElementById("card-errors");
  var button = document.getElementById("card-submit");

  function showError(message) {
    errors.textContent = message || "Your card could not be saved. Please check it or use another card.";
    errors.hidden = false;
    button.disabled = false;
    button.textContent = "Save card";
  }

  if (typeof window.Stripe !== "function") {
    showError("The payment form could not load. Please reload the page.");
    button.disabled = true;
    return;
  }
  var stripe = window.Stripe(form.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    errors.hidden = true;
    button.disabled = true;
    button.textContent = "Saving…";
    stripe.confirmCardSetup(form.dataset.clientSecret, { payment_method: { card: card } }).then(function (result) {
      if (result.error) {
        // Declined or invalid: nothing was saved on our side; the message is Stripe's.
        showError(result.error.message);
        return;
      }
      // The server asks Stripe itself what this SetupIntent holds before recording the card.
      window.location.assign(form.dataset.returnUrl + "?setup_intent=" + encodeURIComponent(result.setupIntent.id));
    }, function () { showError(); });
  });
})();
