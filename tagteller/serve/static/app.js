// tagteller scanner page: choose a domain, take or choose a photo, see the top predictions.
// Talks to the API next to it (relative URLs, so it also works behind a path prefix); no libraries.
"use strict";

(() => {
  const TOP_K = 3;
  const STORAGE_KEY = "tagteller.domain";
  const $ = (id) => document.getElementById(id);
  const form = $("scan-form");
  const domainSelect = $("domain");
  const description = $("domain-description");
  const priceInput = $("price");
  const fileInputs = [$("photo"), $("choose")];
  const statusLine = $("status");
  const errorBox = $("error");
  const result = $("result");
  const preview = $("preview");

  let domains = [];
  let maxUploadBytes = Infinity;
  let previewUrl = null;

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

  function describeDomain() {
    const chosen = domains.find((d) => d.name === domainSelect.value);
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
    domainSelect.replaceChildren(...options);
    const usable = domains.filter((d) => d.has_model);
    if (usable.length === 0) {
      domainSelect.prepend(new Option("(no domain has a model)", "", true, true));
      showError("No domain has a model yet: train one with `tagteller train --domain NAME DATA_DIR`.");
    } else {
      const remembered = localStorage.getItem(STORAGE_KEY);
      const initial = usable.find((d) => d.name === remembered) || usable[0];
      domainSelect.value = initial.name;
    }
    describeDomain();
  }

  function render(record) {
    const label = $("label");
    label.textContent = record.label;
    label.classList.toggle("unsure", !record.sure);
    const confidence = $("confidence");
    confidence.textContent = describeConfidence(record);
    confidence.classList.toggle("unsure", !record.sure);
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
    const meta = [`${record.domain} model v${record.model_version}`];
    if (record.timing_ms) meta.push(`${Math.round(record.timing_ms.decode_and_inference)} ms`);
    if (record.price !== null && record.price !== undefined) meta.push(`asking price ${record.price}`);
    $("meta").textContent = meta.join(" · ");
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
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;

    const body = new FormData();
    body.append("file", file, file.name || "photo.jpg");
    const price = priceInput.value.trim();
    if (price !== "") body.append("price", price);

    setBusy(true, `Scanning ${shownName}…`);
    try {
      const url = `v1/scan?domain=${encodeURIComponent(domain)}&top_k=${TOP_K}`;
      const response = await fetch(url, { method: "POST", body });
      const record = await readJson(response);
      if (!response.ok || record.status !== "ok") {
        throw new Error(record.error || `the server answered ${response.status}`);
      }
      render(record);
    } catch (err) {
      result.hidden = true;
      showError(`Could not scan ${shownName}: ${reason(err)}`);
    } finally {
      setBusy(false, "");
    }
  }

  domainSelect.addEventListener("change", () => {
    localStorage.setItem(STORAGE_KEY, domainSelect.value);
    describeDomain();
  });

  fileInputs.forEach((input) => {
    input.addEventListener("change", () => {
      const file = input.files && input.files[0];
      input.value = ""; // choosing the same photo again fires another change
      if (file) scan(file);
    });
  });

  form.addEventListener("submit", (event) => event.preventDefault());

  loadDomains();
})();
