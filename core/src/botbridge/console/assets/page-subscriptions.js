// Subscriptions: event webhooks, their dead letters, and redelivering one.

import { api, seg } from "./api.js";
import { clear, confirmButton, errorText, facts, field, Form, h, time } from "./dom.js";

export function mount(main) {
  const alive = { on: true };
  const list = h("ul", { class: "records", "aria-label": "Subscriptions" });
  const status = h("p", { role: "status", class: "notice" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const formSlot = h("div");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const newButton = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, "New subscription");
  let cursor = null;

  main.append(
    h("h1", {}, "Subscriptions"),
    h("p", { class: "lead" }, "Webhooks that receive this account's events, signed with their secret. An event a subscriber never accepted, after every retry, is kept as a dead letter: redeliver it once the subscriber is fixed."),
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
      const page = await api("GET", "v1/subscriptions", { query: { limit: 50, cursor: reset ? undefined : cursor } });
      if (!alive.on) return;
      if (reset) clear(list);
      for (const subscription of page.items) list.append(card(subscription));
      if (reset && !page.items.length) list.append(h("li", { class: "empty" }, "No subscriptions yet."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      failure.textContent = "Could not list subscriptions: " + errorText(error);
    }
  }

  function card(subscription) {
    const panelId = "dead-letters-" + subscription.id.replace(/[^a-z0-9_-]/gi, "-");
    const panel = h("div", { id: panelId, hidden: true });
    const error = h("p", { role: "alert", class: "form-error" });
    const toggle = h("button", { type: "button", "aria-expanded": "false", "aria-controls": panelId }, "Show dead letters");
    toggle.addEventListener("click", async () => {
      const open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      toggle.textContent = open ? "Show dead letters" : "Hide dead letters";
      panel.hidden = open;
      if (!open) await deadLetters(subscription, panel);
    });
    return h(
      "li",
      { class: "record", dataset: { id: subscription.id } },
      h("div", { class: "record-head" }, h("h2", {}, subscription.url), h("span", { class: "badge info" }, subscription.topic)),
      facts([
        ["Id", h("code", {}, subscription.id)],
        ["Topic", subscription.topic],
        ["Created", time(subscription.created_at)],
      ]),
      error,
      h(
        "div",
        { class: "actions" },
        toggle,
        confirmButton("Delete", "Delete for good", async () => {
          error.textContent = "";
          try {
            await api("DELETE", "v1/subscriptions/" + seg(subscription.id));
            status.textContent = "Subscription deleted.";
            await load();
          } catch (e) {
            error.textContent = "Not deleted: " + errorText(e);
          }
        }),
      ),
      panel,
    );
  }

  async function deadLetters(subscription, panel, after) {
    const base = "v1/subscriptions/" + seg(subscription.id) + "/failures";
    if (!after) panel.replaceChildren(h("p", { class: "meta" }, "Loading dead letters…"));
    let page;
    try {
      page = await api("GET", base, { query: { limit: 50, cursor: after } });
    } catch (error) {
      panel.replaceChildren(h("p", { class: "form-error", role: "alert" }, "Could not list dead letters: " + errorText(error)));
      return;
    }
    if (!alive.on) return;
    const items = h("ul", { class: "records", "aria-label": `Dead letters of ${subscription.url}` });
    for (const failure of page.items) items.append(deadLetter(subscription, failure));
    if (!after) {
      panel.replaceChildren(h("h3", {}, "Dead letters"));
      if (!page.items.length) panel.append(h("p", { class: "empty" }, "None: every event reached this subscriber."));
    }
    panel.append(items);
    if (page.next_cursor) {
      const more = h("button", { type: "button" }, "More dead letters");
      more.addEventListener("click", () => {
        more.remove();
        deadLetters(subscription, panel, page.next_cursor);
      });
      panel.append(h("div", { class: "actions" }, more));
    }
  }

  function deadLetter(subscription, failure) {
    const event = failure.event || {};
    const body = event.event || {};
    const fields = body["fld-val-list"] || {};
    const note = h("p", { role: "status", class: "notice" });
    const error = h("p", { role: "alert", class: "form-error" });
    const button = h("button", { type: "button", class: "primary", "aria-label": `Redeliver event ${event["event-id"] || failure.id}` }, "Redeliver");
    button.addEventListener("click", async () => {
      button.disabled = true;
      error.textContent = "";
      try {
        await api("POST", `v1/subscriptions/${seg(subscription.id)}/failures/${seg(failure.id)}/redeliver`);
        button.textContent = "Redelivery queued";
        button.setAttribute("aria-label", `Redelivery of event ${event["event-id"] || failure.id} queued`);
        note.textContent = "Queued again with the same event-id. This dead letter stays listed; if the delivery fails again, a new one appears.";
      } catch (e) {
        button.disabled = false;
        error.textContent = "Not redelivered: " + errorText(e);
      }
    });
    const summary = fields.message_body ?? (fields.new_state ? `${fields.previous_state || "?"} → ${fields.new_state}` : null);
    return h(
      "li",
      { class: "record", dataset: { id: failure.id } },
      h("div", { class: "record-head" }, h("strong", {}, body["evt-tp"] || "event"), h("span", { class: "badge bad" }, `${failure.attempts} ${failure.attempts === 1 ? "attempt" : "attempts"}`)),
      facts([
        ["Event id", h("code", {}, event["event-id"] || "—")],
        ["Last error", failure.last_error],
        ["Failed", time(failure.failed_at)],
        ["From → to", fields.from_address || fields.to_address ? `${fields.from_address || "?"} → ${fields.to_address || "?"}` : undefined],
        ["Summary", summary === null ? undefined : String(summary)],
      ]),
      error,
      note,
      h("div", { class: "actions" }, button),
    );
  }

  async function openCreate() {
    if (formSlot.firstChild) {
      closeCreate();
      return;
    }
    const fields = [
      field({ name: "url", label: "URL", type: "url", required: true, hint: "Where events are POSTed: an http(s) URL of your service." }),
      field({ name: "topic", label: "Topic", value: "SCG-Message", required: true }),
      field({ name: "secret", label: "Signing secret", type: "password", autocomplete: "new-password", required: true, hint: "8 characters or more. Write-only: stored encrypted, never shown again." }),
    ];
    const form = new Form(fields, {
      title: "New subscription",
      submitLabel: "Create subscription",
      onCancel: closeCreate,
      onSubmit: async (values) => {
        await api("POST", "v1/subscriptions", { body: { url: values.url.trim(), topic: values.topic.trim(), secret: values.secret } });
        closeCreate();
        status.textContent = "Subscription created.";
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
