// SMART App Launch 2.0, second leg and the app itself. fhirclient completes the authorization
// (it checks `state` against the one it stored before the redirect and exchanges the code with
// the PKCE verifier); then the app shows the patient, asks the service what the record already
// answers (the service reads the record with this app's token, through its own value sets),
// renders the Questionnaire with lforms (the Wells group for clinicians only), writes the
// QuestionnaireResponse to the EHR and shows the cards the service now gives. A failed write
// keeps every answer on screen, with the reason and a retry (and in the tab until saved).
"use strict";

(function () {
  const WELLS_GROUP = "grp-wells";
  const byId = (id) => document.getElementById(id);
  const ui = {
    status: byId("status"),
    problem: byId("problem"),
    patient: byId("patient"),
    intake: byId("intake"),
    audience: byId("audience-note"),
    prefilled: byId("prefilled"),
    prefilledList: byId("prefilled-list"),
    unread: byId("unread"),
    draft: byId("draft"),
    form: byId("form"),
    submit: byId("submit"),
    result: byId("result"),
    saved: byId("saved"),
    cards: byId("cards"),
  };
  const app = { client: null, settings: null, questionnaire: null, clinician: false, written: null };

  function say(text) {
    ui.status.textContent = text;
  }

  function problem(text) {
    ui.problem.textContent = text;
    ui.problem.hidden = !text;
  }

  /// A JSON call to the service (`call.js`).
  const service = (path, body) => window.PoplitealIntake.callJson(path, body);

  /// What the service needs to read the record for this launch (the token is sent to the
  /// service only, which sends it to this EHR's FHIR server only).
  function recordAccess() {
    const client = app.client;
    return {
      fhirServer: client.state.serverUrl,
      patientId: client.getPatientId(),
      userId: client.getFhirUser() || "Patient/" + client.getPatientId(),
      accessToken: client.state.tokenResponse.access_token,
    };
  }

  function isClinician(fhirUser) {
    return /^(Practitioner|PractitionerRole)\//.test(fhirUser || "");
  }

  /// The Questionnaire as this user sees it: without the Wells group unless a clinician, and
  /// with its few-option choices shown as radio buttons (a rendering hint: linkIds, types and
  /// options are the published ones).
  function forAudience(questionnaire, clinician) {
    const copy = JSON.parse(JSON.stringify(questionnaire));
    if (!clinician) {
      copy.item = copy.item.filter((item) => item.linkId !== WELLS_GROUP);
    }
    (function radios(items) {
      for (const item of items || []) {
        if (item.type === "choice" && (item.answerOption || []).length <= 5) {
          item.extension = (item.extension || []).concat([{
            url: "http://hl7.org/fhir/StructureDefinition/questionnaire-itemControl",
            valueCodeableConcept: { coding: [{ system: "http://hl7.org/fhir/questionnaire-item-control", code: "radio-button" }] },
          }]);
        }
        radios(item.item);
      }
    })(copy.item);
    return copy;
  }

  function findItem(items, linkId) {
    for (const item of items || []) {
      if (item.linkId === linkId) return item;
      const found = findItem(item.item, linkId);
      if (found) return found;
    }
    return null;
  }

  /// A QuestionnaireResponse holding the prefilled answers, nested as the Questionnaire is.
  function prefilledResponse(questionnaire, answers) {
    const byLinkId = new Map(answers.map((answer) => [answer.linkId, answer]));
    function walk(items) {
      const out = [];
      for (const item of items || []) {
        if (item.type === "group") {
          const children = walk(item.item);
          if (children.length) out.push({ linkId: item.linkId, item: children });
        } else if (byLinkId.has(item.linkId)) {
          const answer = byLinkId.get(item.linkId).answer;
          if (answer.valueCoding) {
            // The Questionnaire's own option (its display), so that lforms selects it.
            const option = (item.answerOption || []).find((o) => o.valueCoding && o.valueCoding.code === answer.valueCoding.code);
            if (option) out.push({ linkId: item.linkId, answer: [{ valueCoding: option.valueCoding }] });
          } else {
            out.push({ linkId: item.linkId, answer: [answer] });
          }
        }
      }
      return out;
    }
    return { resourceType: "QuestionnaireResponse", status: "in-progress", item: walk(questionnaire.item) };
  }

  function describe(evidence) {
    return evidence.map((e) => e.description + (e.date ? " (" + e.date + ")" : "")).join("; ");
  }

  /// Lists the prefilled answers above the form and marks each question in it.
  function markPrefilled(questionnaire, answers) {
    ui.prefilledList.replaceChildren();
    for (const answer of answers) {
      const item = findItem(questionnaire.item, answer.linkId);
      if (!item) continue;
      const shown = answer.answer.valueCoding
        ? ((item.answerOption || []).find((o) => o.valueCoding && o.valueCoding.code === answer.answer.valueCoding.code) || { valueCoding: answer.answer.valueCoding }).valueCoding.display
        : "Yes";
      const note = "From the record: " + describe(answer.from) + ". Check it" + (answer.verify ? " (" + answer.verify + ")" : "") + ".";
      const entry = document.createElement("li");
      entry.dataset.linkId = answer.linkId;
      entry.textContent = item.text + " " + shown + ". " + note;
      ui.prefilledList.append(entry);
      const rendered = document.querySelector('[id^="item-' + CSS.escape(answer.linkId) + '/"]');
      if (rendered) {
        const mark = document.createElement("p");
        mark.className = "from-record";
        mark.id = "from-record-" + answer.linkId;
        mark.textContent = note;
        rendered.append(mark);
      }
    }
    ui.prefilled.hidden = ui.prefilledList.children.length === 0;
  }

  /// The response to write: what the form holds, completed, for this patient, by this user.
  function completedResponse() {
    const response = LForms.Util.getFormFHIRData("QuestionnaireResponse", "R4", ui.form);
    delete response.meta;
    delete response.id;
    response.status = "completed";
    response.questionnaire = app.questionnaire.url + "|" + app.questionnaire.version;
    response.subject = { reference: "Patient/" + app.client.getPatientId() };
    response.authored = new Date().toISOString();
    const author = app.client.getFhirUser();
    if (author) response.author = { reference: author };
    return response;
  }

  /// Why a write failed, in words a user can act on.
  function whyNotSaved(error) {
    const status = error.status || error.statusCode || (error.response && error.response.status);
    if (error.name === "AbortError") return "The EHR did not answer within " + app.settings.writeTimeoutMs / 1000 + " seconds.";
    if (status === 401) return "The EHR no longer accepts this session (401): it may have expired.";
    if (status === 403) return "The EHR does not allow this app to save the answers (403).";
    if (status >= 500) return "The EHR could not save the answers (error " + status + ").";
    if (status) return "The EHR refused the answers (error " + status + ").";
    return "The EHR could not be reached.";
  }

  async function write(response) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), app.settings.writeTimeoutMs);
    try {
      return await app.client.create(response, {
        signal: controller.signal,
        headers: { "Content-Type": "application/fhir+json", Accept: "application/fhir+json" },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /// The card's detail (GitHub markdown as the service writes it: bold lines as headings,
  /// paragraphs, "- " lists, pipe tables) as elements, built as text: nothing in it is parsed as
  /// HTML.
  function markdownBlocks(markdown) {
    const plain = (text) => text.replace(/\*\*/g, "").trim();
    const blocks = [];
    for (const block of markdown.split(/\n\s*\n/)) {
      const lines = block.split("\n").map((line) => line.trim()).filter(Boolean);
      if (!lines.length) continue;
      if (lines.every((line) => line.startsWith("|"))) {
        const table = document.createElement("table");
        const rows = lines.filter((line) => !/^\|[\s:|-]+\|$/.test(line));
        rows.forEach((line, index) => {
          const row = table.insertRow();
          for (const cell of line.replace(/^\||\|$/g, "").split("|")) {
            const element = document.createElement(index === 0 ? "th" : "td");
            element.textContent = plain(cell);
            row.append(element);
          }
        });
        blocks.push(table);
      } else if (lines.every((line) => line.startsWith("- "))) {
        const list = document.createElement("ul");
        for (const line of lines) {
          const item = document.createElement("li");
          item.textContent = plain(line.slice(2));
          list.append(item);
        }
        blocks.push(list);
      } else if (lines.length === 1 && /^\*\*[^*]+\*\*$/.test(lines[0])) {
        const heading = document.createElement("h4");
        heading.textContent = plain(lines[0]);
        blocks.push(heading);
      } else {
        const paragraph = document.createElement("p");
        paragraph.textContent = plain(lines.join(" "));
        blocks.push(paragraph);
      }
    }
    return blocks;
  }

  function renderCards(cards) {
    ui.cards.replaceChildren();
    if (!cards.length) {
      const none = document.createElement("p");
      none.textContent = "The service has no advice for this patient.";
      ui.cards.append(none);
    }
    for (const card of cards) {
      const article = document.createElement("article");
      article.className = "card " + card.indicator;
      article.dataset.topic = (card.source && card.source.topic && card.source.topic.code) || "";
      const indicator = document.createElement("p");
      indicator.className = "indicator";
      indicator.textContent = card.indicator;
      const summary = document.createElement("h3");
      summary.textContent = card.summary;
      article.append(indicator, summary);
      article.append(...markdownBlocks(card.detail || ""));
      if (card.suggestions && card.suggestions.length) {
        const suggested = document.createElement("p");
        suggested.textContent = "Suggested in the EHR's advice panel: " + card.suggestions.map((s) => s.label).join("; ") + ".";
        article.append(suggested);
      }
      const source = document.createElement("p");
      source.className = "source";
      source.textContent = "Source: " + (card.source && card.source.label);
      article.append(source);
      ui.cards.append(article);
    }
  }

  /// Where this patient's unsaved answers wait in this browser tab (sessionStorage: gone when
  /// the tab closes), so that launching the app again after a failed save (an expired session)
  /// loses nothing.
  function draftKey() {
    return "popliteal-intake-draft|" + app.client.state.serverUrl + "|" + app.client.getPatientId();
  }

  function keepDraft(response) {
    try {
      sessionStorage.setItem(draftKey(), JSON.stringify(response));
    } catch (error) {
      // Storage full or refused: the answers are still on screen.
    }
  }

  function takeDraft() {
    try {
      const text = sessionStorage.getItem(draftKey());
      return text ? JSON.parse(text) : null;
    } catch (error) {
      return null;
    }
  }

  function dropDraft() {
    try {
      sessionStorage.removeItem(draftKey());
    } catch (error) {
      // Nothing kept.
    }
  }

  async function submit() {
    problem("");
    ui.submit.disabled = true;
    let response;
    try {
      response = completedResponse();
    } catch (error) {
      problem("The answers could not be read from the form: " + error.message);
      ui.submit.disabled = false;
      return;
    }
    say("Saving the answers to the record…");
    let saved;
    try {
      saved = await write(response);
    } catch (error) {
      keepDraft(response);
      say("The answers are not saved yet. They are still on screen.");
      problem(whyNotSaved(error) + " Nothing you entered is lost: check the answers and try again.");
      ui.submit.textContent = "Try saving again";
      ui.submit.disabled = false;
      return;
    }
    dropDraft();
    app.written = saved && saved.resourceType === "QuestionnaireResponse" ? saved : response;
    ui.saved.textContent = "Saved to the record" + (app.written.id ? " as QuestionnaireResponse/" + app.written.id : "") + ".";
    ui.intake.hidden = true;
    ui.result.hidden = false;
    say("Asking the service for its advice…");
    try {
      const answer = await service("api/cards", Object.assign(recordAccess(), { questionnaireResponse: app.written }));
      renderCards(answer.cards);
      say("Done: the answers are saved and the advice is below.");
    } catch (error) {
      problem("The answers are saved, but the service could not give its advice: " + error.message);
      say("The answers are saved.");
    }
    ui.result.focus();
  }

  async function start() {
    try {
      app.client = await FHIR.oauth2.ready();
    } catch (error) {
      say("The intake could not start.");
      problem("The sign-in with the EHR could not be completed (" + error.message + "). Open the intake again from the EHR.");
      return;
    }
    try {
      const access = recordAccess();
      app.settings = await service("api/launch?iss=" + encodeURIComponent(access.fhirServer));
      app.clinician = isClinician(app.client.getFhirUser());
      const [questionnaire, patient, prefill] = await Promise.all([
        service("../fhir/Questionnaire/posterior-knee-pain"),
        app.client.patient.read(),
        service("api/prefill", access),
      ]);
      app.questionnaire = questionnaire;
      const name = (patient.name && patient.name[0]) || {};
      ui.patient.textContent = "Patient: " + [].concat(name.given || [], name.family || []).join(" ") + (patient.birthDate ? ", born " + patient.birthDate : "");
      ui.patient.hidden = false;
      const shown = forAudience(questionnaire, app.clinician);
      const answers = prefill.answers.filter((answer) => findItem(shown.item, answer.linkId));
      ui.audience.textContent = app.clinician
        ? "For the clinician: the last group is the Wells score for DVT."
        : "Your clinician completes the Wells score for DVT.";
      if (prefill.unread.length) {
        ui.unread.textContent = "Some of the record could not be read (" + prefill.unread.join(", ") + "): the questions it would answer are left for you.";
        ui.unread.hidden = false;
      }
      const draft = takeDraft();
      if (draft) {
        ui.draft.textContent = "Your answers that were not saved last time are back: check them, then save.";
        ui.draft.hidden = false;
      }
      const initial = draft ? { resourceType: "QuestionnaireResponse", status: "in-progress", item: draft.item || [] } : prefilledResponse(shown, answers);
      await LForms.Util.addFormToPage(shown, ui.form, { questionnaireResponse: initial });
      ui.intake.hidden = false;
      markPrefilled(shown, answers);
      ui.submit.addEventListener("click", submit);
      say("Ready: answer the questions, then save.");
    } catch (error) {
      say("The intake could not start.");
      problem("The record could not be read: " + error.message);
    }
  }

  start();
})();
