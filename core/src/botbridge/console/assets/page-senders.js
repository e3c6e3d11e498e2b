// Senders: the account's addresses on a channel. Credentials and webhook secrets are write-only.

import { api, plugins, seg } from "./api.js";
import { badge, facts, field, Form, h, jsonObject, time } from "./dom.js";
import { deleteButton, recordsPage } from "./records.js";

const SECRET_HINT = "Write-only: stored encrypted, never shown again.";
const REPLACE_HINT = "Write-only: leave empty to keep what is stored; anything typed here replaces it.";

export function mount(main) {
  const { status, load, unmount } = recordsPage(main, {
    title: "Senders",
    lead: "A sender is an address of this account on a channel (a short code, a WhatsApp number…). Providers deliver its messages to its webhook URL.",
    newLabel: "New sender",
    path: "v1/senders",
    empty: "No senders yet.",
    failed: "Could not list senders: ",
    card,
    create: createForm,
  });

  function card(sender) {
    const item = h("li", { class: "record", dataset: { id: sender.id } });
    const error = h("p", { role: "alert", class: "form-error" });
    const show = () => {
      item.replaceChildren(
        h(
          "div",
          { class: "record-head" },
          h("h2", {}, `${sender.channel} · ${sender.address}`),
          badge(sender.state),
        ),
        facts([
          ["Id", h("code", {}, sender.id)],
          ["Webhook URL", h("code", {}, sender.webhook_url)],
          ["State reason", sender.state_reason || undefined],
          ["Config", Object.keys(sender.config || {}).length ? h("pre", {}, JSON.stringify(sender.config, null, 2)) : "—"],
          ["Created", time(sender.created_at)],
          ["Updated", time(sender.updated_at)],
        ]),
        error,
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", onclick: edit, "aria-label": `Edit sender ${sender.address}` }, "Edit"),
          deleteButton("v1/senders/" + seg(sender.id), error, () => {
            item.remove();
            status.textContent = `Sender ${sender.address} deleted.`;
          }),
        ),
      );
    };
    const edit = () => {
      const fields = [
        field({ name: "address", label: "Address", value: sender.address, required: true }),
        field({ name: "credentials", label: "Replace credentials", type: "password", autocomplete: "new-password", hint: REPLACE_HINT }),
        field({ name: "webhook_secret", label: "Replace webhook secret", type: "password", autocomplete: "new-password", hint: REPLACE_HINT }),
        field({ name: "config", label: "Config (JSON object)", textarea: true, value: JSON.stringify(sender.config || {}, null, 2) }),
      ];
      const form = new Form(fields, {
        title: `Edit sender ${sender.address}`,
        submitLabel: "Save sender",
        onCancel: () => {
          show();
          item.querySelector("button")?.focus();
        },
        onSubmit: async (values) => {
          const body = {};
          if (values.address.trim() !== sender.address) body.address = values.address.trim();
          if (values.credentials) body.credentials = values.credentials;
          if (values.webhook_secret) body.webhook_secret = values.webhook_secret;
          const config = jsonObject(form, "config");
          if (JSON.stringify(config) !== JSON.stringify(sender.config || {})) body.config = config;
          const updated = await api("PATCH", "v1/senders/" + seg(sender.id), { body });
          sender = updated;
          show();
          status.textContent = `Sender ${sender.address} saved.`;
        },
      });
      item.replaceChildren(form.element);
      fields[0].input.focus();
    };
    show();
    return item;
  }

  async function createForm() {
    let channels = [];
    try {
      channels = (await plugins()).plugins.flatMap((p) => p.channels || []).sort();
    } catch {
      channels = [];
    }
    const channelField = channels.length
      ? field({ name: "channel", label: "Channel", options: channels, value: channels[0], required: true })
      : field({ name: "channel", label: "Channel", required: true, hint: "The channel plugin's name, e.g. scg, sinch, bird." });
    const fields = [
      channelField,
      field({ name: "address", label: "Address", required: true, hint: "The number, short code or id on the channel, e.g. 66000." }),
      field({ name: "credentials", label: "Credentials", type: "password", autocomplete: "new-password", hint: "The provider's API token or key. " + SECRET_HINT }),
      field({ name: "webhook_secret", label: "Webhook secret", type: "password", autocomplete: "new-password", hint: "What the provider signs its webhooks with. " + SECRET_HINT }),
      field({ name: "config", label: "Config (JSON object)", textarea: true, value: "{}", hint: 'Channel settings, e.g. {"base_url": "…"}.' }),
    ];
    return {
      fields,
      submitLabel: "Create sender",
      submit: async (values, form) => {
        const body = { channel: values.channel.trim(), address: values.address.trim(), config: jsonObject(form, "config") };
        if (values.credentials) body.credentials = values.credentials;
        if (values.webhook_secret) body.webhook_secret = values.webhook_secret;
        const sender = await api("POST", "v1/senders", { body });
        return `Sender ${sender.address} created. Its webhook URL: ${sender.webhook_url}`;
      },
    };
  }

  load();
  return unmount;
}
