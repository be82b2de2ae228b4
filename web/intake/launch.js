// SMART App Launch 2.0, first leg: the EHR (EHR launch: `iss` and `launch`) or the user
// (standalone launch: `iss` only) opens this page. It asks the service for the client id the EHR
// registered the app under and for the scopes (SMART v2 syntax when the EHR's
// .well-known/smart-configuration advertises permission-v2, else v1), then fhirclient sends the
// browser to the EHR's authorize endpoint with PKCE (S256, required) and a random `state`.
"use strict";

(function () {
  const status = document.getElementById("status");
  const problem = document.getElementById("problem");

  function fail(message) {
    status.textContent = "The intake could not start.";
    problem.textContent = message;
    problem.hidden = false;
  }

  const json = (url) => window.PoplitealIntake.callJson(url);

  async function launch() {
    const parameters = new URLSearchParams(window.location.search);
    const iss = parameters.get("iss");
    const launchId = parameters.get("launch");
    if (!iss) {
      fail("Open the intake from the EHR (the launch names the EHR's FHIR server as iss).");
      return;
    }
    let settings;
    try {
      settings = await json("api/launch?iss=" + encodeURIComponent(iss));
    } catch (error) {
      fail("This EHR is not registered for the intake app: " + error.message);
      return;
    }
    let v2 = false;
    try {
      const smart = await json(iss.replace(/\/+$/, "") + "/.well-known/smart-configuration");
      v2 = Array.isArray(smart.capabilities) && smart.capabilities.includes("permission-v2");
    } catch (error) {
      // fhirclient reads the configuration again and says what is wrong if it cannot.
    }
    const scopes = launchId ? settings.scopes.ehr : settings.scopes.standalone;
    try {
      await FHIR.oauth2.authorize({
        iss: iss,
        launch: launchId || undefined,
        clientId: settings.clientId,
        scope: v2 ? scopes.v2 : scopes.v1,
        redirectUri: "./",
        pkceMode: "required",
      });
    } catch (error) {
      fail("The EHR's SMART configuration could not be used: " + error.message);
    }
  }

  launch();
})();
