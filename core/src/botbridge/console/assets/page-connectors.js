// Connectors: a sender's bot. Credentials are write-only; updates carry version_number.

import { api, listAll, plugins, seg } from "./api.js";
import { badge, clear, confirmButton, errorText, facts, field, Form, h, jsonObject, time } from "./dom.js";

const REPLACE_HINT = "Write-only: leave empty to keep what is stored; anything typed here replaces it.";

export function mount(main) {
  const alive = { on: true };
  const list = h("ul", { class: "records", "aria-label": "Connectors" });
  const status = h("p", { role: "status", class: "notice" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const formSlot = h("div");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const newButton = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, "New connector");
  let cursor = null;
  let senders = new Map();

  main.append(
    h("h1", {}, "Connectors"),
    h("p", { class: "lead" }, "A connector ties a sender to a bot: every message the sender receives goes to that bot, and its answers go back through the sender."),
    h("div", { class: "actions" }, newButton),
    formSlot,
    status,
    failure,
    list,
    h("div", { class: "actions" }, more),
  );

  async function loadSenders() {
    try {
      senders = new Map((await listAll("v1/senders")).map((s) => [s.id, s]));
    } catch {
      senders = new Map();
    }
  }

  function senderName(id) {
    const sender = senders.get(id);
    return sender ? `${sender.channel} · ${sender.address}` : id;
  }

  async function load(reset = true) {
    failure.textContent = "";
    try {
      if (reset) await loadSenders();
      const page = await api("GET", "v1/connectors", { query: { limit: 50, cursor: reset ? undefined : cursor } });
      if (!alive.on) return;
      if (reset) clear(list);
      for (const connector of page.items) list.append(card(connector));
      if (reset && !page.items.length) list.append(h("li", { class: "empty" }, "No connectors yet."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      failure.textContent = "Could not list connectors: " + errorText(error);
    }
  }

  async function typeField(value) {
    let types = [];
    try {
      types = (await plugins()).plugins.flatMap((p) => p.connector_types || []).sort();
    } catch {
      types = [];
    }
    if (value && !types.includes(value)) types.unshift(value);
    return types.length
      ? field({ name: "type", label: "Bot type", options: types, value: value || types[0], required: true })
      : field({ name: "type", label: "Bot type", value: value || "", required: true, hint: "e.g. AZURE_BOT_DIRECT_LINE" });
  }

  function senderField(value) {
    const options = [...senders.values()].map((s) => [s.id, `${s.channel} · ${s.address}`]);
    if (value && !senders.has(value)) options.unshift([value, value]);
    return options.length
      ? field({ name: "sender_id", label: "Sender", options, value: value || options[0][0], required: true })
      : field({ name: "sender_id", label: "Sender id", value: value || "", required: true, hint: "Create a sender first." });
  }

  function card(connector) {
    const item = h("li", { class: "record", dataset: { id: connector.id } });
    const error = h("p", { role: "alert", class: "form-error" });
    const show = () => {
      item.replaceChildren(
        h("div", { class: "record-head" }, h("h2", {}, `${connector.type} → ${senderName(connector.sender_id)}`), badge(connector.state)),
        facts([
          ["Id", h("code", {}, connector.id)],
          ["Sender", senderName(connector.sender_id)],
          ["External id", connector.external_id || "—"],
          ["State reason", connector.state_reason || undefined],
          ["Version", String(connector.version_number)],
          ["Config", Object.keys(connector.config || {}).length ? h("pre", {}, JSON.stringify(connector.config, null, 2)) : "—"],
          ["Created", time(connector.created_at)],
          ["Updated", time(connector.updated_at)],
        ]),
        error,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: edit, "aria-label": `Edit connector ${connector.type}` }, "Edit"),
          confirmButton("Delete", "Delete for good", async () => {
            error.textContent = "";
            try {
              await api("DELETE", "v1/connectors/" + seg(connector.id));
              item.remove();
              status.textContent = "Connector deleted.";
            } catch (e) {
              error.textContent = "Not deleted: " + errorText(e);
            }
          }),
        ),
      );
    };
    const edit = async () => {
      const fields = [
        await typeField(connector.type),
        senderField(connector.sender_id),
        field({ name: "credentials", label: "Replace credentials", type: "password", autocomplete: "new-password", hint: REPLACE_HINT }),
        field({ name: "external_id", label: "External id", value: connector.external_id || "" }),
        field({ name: "config", label: "Config (JSON object)", textarea: true, value: JSON.stringify(connector.config || {}, null, 2) }),
      ];
      const form = new Form(fields, {
        title: `Edit connector ${connector.type}`,
        submitLabel: "Save connector",
        onCancel: show,
        onSubmit: async (values) => {
          const body = { version_number: String(connector.version_number) };
          if (values.type !== connector.type) body.type = values.type;
          if (values.sender_id !== connector.sender_id) body.sender_id = values.sender_id;
          if (values.credentials) body.credentials = values.credentials;
          if ((values.external_id || null) !== (connector.external_id || null)) body.external_id = values.external_id || null;
          const config = jsonObject(form, "config");
          if (JSON.stringify(config) !== JSON.stringify(connector.config || {})) body.config = config;
          try {
            connector = await api("PATCH", "v1/connectors/" + seg(connector.id), { body });
          } catch (e) {
            if (e.status === 409) {
              e.details = [];
              e.message = "This connector was changed meanwhile: cancel and edit again to start from its current version.";
            }
            throw e;
          }
          show();
          status.textContent = `Connector saved (version ${connector.version_number}).`;
        },
      });
      item.replaceChildren(form.element);
      fields[0].input.focus();
    };
    show();
    return item;
  }

  async function openCreate() {
    if (formSlot.firstChild) {
      closeCreate();
      return;
    }
    await loadSenders();
    const fields = [
      await typeField(""),
      senderField(""),
      field({ name: "credentials", label: "Credentials", type: "password", autocomplete: "new-password", required: true, hint: "The bot's secret or key (Direct Line secret, Lex or Dialogflow credentials). Write-only: stored encrypted, never shown again." }),
      field({ name: "external_id", label: "External id", hint: "Your own reference for this connector (optional)." }),
      field({ name: "config", label: "Config (JSON object)", textarea: true, value: "{}", hint: 'e.g. {"base_url": "…", "conversation_timeout": 1800, "rate_limit": 30, "fallback_text": "…"}' }),
    ];
    const form = new Form(fields, {
      title: "New connector",
      submitLabel: "Create connector",
      onCancel: closeCreate,
      onSubmit: async (values) => {
        const body = { type: values.type, sender_id: values.sender_id, credentials: values.credentials, config: jsonObject(form, "config") };
        if (values.external_id.trim()) body.external_id = values.external_id.trim();
        const connector = await api("POST", "v1/connectors", { body });
        closeCreate();
        status.textContent = `Connector ${connector.type} created for ${senderName(connector.sender_id)}.`;
        await load();
      },
    });
    formSlot.replaceChildren(form.element);
    newButton.setAttribute("aria-expanded", "true");
    fields[0].input.focus();
  }

  function closeCreate() {
    clear(formSlot);
    newButton.setAttribute("aria-expanded", "false");
    newButton.focus();
  }

  newButton.addEventListener("click", openCreate);
  more.addEventListener("click", () => load(false));
  load();
  return () => {
    alive.on = false;
  };
}
