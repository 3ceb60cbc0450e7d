// tagteller scanner page: choose a domain (or "any": the domain that recognises the photo answers),
// take or choose a photo, see the top predictions (or that the photo is unknown), the deal against
// the typical price, and send a correction to the domain's feedback inbox.
// Talks to the API next to it (relative URLs, so it also works behind a path prefix); no libraries.
"use strict";

(() => {
  const TOP_K = 3;
  const STORAGE_KEY = "tagteller.domain";
  const CURRENCY_KEY = "tagteller.currency";
  // A value no label can have ('*' is not allowed in labels): the "new label" choice.
  const NEW_LABEL = "*new*";
  // The API's domain value for "every domain with a model; the one that recognises the photo answers".
  const ANY_DOMAIN = "any";
  const ANY_DESCRIPTION = "Every domain with a model; the one that recognises the photo answers.";
  const $ = (id) => document.getElementById(id);
  const form = $("scan-form");
  const domainSelect = $("domain");
  const description = $("domain-description");
  const priceInput = $("price");
  const currencyInput = $("currency");
  const fileInputs = [$("photo"), $("choose")];
  const statusLine = $("status");
  const errorBox = $("error");
  const result = $("result");
  const preview = $("preview");
  const feedbackTitle = $("feedback-title");
  const feedbackYes = $("feedback-yes");
  const feedbackLabel = $("feedback-label");
  const feedbackNewLabel = $("feedback-new-label");
  const feedbackSend = $("feedback-send");
  const feedbackStatus = $("feedback-status");
  const feedbackTeach = $("feedback-teach");
  const feedbackTeachHint = $("feedback-teach-hint");
  let teachOffer = null; // {domain, label} the "Teach it" button teaches from the feedback inbox

  let domains = [];
  let maxUploadBytes = Infinity;
  let previewUrl = null;
  // The last successful scan: its image bytes (kept so a correction sends exactly what was
  // scanned, without picking the file again), its name, domain and predicted label (null when
  // the photo was not recognised).
  let lastScan = null;

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function setBusy(busy, text) {
    form.classList.toggle("busy", busy);
    fileInputs.forEach((input) => { input.disabled = busy; });
    statusLine.textContent = text || "";
  }

  function percent(probability) {
    return `${Math.round(probability * 100)}%`;
  }

  function describeConfidence(record) {
    if (record.confidence === null || record.confidence === undefined) return "";
    const pct = percent(record.confidence);
    return record.sure ? pct : `not sure: ${pct}`;
  }

  function sizeText(bytes) {
    return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.ceil(bytes / 1024)} KB`;
  }

  function sentence(text) {
    return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
  }

  async function readJson(response) {
    try {
      return await response.json();
    } catch (err) {
      throw new Error(`the server answered ${response.status} ${response.statusText} without a JSON body`);
    }
  }

  function reason(err) {
    // fetch() rejects with a TypeError when the server cannot be reached at all.
    if (err instanceof TypeError) return "cannot reach the tagteller server; is it still running?";
    return err.message;
  }

  function domainInfo(name) {
    return domains.find((d) => d.name === name);
  }

  function describeDomain() {
    if (domainSelect.value === ANY_DOMAIN) {
      description.textContent = ANY_DESCRIPTION;
      return;
    }
    const chosen = domainInfo(domainSelect.value);
    description.textContent = chosen ? chosen.description : "";
  }

  async function loadDomains() {
    try {
      const response = await fetch("v1/domains", { headers: { Accept: "application/json" } });
      const body = await readJson(response);
      if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
      domains = body.domains;
      if (body.limits && body.limits.max_upload_bytes) maxUploadBytes = body.limits.max_upload_bytes;
    } catch (err) {
      domainSelect.replaceChildren(new Option("(unavailable)", ""));
      showError(`Cannot load the list of domains: ${reason(err)}`);
      return;
    }
    const options = domains.map((d) => {
      const option = new Option(d.has_model ? d.name : `${d.name} (no model yet)`, d.name);
      option.disabled = !d.has_model;
      return option;
    });
    const usable = domains.filter((d) => d.has_model);
    const any = new Option("any (the domain that recognises it)", ANY_DOMAIN);
    any.disabled = usable.length === 0;
    domainSelect.replaceChildren(any, ...options);
    if (usable.length === 0) {
      domainSelect.prepend(new Option("(no domain has a model)", "", true, true));
      showError("No domain has a model yet: train one with `tagteller train --domain NAME DATA_DIR`.");
    } else {
      const remembered = localStorage.getItem(STORAGE_KEY);
      const initial = remembered === ANY_DOMAIN ? ANY_DOMAIN
        : (usable.find((d) => d.name === remembered) || usable[0]).name;
      domainSelect.value = initial;
    }
    describeDomain();
  }

  function renderPredictions(record) {
    const items = record.top.map((p) => {
      const item = document.createElement("li");
      item.className = "prediction";
      const head = document.createElement("div");
      head.className = "prediction-head";
      const name = document.createElement("span");
      name.className = "prediction-name";
      name.textContent = p.label;
      const pct = document.createElement("span");
      pct.className = "prediction-pct";
      pct.textContent = percent(p.probability);
      head.append(name, pct);
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.setAttribute("role", "meter");
      bar.setAttribute("aria-label", p.label);
      bar.setAttribute("aria-valuemin", "0");
      bar.setAttribute("aria-valuemax", "100");
      bar.setAttribute("aria-valuenow", String(Math.round(p.probability * 100)));
      const fill = document.createElement("div");
      fill.className = "fill";
      fill.style.width = `${Math.max(0, Math.min(100, p.probability * 100)).toFixed(1)}%`;
      bar.append(fill);
      item.append(head, bar);
      return item;
    });
    $("predictions").replaceChildren(...items);
  }

  function renderDeal(record) {
    const deal = $("deal");
    const text = $("deal-text");
    const hint = $("deal-hint");
    // No deal check for an unknown photo: there is no label to price.
    if (record.status !== "ok" || record.price_paid === null || record.price_paid === undefined || !record.deal) {
      deal.hidden = true;
      return;
    }
    text.textContent = record.deal;
    deal.dataset.position = record.deal_position || "unknown";
    deal.classList.toggle("unsure", !record.sure);
    hint.textContent = record.typical_known
      ? (record.price_source ? `Typical price from ${record.price_source}.` : "")
      : `Add a typical price with: tagteller prices set --domain ${record.domain} ${record.label} LOW HIGH`;
    deal.hidden = false;
  }

  // The labels a correction can name: the model's, plus those the domain's inbox already knows.
  function correctionLabels(info, predicted) {
    const labels = [...(info ? info.labels : []), ...(info && info.feedback_labels ? info.feedback_labels : [])];
    return [...new Set(labels)].filter((label) => label !== predicted);
  }

  function resetFeedback(record) {
    const info = domainInfo(record.domain);
    // An unknown photo has no label to keep: the row asks which of the domain's labels it is.
    const unknown = record.status === "unknown";
    feedbackTitle.textContent = unknown ? `Is it one of the ${record.domain} labels?` : "Correct?";
    feedbackYes.hidden = unknown;
    const options = [new Option("choose…", "", true, true)];
    options[0].disabled = true;
    correctionLabels(info, record.label).forEach((label) => options.push(new Option(label, label)));
    if (info && info.allow_new_labels) options.push(new Option("something else (a new label)…", NEW_LABEL));
    feedbackLabel.replaceChildren(...options);
    feedbackNewLabel.value = "";
    feedbackNewLabel.hidden = true;
    feedbackTeach.hidden = true;
    feedbackTeachHint.hidden = true;
    teachOffer = null;
    setFeedbackStatus("", false);
    setFeedbackBusy(false);
  }

  function setFeedbackStatus(text, isError, isDone = false) {
    feedbackStatus.textContent = text;
    feedbackStatus.classList.toggle("error", Boolean(isError && text));
    feedbackStatus.classList.toggle("done", Boolean(isDone && text));
  }

  function setFeedbackBusy(busy) {
    [feedbackYes, feedbackSend, feedbackLabel, feedbackNewLabel].forEach((el) => { el.disabled = busy; });
  }

  function render(record) {
    const unknown = record.status === "unknown";
    const anyDomain = Array.isArray(record.alternatives);
    const label = $("label");
    // An unknown photo is said to be unknown, never given a label (the bars keep the best guesses).
    label.textContent = unknown ? "Unknown" : record.label;
    label.classList.toggle("unsure", unknown || !record.sure);
    const confidence = $("confidence");
    confidence.textContent = unknown
      ? `Not like anything ${anyDomain ? "any domain" : "this domain"} knows`
      : describeConfidence(record);
    confidence.classList.toggle("unsure", unknown || !record.sure);
    renderPredictions(record);
    const model = `${record.domain} model v${record.model_version}`;
    const meta = [anyDomain ? `${unknown ? "closest" : "answered by"}: ${model}` : model];
    if (record.timing_ms) meta.push(`${Math.round(record.timing_ms.decode_and_inference)} ms`);
    $("meta").textContent = meta.join(" · ");
    renderDeal(record);
    resetFeedback(record);
    result.hidden = false;
    result.scrollIntoView({ block: "nearest" });
  }

  async function scan(file) {
    showError("");
    const domain = domainSelect.value;
    const shownName = file.name || "the photo";
    if (!domain) {
      showError("Choose what you are scanning first.");
      return;
    }
    if (file.size > maxUploadBytes) {
      showError(`${shownName} is ${sizeText(file.size)}; the server accepts at most ${sizeText(maxUploadBytes)}.`);
      return;
    }
    lastScan = null;
    setBusy(true, `Scanning ${shownName}…`);
    try {
      // Read the bytes once: the scan and any correction send exactly these.
      const image = new Blob([await file.arrayBuffer()], { type: file.type || "application/octet-stream" });
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(image);
      preview.src = previewUrl;

      const body = new FormData();
      body.append("file", image, file.name || "photo.jpg");
      const price = priceInput.value.trim();
      if (price !== "") {
        body.append("price", price);
        const currency = currencyInput.value.trim();
        if (currency !== "") body.append("currency", currency);
      }
      const url = `v1/scan?domain=${encodeURIComponent(domain)}&top_k=${TOP_K}`;
      const response = await fetch(url, { method: "POST", body });
      const record = await readJson(response);
      if (!response.ok || (record.status !== "ok" && record.status !== "unknown")) {
        throw new Error(record.error || `the server answered ${response.status}`);
      }
      lastScan = { image, name: file.name || "photo.jpg", domain: record.domain, label: record.label };
      render(record);
    } catch (err) {
      result.hidden = true;
      showError(`Could not scan ${shownName}: ${reason(err)}`);
    } finally {
      setBusy(false, "");
    }
  }

  async function sendFeedback(label, isNew) {
    if (!lastScan) return;
    const info = domainInfo(lastScan.domain);
    // A label the inbox does not know yet needs new_label (only domains that allow it take one).
    const known = info && info.feedback_labels ? info.feedback_labels.includes(label) : true;
    const newLabel = isNew || Boolean(info && info.allow_new_labels && !known);
    const body = new FormData();
    body.append("file", lastScan.image, lastScan.name);
    const url = `v1/feedback?domain=${encodeURIComponent(lastScan.domain)}&label=${encodeURIComponent(label)}`
      + (newLabel ? "&new_label=true" : "");
    setFeedbackBusy(true);
    setFeedbackStatus(`Sending ${label}…`, false);
    try {
      const response = await fetch(url, { method: "POST", body });
      const answer = await readJson(response);
      if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
      setFeedbackStatus(`${sentence(answer.message)}. Thank you!`, false, true);
      offerTeach(lastScan.domain, answer.teach);
      if (info && info.feedback_labels && !info.feedback_labels.includes(answer.label)) {
        info.feedback_labels.push(answer.label);
      }
    } catch (err) {
      setFeedbackStatus(`Could not send ${label}: ${reason(err)}`, true);
    } finally {
      setFeedbackBusy(false);
    }
  }

  // After a correction to a new label: once the inbox has enough photos of it, offer to teach it
  // (POST v1/teach: seconds, no retraining); before that, say how many more it needs.
  function offerTeach(domain, offer) {
    teachOffer = offer && offer.ready ? { domain, label: offer.label } : null;
    feedbackTeach.hidden = !teachOffer;
    const hint = offer && !offer.taught && offer.photos < offer.needs
      ? `${offer.needs - offer.photos} more photo(s) of ${offer.label} and it can be taught.` : "";
    feedbackTeachHint.textContent = hint;
    feedbackTeachHint.hidden = !hint;
    if (teachOffer) feedbackTeach.textContent = `Teach it: add ${offer.label} from ${offer.photos} photos`;
  }

  feedbackTeach.addEventListener("click", async () => {
    if (!teachOffer) return;
    const { domain, label } = teachOffer;
    feedbackTeach.disabled = true;
    setFeedbackStatus(`Teaching ${label}…`, false);
    try {
      const url = `v1/teach?domain=${encodeURIComponent(domain)}&label=${encodeURIComponent(label)}`;
      const response = await fetch(url, { method: "POST" });
      const answer = await readJson(response);
      if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
      setFeedbackStatus(`${sentence(answer.message)}: scans now answer ${label}.`, false, true);
      feedbackTeach.hidden = true;
      teachOffer = null;
    } catch (err) {
      setFeedbackStatus(`Could not teach ${label}: ${reason(err)}`, true);
    } finally {
      feedbackTeach.disabled = false;
    }
  });

  domainSelect.addEventListener("change", () => {
    localStorage.setItem(STORAGE_KEY, domainSelect.value);
    describeDomain();
  });

  const rememberedCurrency = localStorage.getItem(CURRENCY_KEY);
  if (rememberedCurrency) currencyInput.value = rememberedCurrency;
  currencyInput.addEventListener("change", () => {
    currencyInput.value = currencyInput.value.trim().toUpperCase();
    localStorage.setItem(CURRENCY_KEY, currencyInput.value);
  });

  fileInputs.forEach((input) => {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      input.value = ""; // choosing the same photo again fires another change
      if (file) scan(file);
    });
  });

  feedbackYes.addEventListener("click", () => {
    if (lastScan && lastScan.label) sendFeedback(lastScan.label, false);
  });

  feedbackLabel.addEventListener("change", () => {
    const isNew = feedbackLabel.value === NEW_LABEL;
    feedbackNewLabel.hidden = !isNew;
    if (isNew) feedbackNewLabel.focus();
    setFeedbackStatus("", false);
  });

  feedbackSend.addEventListener("click", () => {
    const choice = feedbackLabel.value;
    if (choice === NEW_LABEL) {
      const typed = feedbackNewLabel.value.trim();
      if (!typed) {
        setFeedbackStatus("Type the new label first.", true);
        feedbackNewLabel.focus();
        return;
      }
      sendFeedback(typed, true);
    } else if (choice) {
      sendFeedback(choice, false);
    } else {
      setFeedbackStatus("Choose the right label first.", true);
    }
  });

  form.addEventListener("submit", (event) => event.preventDefault());

  loadDomains();
})();
