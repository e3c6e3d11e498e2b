// Senders: the account's addresses on a channel. Credentials and webhook secrets are write-only.

import { api, plugins, seg } from "./api.js";
import { badge, clear, confirmButton, errorText, facts, field, Form, h, jsonObject, time } from "./dom.js";

const SECRET_HINT = "Write-only: stored encrypted, never shown again.";
const REPLACE_HINT = "Write-only: leave empty to keep what is stored; anything typed here replaces it.";

export function mount(main) {
  const alive = { on: true };
  const list = h("ul", { class: "records", "aria-label": "Senders" });
  const status = h("p", { role: "status", class: "notice" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const formSlot = h("div");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const newButton = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, "New sender");
  let cursor = null;

  main.append(
    h("h1", {}, "Senders"),
    h("p", { class: "lead" }, "A sender is an address of this account on a channel (a short code, a WhatsApp number…). Providers deliver its messages to its webhook URL."),
    h("div", { class: "actions" }, newButton),
    formSlot,
    status,
    failure,
    list,
    h("div", { class: "actions" }, more),
  );

  async function load(reset = true) {
    failure.textContent = "";
    try {
      const page = await api("GET", "v1/senders", { query: { limit: 50, cursor: reset ? undefined : cursor } });
      if (!alive.on) return;
      if (reset) clear(list);
      for (const sender of page.items) list.append(card(sender));
      if (reset && !page.items.length) list.append(h("li", { class: "empty" }, "No senders yet."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      failure.textContent = "Could not list senders: " + errorText(error);
    }
  }

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
          confirmButton("Delete", "Delete for good", async () => {
            error.textContent = "";
            try {
              await api("DELETE", "v1/senders/" + seg(sender.id));
              item.remove();
              status.textContent = `Sender ${sender.address} deleted.`;
            } catch (e) {
              error.textContent = "Not deleted: " + errorText(e);
            }
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

  async function openCreate() {
    if (formSlot.firstChild) {
      closeCreate();
      return;
    }
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
    const form = new Form(fields, {
      title: "New sender",
      submitLabel: "Create sender",
      onCancel: closeCreate,
      onSubmit: async (values) => {
        const body = { channel: values.channel.trim(), address: values.address.trim(), config: jsonObject(form, "config") };
        if (values.credentials) body.credentials = values.credentials;
        if (values.webhook_secret) body.webhook_secret = values.webhook_secret;
        const sender = await api("POST", "v1/senders", { body });
        closeCreate();
        status.textContent = `Sender ${sender.address} created. Its webhook URL: ${sender.webhook_url}`;
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
