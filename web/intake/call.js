// One JSON call, shared by the intake app's pages: a GET (no body) or a POST of a JSON body,
// without cookies. An error answer's OperationOutcome diagnostics become the error's message, and
// its status the error's `status`.
"use strict";

window.PoplitealIntake = {
  async callJson(url, body) {
    const init = body === undefined
      ? { headers: { Accept: "application/json" } }
      : { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) };
    init.credentials = "omit";
    const response = await fetch(url, init);
    const answer = await response.json().catch(() => null);
    if (!response.ok) {
      const diagnostics = answer && answer.issue && answer.issue[0] && answer.issue[0].diagnostics;
      const error = new Error(diagnostics || "HTTP " + response.status);
      error.status = response.status;
      throw error;
    }
    return answer;
  },
};
