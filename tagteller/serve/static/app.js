// tagteller scanner page: choose a domain (or "any": the domain that recognises the photo answers),
// take, choose, drop or paste a photo, see the top predictions (or that the photo is unknown), the
// deal against the typical price (typed before or after the photo; the typical price can be set
// here), and send a correction to the domain's feedback inbox.
// Large photos are shrunk in the browser before they are sent (the models look at 260 px at most).
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
  // Longest side of the photo sent: plenty for models that look at 260 px at most, and a phone
  // photo of several MB goes out as about 100-200 KB.
  const MAX_SIDE = 1024;
  const JPEG_QUALITY = 0.9;
  // Wait this long after the last key in the price box before checking the deal again.
  const PRICE_DEBOUNCE_MS = 350;
  const $ = (id) => document.getElementById(id);
  const form = $("scan-form");
  const domainSelect = $("domain");
  const description = $("domain-description");
  const priceInput = $("price");
  const currencyInput = $("currency");
  const priceError = $("price-error");
  const fileInputs = [$("photo"), $("choose")];
  const dropZone = $("drop-zone");
  const formats = $("formats");
  const statusLine = $("status");
  const errorBox = $("error");
  const pending = $("pending");
  const pendingPreview = $("pending-preview");
  const pendingText = $("pending-text");
  const cancelButton = $("cancel");
  const result = $("result");
  const preview = $("preview");
  const dealBox = $("deal");
  const typical = $("typical");
  const typicalTitle = $("typical-title");
  const typicalForm = $("typical-form");
  const typicalLow = $("typical-low");
  const typicalHigh = $("typical-high");
  const typicalSave = $("typical-save");
  const typicalStatus = $("typical-status");
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
  let pendingUrl = null;
  // The last successful scan: its image bytes (kept so a correction sends exactly what was
  // scanned, without picking the file again), its name, domain, predicted label (null when
  // the photo was not recognised), whether the model was sure, and whether it was unknown.
  let lastScan = null;
  // The scan and the deal check in flight, so that a newer one (or Cancel) aborts them.
  let scanRequest = null;
  let dealRequest = null;
  let priceTimer = null;

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  function showPriceError(text) {
    priceError.textContent = text || "";
    priceError.hidden = !text;
    if (text) priceInput.setAttribute("aria-invalid", "true");
    else priceInput.removeAttribute("aria-invalid");
  }

  // While a photo is scanned: its preview, a spinner and Cancel; the previous answer is gone.
  function showPending(file, shownName) {
    clearResult();
    if (pendingUrl) URL.revokeObjectURL(pendingUrl);
    pendingUrl = URL.createObjectURL(file);
    pendingPreview.hidden = false;
    pendingPreview.src = pendingUrl;
    pendingText.textContent = `Scanning ${shownName}…`;
    pending.hidden = false;
    statusLine.textContent = "";
  }

  function hidePending() {
    pending.hidden = true;
    pendingPreview.removeAttribute("src");
    if (pendingUrl) URL.revokeObjectURL(pendingUrl);
    pendingUrl = null;
  }

  // The previous answer, its deal and its feedback row go as soon as a new photo comes.
  function clearResult() {
    lastScan = null;
    if (dealRequest) dealRequest.abort();
    result.hidden = true;
    dealBox.hidden = true;
    $("label").textContent = "";
    $("confidence").textContent = "";
    $("predictions").replaceChildren();
    $("meta").textContent = "";
    setFeedbackStatus("", false);
  }

  function percent(probability) {
    return `${Math.round(probability * 100)}%`;
  }

  function describeConfidence(record) {
    if (record.text_match && record.text_match.overrode) return `from the text on the photo (${record.text_match.word})`;
    if (record.confidence === null || record.confidence === undefined) return "";
    const pct = percent(record.confidence);
    return record.sure ? pct : `not sure: ${pct}`;
  }

  function sizeText(bytes) {
    return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.ceil(bytes / 1024)} KB`;
  }

  function describeLimits(limits) {
    const kinds = limits.image_formats && limits.image_formats.length ? limits.image_formats.join(", ") : "images";
    formats.textContent = `${kinds}; up to ${sizeText(limits.max_upload_bytes)}. `
      + `Large photos are shrunk to ${MAX_SIDE} px before they are sent.`;
  }

  // The photo to send: shrunk to MAX_SIDE on its longest side (upright, as the camera meant it) when
  // it is larger and the browser can draw it; otherwise the file as it is (a HEIC photo in a
  // browser that cannot draw it goes as it is, and the server decodes it).
  async function prepareImage(file, name) {
    const original = { blob: file, name, resized: false };
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    } catch (err) {
      return original;
    }
    try {
      const scale = MAX_SIDE / Math.max(bitmap.width, bitmap.height);
      if (!(scale < 1)) return original;
      const canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(bitmap.width * scale));
      canvas.height = Math.max(1, Math.round(bitmap.height * scale));
      const context = canvas.getContext("2d");
      context.fillStyle = "#ffffff"; // a JPEG has no transparency: see-through parts become white
      context.fillRect(0, 0, canvas.width, canvas.height);
      context.imageSmoothingQuality = "high";
      context.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", JPEG_QUALITY));
      if (!blob) return original;
      return { blob, name: name.replace(/\.[^.]*$/, "") + ".jpg", resized: true };
    } finally {
      bitmap.close();
    }
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
      if (body.limits && body.limits.max_upload_bytes) {
        maxUploadBytes = body.limits.max_upload_bytes;
        describeLimits(body.limits);
      }
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

  // After filing feedback: the inbox's labels may have changed (a new one, or one whose last photo moved).
  async function refreshDomains() {
    try {
      const response = await fetch("v1/domains", { headers: { Accept: "application/json" } });
      if (response.ok) domains = (await readJson(response)).domains;
    } catch (err) {
      // The list stays as it was; the next scan or page load reads it again.
    }
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
    const text = $("deal-text");
    const hint = $("deal-hint");
    if (record.price_paid === null || record.price_paid === undefined || !record.deal) {
      dealBox.hidden = true;
      return;
    }
    text.textContent = record.deal;
    dealBox.dataset.position = record.deal_position || "unknown";
    dealBox.classList.toggle("unsure", !record.sure);
    hint.textContent = record.typical_known
      ? (record.price_source ? `Typical price from ${record.price_source}.` : "")
      : "Set it below; it is saved in your price list.";
    resetTypical(record);
    dealBox.hidden = false;
  }

  // "Set the typical price": open when none is known, prefilled with your range when there is one.
  // What is being typed there is kept while the deal is checked again for another asking price.
  function resetTypical(record) {
    const currency = typicalCurrency(record);
    typical.dataset.currency = currency; // what Save uses: the currency the title names
    typicalTitle.textContent = record.typical_known
      ? `Change the typical price of ${record.label} (${currency})`
      : `Set the typical price of ${record.label} (${currency})`;
    const key = `${record.domain}\n${record.label}\n${currency}\n${record.typical_low}\n${record.typical_high}`;
    if (typical.dataset.key === key) return;
    typical.dataset.key = key;
    typical.open = !record.typical_known;
    const mine = record.typical_known && record.price_source === "your price list";
    typicalLow.value = mine ? record.typical_low : "";
    typicalHigh.value = mine ? record.typical_high : "";
  }

  // The currency a typical price is saved in: the one typed, else the deal's, else the server's default.
  function typicalCurrency(record) {
    return currencyInput.value.trim().toUpperCase() || (record && record.currency) || "EUR";
  }

  function setTypicalStatus(text, isError, isDone = false) {
    typicalStatus.textContent = text;
    typicalStatus.classList.toggle("error", Boolean(isError && text));
    typicalStatus.classList.toggle("done", Boolean(isDone && text));
  }

  // The deal for the answer shown, at the price in the box: asked again whenever the price or the
  // currency changes (no rescan), and right after a scan.
  // Checking the same price twice in a row (typing, then leaving the box) asks once, unless forced.
  async function checkDeal(force = false) {
    const price = priceInput.value.trim();
    const asked = lastScan ? [lastScan.domain, lastScan.label, price, currencyInput.value.trim()].join("\n") : "";
    if (!force && lastScan && lastScan.dealAsked === asked) return;
    if (dealRequest) dealRequest.abort();
    dealRequest = null;
    if (!lastScan || !lastScan.label || lastScan.unknown || price === "") {
      dealBox.hidden = true;
      if (price === "") showPriceError("");
      return;
    }
    lastScan.dealAsked = asked;
    const request = new AbortController();
    dealRequest = request;
    const query = new URLSearchParams({ domain: lastScan.domain, label: lastScan.label, price,
                                        sure: String(lastScan.sure) });
    const currency = currencyInput.value.trim();
    if (currency !== "") query.set("currency", currency);
    try {
      const response = await fetch(`v1/deal?${query}`, { signal: request.signal,
                                                        headers: { Accept: "application/json" } });
      const body = await readJson(response);
      if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
      showPriceError("");
      renderDeal(body);
    } catch (err) {
      if (err.name === "AbortError") return; // a newer check replaced this one
      if (lastScan) lastScan.dealAsked = null;
      dealBox.hidden = true;
      showPriceError(`Cannot check the deal: ${reason(err)}`);
    } finally {
      if (dealRequest === request) dealRequest = null;
    }
  }

  function priceChanged(delay) {
    clearTimeout(priceTimer);
    priceTimer = setTimeout(checkDeal, delay);
  }

  async function saveTypical() {
    if (!lastScan || !lastScan.label) return;
    const low = typicalLow.value.trim();
    const high = typicalHigh.value.trim();
    if (!low || !high) {
      setTypicalStatus("Type the low and the high end of the typical price.", true);
      (low ? typicalHigh : typicalLow).focus();
      return;
    }
    const query = new URLSearchParams({ domain: lastScan.domain, label: lastScan.label, low, high,
                                        currency: typical.dataset.currency || typicalCurrency(null) });
    typicalSave.disabled = true;
    setTypicalStatus("Saving…", false);
    try {
      const response = await fetch(`v1/prices?${query}`, { method: "PUT", headers: { Accept: "application/json" } });
      const body = await readJson(response);
      if (!response.ok) throw new Error(body.error || `the server answered ${response.status}`);
      await checkDeal(true);
      setTypicalStatus(`${sentence(body.message)}.`, false, true);
    } catch (err) {
      setTypicalStatus(`Could not save: ${reason(err)}`, true);
    } finally {
      typicalSave.disabled = false;
    }
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
    if (record.text) meta.push(`read: ${record.text}`);
    $("meta").textContent = meta.join(" · ");
    dealBox.hidden = true;
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
    if (scanRequest) scanRequest.abort(); // a newer photo replaces the one being scanned
    const request = new AbortController();
    scanRequest = request;
    showPending(file, shownName);
    try {
      const image = await prepareImage(file, file.name || "photo.jpg");
      if (request.signal.aborted) return; // cancelled, or replaced by a newer photo
      if (image.blob.size > maxUploadBytes) {
        hidePending();
        showError(`${shownName} is ${sizeText(image.blob.size)}; the server accepts at most `
                  + `${sizeText(maxUploadBytes)}.`);
        return;
      }
      // Read the bytes once: the scan and any correction send exactly these.
      const bytes = new Blob([await image.blob.arrayBuffer()],
                             { type: image.blob.type || "application/octet-stream" });
      const body = new FormData();
      body.append("file", bytes, image.name);
      const url = `v1/scan?domain=${encodeURIComponent(domain)}&top_k=${TOP_K}`;
      const response = await fetch(url, { method: "POST", body, signal: request.signal });
      const record = await readJson(response);
      if (!response.ok || (record.status !== "ok" && record.status !== "unknown")) {
        throw new Error(record.error || `the server answered ${response.status}`);
      }
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = URL.createObjectURL(bytes);
      preview.src = previewUrl;
      hidePending();
      lastScan = { image: bytes, name: image.name, domain: record.domain, label: record.label,
                   sure: Boolean(record.sure), unknown: record.status === "unknown" };
      typical.dataset.key = "";
      setTypicalStatus("", false);
      render(record);
      checkDeal();
    } catch (err) {
      // Aborted: Cancel said so already, or a newer photo is being scanned.
      if (err.name === "AbortError" || scanRequest !== request) return;
      hidePending();
      showError(`Could not scan ${shownName}: ${reason(err)}`);
    } finally {
      if (scanRequest === request) scanRequest = null;
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
      refreshDomains();
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
    priceChanged(0);
  });

  // The price is sent as typed ("12,50" stays "12,50": the server says why it is refused, rather
  // than a number box silently reading it as 1250).
  priceInput.addEventListener("input", () => priceChanged(PRICE_DEBOUNCE_MS));
  priceInput.addEventListener("change", () => priceChanged(0));

  // A photo this browser cannot show (HEIC outside Safari) is still scanned: the server decodes it.
  pendingPreview.addEventListener("error", () => { pendingPreview.hidden = true; });

  cancelButton.addEventListener("click", () => {
    if (!scanRequest) return;
    scanRequest.abort();
    scanRequest = null;
    hidePending();
    statusLine.textContent = "Scan cancelled.";
  });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && scanRequest) cancelButton.click();
  });

  typicalForm.addEventListener("submit", (event) => {
    event.preventDefault();
    saveTypical();
  });

  // Desktop: drop a photo anywhere on the page, or paste one (a screenshot, a copied image).
  function imageFile(files) {
    const list = [...(files || [])];
    return list.find((f) => f.type.startsWith("image/") || /\.(heic|heif|avif)$/i.test(f.name)) || list[0];
  }

  function hasFiles(event) {
    return Boolean(event.dataTransfer && [...event.dataTransfer.types].includes("Files"));
  }

  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    dropZone.classList.remove("dragging");
    if (!hasFiles(event)) return;
    event.preventDefault();
    const file = imageFile(event.dataTransfer.files);
    if (file) scan(file);
  });
  document.addEventListener("paste", (event) => {
    const file = event.clipboardData ? imageFile(event.clipboardData.files) : null;
    if (!file) return; // pasted text goes where it was pasted
    event.preventDefault();
    scan(file);
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
