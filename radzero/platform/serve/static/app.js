// The RadZero page: picks an image, asks /v1/classify, /v1/ground or /v1/segment and shows
// the answers side by side. No dependencies; every URL is relative to the page.
"use strict";

const KEY_STORAGE = "radzero-api-key";
const SHOWN_FINDINGS = 12;
const TASKS = ["classify", "ground", "segment"];
const TITLES = { classify: "Classify", ground: "Ground", segment: "Segment" };
const MASK_TINT = [255, 48, 96, 150]; // RGBA of a segmented pixel over the image

const state = {
  image: null, // the File sent with each request
  drawable: null, // a Promise of the image's URL, or of null when the browser cannot draw it
  findings: [], // the names /v1/model offers
  checked: new Set(),
};

const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// -- the API ---------------------------------------------------------------------------------
function authHeaders() {
  const key = sessionStorage.getItem(KEY_STORAGE);
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: authHeaders() });
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // a plain-text answer, e.g. 413 "Content Too Large"
  }
  if (!response.ok) {
    const detail = body && body.detail !== undefined ? body.detail : text.trim();
    const message = typeof detail === "string" ? detail : JSON.stringify(detail);
    throw new ApiError(response.status, message || response.statusText);
  }
  return body;
}

function modelLabel(model) {
  const name = model.name || model.reference;
  const version = model.version === null || model.version === undefined ? "" : ` v${model.version}`;
  return `${name}${version} (${model.reference})`;
}

// -- model, key and findings -----------------------------------------------------------------
async function loadModel() {
  let info;
  try {
    info = await api("v1/model");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      askForKey(err.message);
      $("model-line").textContent = "Model: send the API key to see it";
    } else {
      showError(err);
    }
    return;
  }
  $("key-box").hidden = !info.auth;
  $("key-message").textContent = info.auth ? "Key accepted." : "";
  const swap = info.swap_error ? ` · last swap to ${info.swap_error.model} failed` : "";
  $("model-line").textContent = `Model: ${modelLabel(info.model)}${swap}`;
  const { limits } = info;
  $("phrase-hint").textContent =
    `One phrase per line, up to ${limits.max_phrases} of at most ` +
    `${limits.max_phrase_chars} characters.`;
  $("threshold").placeholder = `default ${info.threshold}`;
  $("findings-prompts").textContent =
    `Each scored with the model's prompts: ${info.templates.map((t) => `“${t}”`).join(", ")}.`;
  state.findings = info.findings;
  renderFindings();
}

function askForKey(message) {
  $("key-box").hidden = false;
  $("key-message").textContent = message;
  $("api-key").focus();
}

function renderFindings() {
  const filter = $("findings-filter").value.trim().toLowerCase();
  const matches = state.findings.filter((name) => name.toLowerCase().includes(filter));
  const first = matches.slice(0, SHOWN_FINDINGS);
  // a checked finding stays in view while it matches the filter
  const shown = [...first, ...matches.slice(SHOWN_FINDINGS).filter((n) => state.checked.has(n))];
  const list = $("findings-list");
  list.replaceChildren(
    ...shown.map((name) => {
      const box = element("input", { type: "checkbox", value: name });
      box.checked = state.checked.has(name);
      box.addEventListener("change", () => {
        if (box.checked) state.checked.add(name);
        else state.checked.delete(name);
      });
      return element("li", {}, [element("label", {}, [box, name])]);
    }),
  );
  const hidden = matches.length - shown.length;
  $("findings-more").textContent = hidden > 0 ? `${hidden} more: type to filter.` : "";
}

// -- the image -------------------------------------------------------------------------------
function setImage(file, previewUrl) {
  state.image = file;
  $("image-name").textContent = file.name;
  const preview = $("preview-image");
  preview.hidden = false;
  preview.alt = file.name;
  // What the masks of a segmentation lie on: the image, if the browser can draw it (PNG,
  // JPEG), else null (DICOM).
  state.drawable = new Promise((resolve) => {
    preview.onload = () => resolve(previewUrl);
    preview.onerror = () => {
      preview.hidden = true;
      $("image-name").textContent = `${file.name} (no preview here, e.g. DICOM: see the results)`;
      resolve(null);
    };
  });
  preview.src = previewUrl;
}

async function loadExamples() {
  let listing;
  try {
    const response = await fetch("static/examples/examples.json");
    listing = await response.json();
  } catch {
    return; // the page works without its examples
  }
  const buttons = listing.examples.map((example) => {
    const url = `static/examples/${example.file}`;
    const button = element("button", { type: "button", class: "example", title: example.name }, [
      element("img", { src: url, alt: example.name }),
      element("span", { class: "example-name" }, [example.name]),
    ]);
    button.dataset.file = example.file;
    button.addEventListener("click", () => pickExample(button, example, url));
    return button;
  });
  $("examples").replaceChildren(...buttons);
}

async function pickExample(button, example, url) {
  clearError();
  let blob;
  try {
    blob = await (await fetch(url)).blob();
  } catch (err) {
    showError(err);
    return;
  }
  $("image-input").value = "";
  for (const other of document.querySelectorAll(".example")) {
    other.setAttribute("aria-pressed", String(other === button));
  }
  setImage(new File([blob], example.file, { type: blob.type || "image/png" }), url);
  // Classify then scores the phantom's known findings, as far as the model offers them.
  state.checked = new Set(example.findings.filter((name) => state.findings.includes(name)));
  renderFindings();
}

// -- requests --------------------------------------------------------------------------------
function phraseLines() {
  return $("phrases")
    .value.split("\n")
    .map((line) => line.trim())
    .filter((line) => line);
}

async function run(task) {
  clearError();
  if (!state.image) {
    showError(new Error("Choose an image or an example first."));
    return;
  }
  const { image, drawable } = state;
  const form = new FormData();
  form.append("image", image, image.name);
  if (task === "classify") {
    for (const name of state.findings.filter((n) => state.checked.has(n))) {
      form.append("findings", name);
    }
  } else {
    for (const phrase of phraseLines()) form.append("phrases", phrase);
  }
  if (task === "ground") form.append("overlays", "true");
  const threshold = $("threshold").value.trim();
  if (task === "segment" && threshold) form.append("threshold", threshold);

  setBusy(`${TITLES[task]}: ${image.name}…`);
  try {
    const answer = await api(`v1/${task}`, { method: "POST", body: form });
    const panel = resultPanel(task, image.name, answer);
    if (task === "classify") renderClassify(panel, answer);
    else if (task === "ground") renderGround(panel, answer);
    else await renderSegment(panel, answer, await drawable);
    $("model-line").textContent = `Model: ${modelLabel(answer.model)}`;
    $("timing-line").textContent = `${TITLES[task]} took ${answer.elapsed_ms} ms on the server`;
  } catch (err) {
    showError(err);
  } finally {
    setBusy("");
  }
}

function setBusy(message) {
  for (const task of TASKS) $(`${task}-button`).disabled = Boolean(message);
  $("status").textContent = message;
}

function showError(err) {
  const box = $("error");
  if (err instanceof ApiError) {
    box.textContent = `Error ${err.status}: ${err.message}`;
    if (err.status === 401) askForKey(err.message);
  } else {
    box.textContent = `Error: ${err.message}`;
  }
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

// -- results ---------------------------------------------------------------------------------
// The task's panel, emptied, under a heading naming the image; panels keep the order of TASKS.
function resultPanel(task, imageName, answer) {
  $("results-empty")?.remove();
  const id = `${task}-result`;
  const size = `${answer.image.width} × ${answer.image.height} px`;
  const extra = task === "segment" ? ` · threshold ${answer.threshold}` : "";
  const panel = element("section", { id, class: "panel" }, [
    element("h2", {}, [`${TITLES[task]} `, element("span", { class: "image-ref" }, [imageName])]),
    element("p", { class: "panel-meta" }, [`${size}${extra} · ${answer.elapsed_ms} ms`]),
  ]);
  const old = $(id);
  if (old) {
    old.replaceWith(panel);
    return panel;
  }
  const later = TASKS.slice(TASKS.indexOf(task) + 1)
    .map((t) => $(`${t}-result`))
    .find((p) => p);
  $("results").insertBefore(panel, later || null);
  return panel;
}

function bar(probability) {
  const fill = element("span", { class: "bar-fill" });
  fill.style.width = `${(probability * 100).toFixed(1)}%`;
  return element("span", { class: "bar", "aria-hidden": "true" }, [fill]);
}

function renderClassify(panel, answer) {
  const rows = [...answer.findings]
    .sort((a, b) => b.probability - a.probability)
    .map((item) =>
      element("tr", {}, [
        element("td", { class: "finding" }, [item.finding]),
        element("td", { class: "bar-cell" }, [bar(item.probability)]),
        element("td", { class: "probability" }, [item.probability.toFixed(3)]),
      ]),
    );
  const head = element("tr", {}, [
    element("th", {}, ["Finding"]),
    element("th", { colspan: "2" }, ["Probability"]),
  ]);
  panel.append(
    element("table", { id: "classify-table", class: "probabilities" }, [
      element("thead", {}, [head]),
      element("tbody", {}, rows),
    ]),
  );
}

function renderGround(panel, answer) {
  const figures = answer.phrases.map((item) =>
    element("figure", { class: "ground-item" }, [
      element("img", {
        class: "overlay",
        src: `data:image/png;base64,${item.overlay_png}`,
        alt: `map of "${item.phrase}"`,
      }),
      element("figcaption", {}, [
        element("strong", { class: "phrase" }, [item.phrase]),
        element("span", { class: "caption-line" }, [
          "p = ",
          element("span", { class: "probability" }, [item.probability.toFixed(3)]),
          bar(item.probability),
        ]),
        element("span", { class: "peak" }, [`peak at (${item.peak.x}, ${item.peak.y})`]),
      ]),
    ]),
  );
  panel.append(element("div", { class: "gallery" }, figures));
}

async function renderSegment(panel, answer, baseUrl) {
  const { width, height } = answer.image;
  const figures = await Promise.all(
    answer.phrases.map(async (item) => {
      const layers = [];
      if (baseUrl) layers.push(element("img", { class: "base", src: baseUrl, alt: "" }));
      layers.push(
        element("img", {
          class: "mask",
          src: await tintedMask(`data:image/png;base64,${item.mask_png}`),
          alt: `mask of "${item.phrase}"`,
        }),
      );
      const stack = element("div", { class: "stack" }, layers);
      stack.style.aspectRatio = `${width} / ${height}`;
      const share = ((100 * item.pixels) / (width * height)).toFixed(1);
      return element("figure", { class: "segment-item" }, [
        stack,
        element("figcaption", {}, [
          element("strong", { class: "phrase" }, [item.phrase]),
          element("span", { class: "pixels" }, [`${item.pixels} px (${share} %)`]),
        ]),
      ]);
    }),
  );
  panel.append(element("div", { class: "gallery" }, figures));
}

// The white pixels of a 1-bit mask PNG in MASK_TINT, the rest transparent; a PNG data URL.
function tintedMask(url) {
  return new Promise((resolve, reject) => {
    const mask = new Image();
    mask.onload = () => {
      const canvas = document.createElement("canvas");
      canvas.width = mask.naturalWidth;
      canvas.height = mask.naturalHeight;
      const context = canvas.getContext("2d");
      context.drawImage(mask, 0, 0);
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      const data = pixels.data;
      for (let i = 0; i < data.length; i += 4) {
        const on = data[i] > 127;
        for (let c = 0; c < 4; c += 1) data[i + c] = on ? MASK_TINT[c] : 0;
      }
      context.putImageData(pixels, 0, 0);
      resolve(canvas.toDataURL("image/png"));
    };
    mask.onerror = () => reject(new Error("the mask PNG could not be decoded"));
    mask.src = url;
  });
}

function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// -- wiring ----------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = sessionStorage.getItem(KEY_STORAGE) || "";
  $("key-box").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    clearError();
    loadModel();
  });
  $("image-input").addEventListener("change", () => {
    const file = $("image-input").files[0];
    if (!file) return;
    for (const example of document.querySelectorAll(".example")) {
      example.setAttribute("aria-pressed", "false");
    }
    setImage(file, URL.createObjectURL(file));
  });
  $("findings-filter").addEventListener("input", renderFindings);
  for (const task of TASKS) $(`${task}-button`).addEventListener("click", () => run(task));
  loadExamples();
  loadModel();
});
