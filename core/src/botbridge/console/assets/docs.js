// The API reference: the host's own /openapi.json, rendered here (no third-party bundle).

import { apiUrl } from "./api.js";
import { add, h } from "./dom.js";

const METHODS = ["get", "post", "put", "patch", "delete"];
const status = document.getElementById("docs-status");
const root = document.getElementById("docs");

function anchor(method, path) {
  return "op-" + method + "-" + path.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "");
}

function group(path) {
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "v1" && parts[1]) return parts[1];
  return parts[0] === "console" || parts[0] === "docs" ? "console" : "host";
}

function refName(ref) {
  return String(ref).split("/").pop();
}

function typeText(schema, doc) {
  if (!schema || typeof schema !== "object") return "any";
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.map((v) => JSON.stringify(v)).join(" | ");
  if ("const" in schema) return JSON.stringify(schema.const);
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    if (schema[key]) return schema[key].map((s) => typeText(s, doc)).join(key === "allOf" ? " & " : " | ");
  }
  const kind = Array.isArray(schema.type) ? schema.type.join(" | ") : schema.type;
  if (kind === "array") return `array of ${typeText(schema.items, doc)}`;
  return kind || "any";
}

function resolve(schema, doc) {
  if (schema && schema.$ref) return doc.components.schemas[refName(schema.$ref)] || {};
  return schema || {};
}

function limits(schema) {
  const found = [];
  for (const [key, text] of [["minLength", "min length"], ["maxLength", "max length"], ["minimum", "≥"], ["maximum", "≤"], ["exclusiveMinimum", ">"], ["default", "default"]]) {
    if (key in schema) found.push(`${text} ${JSON.stringify(schema[key])}`);
  }
  return found.join(", ");
}

// A schema as nested lists of its properties; `seen` stops at a schema already open above.
function schemaView(schema, doc, seen = new Set(), depth = 0) {
  const name = schema && schema.$ref ? refName(schema.$ref) : null;
  const resolved = resolve(schema, doc);
  const items = resolved.type === "array" ? resolve(resolved.items, doc) : null;
  const target = items && items.properties ? items : resolved;
  if (!target.properties || depth > 4 || (name && seen.has(name))) return null;
  const open = new Set(seen);
  if (name) open.add(name);
  const required = new Set(target.required || []);
  return h(
    "ul",
    { class: "schema" },
    Object.entries(target.properties).map(([prop, sub]) => {
      const subResolved = resolve(sub, doc);
      const nested = subResolved.properties || (subResolved.type === "array" && resolve(subResolved.items, doc).properties)
        ? schemaView(sub, doc, open, depth + 1)
        : null;
      const anyOfRefs = (sub.anyOf || []).filter((s) => s.$ref);
      return h(
        "li",
        {},
        h("code", {}, prop),
        " ",
        h("span", { class: "type" }, typeText(sub, doc)),
        required.has(prop) ? [" ", h("span", { class: "required" }, "required")] : null,
        limits(subResolved) ? h("span", { class: "type" }, ` (${limits(subResolved)})`) : null,
        subResolved.description || sub.description ? h("div", { class: "meta" }, subResolved.description || sub.description) : null,
        nested,
        anyOfRefs.length && !nested ? anyOfRefs.map((s) => schemaView(s, doc, open, depth + 1)) : null,
      );
    }),
  );
}

function parameters(operation) {
  const params = operation.parameters || [];
  if (!params.length) return null;
  return h(
    "div",
    {},
    h("h4", {}, "Parameters"),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "params" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "In"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, "About"))),
        h(
          "tbody",
          {},
          params.map((p) =>
            h(
              "tr",
              {},
              h("td", {}, h("code", {}, p.name), p.required ? [" ", h("span", { class: "required" }, "required")] : null),
              h("td", {}, p.in),
              h("td", {}, h("span", { class: "type" }, typeText(p.schema))),
              h("td", {}, [p.description, p.schema && p.schema.description, p.schema ? limits(p.schema) : ""].filter(Boolean).join("; ")),
            ),
          ),
        ),
      ),
    ),
  );
}

function body(operation, doc) {
  const request = operation.requestBody;
  if (!request) return null;
  return h(
    "div",
    {},
    h("h4", {}, "Request body"),
    Object.entries(request.content || {}).map(([media, content]) =>
      h("div", {}, h("p", {}, h("code", {}, media), " ", h("span", { class: "type" }, typeText(content.schema, doc))), schemaView(content.schema, doc)),
    ),
  );
}

function responses(operation, doc) {
  return h(
    "div",
    {},
    h("h4", {}, "Responses"),
    h(
      "ul",
      { class: "schema" },
      Object.entries(operation.responses || {}).map(([code, response]) =>
        h(
          "li",
          {},
          h("strong", {}, code),
          " ",
          response.description || "",
          Object.entries(response.content || {}).map(([media, content]) => [
            " · ",
            h("code", {}, media),
            " ",
            h("span", { class: "type" }, typeText(content.schema, doc)),
            code.startsWith("2") ? schemaView(content.schema, doc) : null,
          ]),
        ),
      ),
    ),
  );
}

function render(doc) {
  const groups = new Map();
  for (const [path, methods] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (!methods[method]) continue;
      const name = group(path);
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push({ path, method, operation: methods[method] });
    }
  }
  // the API's own groups first, then the host's routes, then these pages
  const rank = (name) => (name === "console" ? 2 : name === "host" ? 1 : 0);
  const ordered = [...groups.entries()].sort((a, b) => rank(a[0]) - rank(b[0]));
  const toc = h("nav", { class: "docs-toc", "aria-label": "Operations" });
  const content = h("div");
  for (const [name, operations] of ordered) {
    toc.append(
      h("h2", {}, name),
      h(
        "ul",
        {},
        operations.map(({ path, method }) =>
          h("li", {}, h("a", { href: "#" + anchor(method, path) }, h("span", { class: "type" }, method.toUpperCase()), " ", path)),
        ),
      ),
    );
    add(content,
      h("h2", { id: "group-" + name }, name),
      operations.map(({ path, method, operation }) =>
        h(
          "section",
          { class: "operation", id: anchor(method, path), "aria-labelledby": anchor(method, path) + "-title" },
          h("h3", { id: anchor(method, path) + "-title" }, h("span", { class: ["method", method] }, method), h("span", { class: "path" }, path)),
          h("p", {}, operation.summary || ""),
          h("p", { class: "meta" }, operation.security && operation.security.length ? "Needs Authorization: Bearer <API key>." : "No API key."),
          parameters(operation),
          body(operation, doc),
          responses(operation, doc),
        ),
      ),
    );
  }
  const schemas = Object.entries((doc.components && doc.components.schemas) || {});
  toc.append(h("h2", {}, "schemas"), h("ul", {}, schemas.map(([name]) => h("li", {}, h("a", { href: "#schema-" + name }, name)))));
  add(content,
    h("h2", { id: "group-schemas" }, "schemas"),
    schemas.map(([name, schema]) =>
      h(
        "section",
        { class: "operation", id: "schema-" + name },
        h("h3", {}, h("span", { class: "path" }, name)),
        schema.description ? h("p", {}, schema.description) : null,
        schemaView({ $ref: "#/components/schemas/" + name }, doc) || h("p", { class: "type" }, typeText(schema, doc)),
      ),
    ),
  );
  root.replaceChildren(h("div", { class: "docs-layout" }, toc, content));
}

(async () => {
  try {
    const response = await fetch(apiUrl("openapi.json"), { cache: "no-store", credentials: "omit" });
    if (!response.ok) throw new Error("openapi.json answered " + response.status);
    const doc = await response.json();
    status.textContent = `${doc.info.title} ${doc.info.version} · OpenAPI ${doc.openapi}. Every /v1 call carries Authorization: Bearer <API key>; errors have the shape {"error": {"code", "message", "details"}}.`;
    render(doc);
    if (window.location.hash) document.getElementById(window.location.hash.slice(1))?.scrollIntoView();
  } catch (error) {
    status.textContent = "Could not load the OpenAPI document: " + (error.message || error);
  }
})();
