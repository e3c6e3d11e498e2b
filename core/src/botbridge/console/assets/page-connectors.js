// Connectors: a sender's bot. Credentials are write-only; updates carry version_number.

import { api, listAll, plugins, seg } from "./api.js";
import { badge, facts, field, Form, h, jsonObject, time } from "./dom.js";
import { deleteButton, recordsPage } from "./records.js";

const REPLACE_HINT = "Write-only: leave empty to keep what is stored; anything typed here replaces it.";

export function mount(main) {
  let senders = new Map();
  const { status, load, unmount } = recordsPage(main, {
    title: "Connectors",
    lead: "A connector ties a sender to a bot: every message the sender receives goes to that bot, and its answers go back through the sender.",
    newLabel: "New connector",
    path: "v1/connectors",
    empty: "No connectors yet.",
    failed: "Could not list connectors: ",
    beforeReload: loadSenders,
    card,
    create: createForm,
  });

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
          deleteButton("v1/connectors/" + seg(connector.id), error, () => {
            item.remove();
            status.textContent = "Connector deleted.";
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

  async function createForm() {
    await loadSenders();
    const fields = [
      await typeField(""),
      senderField(""),
      field({ name: "credentials", label: "Credentials", type: "password", autocomplete: "new-password", required: true, hint: "The bot's secret or key (Direct Line secret, Lex or Dialogflow credentials). Write-only: stored encrypted, never shown again." }),
      field({ name: "external_id", label: "External id", hint: "Your own reference for this connector (optional)." }),
      field({ name: "config", label: "Config (JSON object)", textarea: true, value: "{}", hint: 'e.g. {"base_url": "…", "conversation_timeout": 1800, "rate_limit": 30, "fallback_text": "…"}' }),
    ];
    return {
      fields,
      submitLabel: "Create connector",
      submit: async (values, form) => {
        const body = { type: values.type, sender_id: values.sender_id, credentials: values.credentials, config: jsonObject(form, "config") };
        if (values.external_id.trim()) body.external_id = values.external_id.trim();
        const connector = await api("POST", "v1/connectors", { body });
        return `Connector ${connector.type} created for ${senderName(connector.sender_id)}.`;
      },
    };
  }

  load();
  return unmount;
}
