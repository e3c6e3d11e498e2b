// Building the page: elements from data, text always as text (never parsed as HTML).

const SVG_NS = "http://www.w3.org/2000/svg";

function build(element, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value" && "value" in element && !(element instanceof SVGElement)) {
      element.value = value;
    } else if (name === "text") {
      element.textContent = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

// Append children as h() does: arrays flattened, null/false skipped, text as text.
export function add(element, ...children) {
  append(element, children);
  return element;
}

export function clear(element) {
  element.replaceChildren();
  return element;
}

// A link only for http(s): a message's media URL could be anything, javascript: included.
export function safeUrl(value) {
  try {
    const url = new URL(String(value), window.location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

export function when(value) {
  if (value === null || value === undefined || value === "") return null;
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function fmtTime(value, withDate = true) {
  const date = when(value);
  if (!date) return "—";
  const options = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  if (withDate) Object.assign(options, { year: "numeric", month: "short", day: "numeric" });
  return date.toLocaleString(undefined, options);
}

export function time(value, withDate = true) {
  const date = when(value);
  if (!date) return h("span", {}, "—");
  return h("time", { datetime: date.toISOString() }, fmtTime(value, withDate));
}

export function facts(pairs) {
  const list = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === undefined) continue;
    list.append(h("dt", {}, term), h("dd", {}, value === null || value === "" ? "—" : value));
  }
  return list;
}

const STATE_TONES = {
  active: "ok",
  open: "ok",
  ready: "ok",
  DELIVERED: "ok",
  READ: "ok",
  SENT: "info",
  QUEUED: "info",
  ACCEPTED: "info",
  CREATED: "",
  closed: "",
  FAILED: "bad",
  credentials_invalid: "bad",
};

export function badge(text, tone) {
  const chosen = tone ?? STATE_TONES[text] ?? "warn";
  return h("span", { class: ["badge", chosen] }, text);
}

let fieldCount = 0;

// A labelled input with its hint and the place its error is shown.
export function field(spec) {
  const { name, label, type = "text", value = "", hint, options, textarea, required, autocomplete } = spec;
  fieldCount += 1;
  const id = `field-${fieldCount}-${name.replace(/[^a-z0-9_-]/gi, "-")}`;
  let input;
  if (options) {
    input = h("select", { id, name });
    for (const option of options) {
      const [optionValue, optionLabel] = Array.isArray(option) ? option : [option, option];
      input.append(h("option", { value: optionValue }, optionLabel));
    }
    input.value = value;
  } else if (textarea) {
    input = h("textarea", { id, name, rows: 4, spellcheck: "false" });
    input.value = value;
  } else {
    input = h("input", { id, name, type, autocomplete: autocomplete || "off", spellcheck: "false" });
    input.value = value;
  }
  if (required) input.setAttribute("aria-required", "true");
  const hintEl = hint ? h("p", { class: "hint", id: id + "-hint" }, hint) : null;
  const error = h("p", { class: "field-error", id: id + "-error" });
  input.setAttribute("aria-describedby", [hintEl ? hintEl.id : null, error.id].filter(Boolean).join(" "));
  const wrap = h("div", { class: "field" }, h("label", { for: id }, label, required ? " (required)" : ""), input, hintEl, error);
  return {
    name,
    input,
    wrap,
    error,
    required,
    setError(message) {
      error.textContent = message || "";
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

// A form of fields whose API errors land next to the field they name.
export class Form {
  constructor(fields, { submitLabel, onSubmit, onCancel, title }) {
    this.fields = fields;
    this.formError = h("p", { class: "form-error", role: "alert" });
    this.submit = h("button", { type: "submit", class: "primary" }, submitLabel);
    const buttons = h("div", { class: "actions" }, this.submit);
    if (onCancel) buttons.append(h("button", { type: "button", onclick: onCancel }, "Cancel"));
    this.element = h(
      "form",
      { class: "panel", novalidate: true, "aria-label": title || submitLabel },
      title ? h("h2", {}, title) : null,
      fields.map((f) => f.wrap),
      this.formError,
      buttons,
    );
    this.element.addEventListener("submit", async (event) => {
      event.preventDefault();
      this.clearErrors();
      const missing = this.fields.filter((f) => f.required && !String(f.input.value).trim());
      for (const f of missing) f.setError("is required");
      if (missing.length) {
        missing[0].input.focus();
        return;
      }
      this.submit.disabled = true;
      try {
        await onSubmit(this.values(), this);
      } catch (error) {
        this.showError(error);
      } finally {
        this.submit.disabled = false;
      }
    });
  }

  get(name) {
    return this.fields.find((f) => f.name === name);
  }

  values() {
    return Object.fromEntries(this.fields.map((f) => [f.name, f.input.value]));
  }

  clearErrors() {
    this.formError.textContent = "";
    for (const f of this.fields) f.setError("");
  }

  // An ApiError: each `details[]` entry next to its field ("config.base_url" next to config).
  showError(error) {
    const details = error && Array.isArray(error.details) ? error.details : [];
    const general = [];
    let first = null;
    for (const detail of details) {
      const name = String(detail.field || "");
      const target = this.fields.find((f) => name === f.name || name.startsWith(f.name + "."));
      if (target) {
        const message = name === target.name ? detail.message : `${name.slice(target.name.length + 1)}: ${detail.message}`;
        target.setError(target.error.textContent ? target.error.textContent + "; " + message : message);
        first = first || target;
      } else {
        general.push(name && name !== "body" ? `${name}: ${detail.message}` : detail.message);
      }
    }
    if (!details.length) general.push(error && error.message ? error.message : String(error));
    this.formError.textContent = general.join(" ");
    if (first) first.input.focus();
    else this.formError.focus?.();
  }
}

// A JSON-object field's value, or a field error.
export function jsonObject(form, name) {
  const text = String(form.get(name).input.value || "").trim();
  if (!text) return {};
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    const error = new Error("invalid JSON");
    error.details = [{ field: name, message: 'must be a JSON object, e.g. {"base_url": "…"}' }];
    throw error;
  }
  return value;
}

// A delete button that asks once more, in place (no dialog).
export function confirmButton(label, confirmLabel, onConfirm) {
  const holder = h("span", { class: "actions" });
  const start = h("button", { type: "button", class: "danger" }, label);
  const show = () => {
    const yes = h("button", { type: "button", class: "danger primary" }, confirmLabel);
    const no = h("button", { type: "button" }, "Cancel");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await onConfirm();
      } finally {
        yes.disabled = false;
      }
    });
    no.addEventListener("click", () => {
      holder.replaceChildren(start);
      start.focus();
    });
    holder.replaceChildren(yes, no);
    yes.focus();
  };
  start.addEventListener("click", show);
  holder.append(start);
  return holder;
}

export function debounce(fn, wait) {
  let timer = null;
  const wrapped = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, wait);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

export function errorText(error) {
  if (!error) return "";
  if (error.status === 0) return error.message;
  return error.message + (error.status ? ` (HTTP ${error.status})` : "");
}
