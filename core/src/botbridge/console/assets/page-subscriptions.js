// Subscriptions: event webhooks, their dead letters, and redelivering one.

import { api, seg } from "./api.js";
import { errorText, facts, field, h, time } from "./dom.js";
import { deleteButton, recordsPage } from "./records.js";

export function mount(main) {
  const { status, load, alive, unmount } = recordsPage(main, {
    title: "Subscriptions",
    lead: "Webhooks that receive this account's events, signed with their secret. An event a subscriber never accepted, after every retry, is kept as a dead letter: redeliver it once the subscriber is fixed.",
    newLabel: "New subscription",
    path: "v1/subscriptions",
    empty: "No subscriptions yet.",
    failed: "Could not list subscriptions: ",
    card,
    create: createForm,
  });

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
        deleteButton("v1/subscriptions/" + seg(subscription.id), error, async () => {
          status.textContent = "Subscription deleted.";
          await load();
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
    if (!alive()) return;
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

  function createForm() {
    const fields = [
      field({ name: "url", label: "URL", type: "url", required: true, hint: "Where events are POSTed: an http(s) URL of your service." }),
      field({ name: "topic", label: "Topic", value: "SCG-Message", required: true }),
      field({ name: "secret", label: "Signing secret", type: "password", autocomplete: "new-password", required: true, hint: "8 characters or more. Write-only: stored encrypted, never shown again." }),
    ];
    return {
      fields,
      submitLabel: "Create subscription",
      submit: async (values) => {
        await api("POST", "v1/subscriptions", { body: { url: values.url.trim(), topic: values.topic.trim(), secret: values.secret } });
        return "Subscription created.";
      },
    };
  }

  load();
  return unmount;
}
