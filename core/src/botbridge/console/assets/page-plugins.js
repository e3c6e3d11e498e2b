// Plugins: what is installed, what each provides, and load errors.

import { api } from "./api.js";
import { badge, errorText, facts, h } from "./dom.js";

export function mount(main) {
  const alive = { on: true };
  const summary = h("p", { role: "status" });
  const list = h("ul", { class: "records", "aria-label": "Plugins" });
  main.append(
    h("h1", {}, "Plugins"),
    h("p", { class: "lead" }, "Every plugin the host found, what it provides and any error while loading it. A broken plugin is reported and the host runs without it."),
    summary,
    list,
  );

  (async () => {
    let found;
    try {
      found = (await api("GET", "v1/plugins")).plugins;
    } catch (error) {
      summary.textContent = "Could not list plugins: " + errorText(error);
      return;
    }
    if (!alive.on) return;
    const broken = found.filter((p) => p.errors && p.errors.length);
    summary.textContent = `${found.length} plugins; ${broken.length ? `${broken.length} with load errors` : "none with load errors"}.`;
    // broken ones first: they are what an operator comes here for
    const ordered = [...broken, ...found.filter((p) => !broken.includes(p))];
    for (const plugin of ordered) {
      const errors = plugin.errors || [];
      list.append(
        h(
          "li",
          { class: "record", dataset: { name: plugin.name } },
          h(
            "div",
            { class: "record-head" },
            h("h2", {}, plugin.name),
            h("span", {}, errors.length ? badge("load error", "bad") : badge("loaded", "ok"), plugin.builtin ? [" ", badge("built in", "info")] : null),
          ),
          facts([
            ["Distribution", plugin.distribution ? `${plugin.distribution} ${plugin.version || ""}`.trim() : "—"],
            ["Kinds", (plugin.kinds || []).join(", ") || "—"],
            ["Channels", (plugin.channels || []).join(", ") || undefined],
            ["Connector types", (plugin.connector_types || []).join(", ") || undefined],
            ["Store schemes", (plugin.store_schemes || []).join(", ") || undefined],
            ["Hooks", (plugin.hooks || []).join(", ") || undefined],
          ]),
          errors.length ? h("div", { class: "form-error" }, h("strong", {}, "Load errors:"), h("ul", {}, errors.map((e) => h("li", {}, e)))) : null,
        ),
      );
    }
  })();

  return () => {
    alive.on = false;
  };
}
