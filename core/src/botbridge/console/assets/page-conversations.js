// Conversations: a live list (search by contact) and one conversation as a chat transcript.

import { api, listAll, seg } from "./api.js";
import { badge, clear, debounce, errorText, facts, field, h, safeUrl, time } from "./dom.js";

export function mount(main, ctx) {
  if (ctx.params[0]) return mountTranscript(main, ctx, ctx.params[0]);
  return mountList(main, ctx);
}

let senderNames = null;

async function senderName(id) {
  if (!senderNames || !senderNames.has(id)) {
    try {
      senderNames = new Map((await listAll("v1/senders")).map((s) => [s.id, `${s.channel} · ${s.address}`]));
    } catch {
      senderNames = senderNames || new Map();
    }
  }
  return senderNames.get(id) || id;
}

// --- the list ----------------------------------------------------------------

function mountList(main, ctx) {
  const alive = { on: true };
  const contactField = field({ name: "contact", label: "Contact", type: "search", hint: "The phone number or address exactly as the channel gives it, e.g. +14085551212." });
  const stateField = field({ name: "state", label: "State", options: [["", "Any"], ["open", "Open"], ["closed", "Closed"]], value: "" });
  const search = h(
    "form",
    { class: "panel inline-form", role: "search", "aria-label": "Search conversations" },
    contactField.wrap,
    stateField.wrap,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Search"), h("button", { type: "button", onclick: () => { contactField.input.value = ""; stateField.input.value = ""; load(); } }, "Clear")),
  );
  const list = h("ul", { class: "records", "aria-label": "Conversations" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const live = h("p", { role: "status", class: "meta" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const rows = new Map();
  let cursor = null;
  let filters = {};

  main.append(
    h("h1", {}, "Conversations"),
    h("p", { class: "lead" }, "Newest first. The list follows the live stream: new conversations and changes appear without a reload."),
    search,
    failure,
    live,
    list,
    h("div", { class: "actions" }, more),
  );

  function row(conversation) {
    return h(
      "li",
      { class: "record", dataset: { id: conversation.id } },
      h(
        "a",
        { class: "conversation-link", href: "#/conversations/" + seg(conversation.id) },
        h("div", { class: "record-head" }, h("span", { class: "contact" }, conversation.contact), badge(conversation.state)),
        h(
          "div",
          { class: "meta" },
          "Last message ",
          time(conversation.last_mo_at),
          " · opened ",
          time(conversation.opened_at),
          conversation.closed_at ? [" · closed ", time(conversation.closed_at)] : null,
        ),
        h("div", { class: "meta", dataset: { sender: conversation.sender_id } }, "Sender ", conversation.sender_label || conversation.sender_id),
      ),
    );
  }

  async function labelled(conversation) {
    conversation.sender_label = await senderName(conversation.sender_id);
    return conversation;
  }

  async function load(reset = true) {
    failure.textContent = "";
    if (reset) filters = { contact: contactField.input.value.trim(), state: stateField.input.value };
    try {
      const page = await api("GET", "v1/conversations", { query: { ...filters, limit: 50, cursor: reset ? undefined : cursor } });
      if (!alive.on) return;
      if (reset) {
        clear(list);
        rows.clear();
      }
      for (const conversation of page.items) {
        const element = row(await labelled(conversation));
        rows.set(conversation.id, { conversation, element });
        list.append(element);
      }
      if (!rows.size) list.append(h("li", { class: "empty", dataset: { empty: "1" } }, filters.contact ? `No conversations with ${filters.contact}.` : "No conversations yet."));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      failure.textContent = "Could not list conversations: " + errorText(error);
    }
  }

  function matches(conversation) {
    return (!filters.contact || conversation.contact === filters.contact) && (!filters.state || conversation.state === filters.state);
  }

  // A conversation's change from the stream: update its row, or fetch and show a new one on top.
  const pending = new Map();
  const apply = debounce(async () => {
    const changes = [...pending.values()];
    pending.clear();
    if (changes.length > 10) {
      // many at once (the stream replaying its buffer after sign-in): one page read, not one per conversation
      await load();
      return;
    }
    for (const change of changes) {
      if (!alive.on) return;
      const known = rows.get(change.id);
      let conversation;
      try {
        conversation = await labelled(await api("GET", "v1/conversations/" + seg(change.id)));
      } catch {
        continue; // erased or not ours any more
      }
      if (!alive.on) return;
      const element = row(conversation);
      if (known) {
        known.element.replaceWith(element);
      } else if (matches(conversation)) {
        list.querySelector("[data-empty]")?.remove();
        list.prepend(element);
        live.textContent = `New conversation with ${conversation.contact}.`;
      } else {
        continue;
      }
      rows.set(conversation.id, { conversation, element });
    }
  }, 250);

  const unsubscribe = ctx.stream.subscribe((frame) => {
    if (frame.event === "conversation" && frame.data && frame.data.id) {
      pending.set(frame.data.id, frame.data);
      apply();
    }
  });

  search.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  more.addEventListener("click", () => load(false));
  load();
  return () => {
    alive.on = false;
    apply.cancel();
    unsubscribe();
  };
}

// --- one conversation ----------------------------------------------------------

function mediaList(media) {
  if (!media || !media.length) return null;
  return h(
    "div",
    { class: "media" },
    media.map((item) => {
      const url = safeUrl(item.url);
      const text = item.caption || (item.content_type ? `${item.content_type} attachment` : "attachment");
      if (!url) return h("div", {}, text, " (", item.url, ")");
      const isImage = String(item.content_type || "").startsWith("image/") || /\.(png|jpe?g|gif|webp)(\?|$)/i.test(url);
      return h(
        "div",
        {},
        h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, text),
        isImage ? h("img", { src: url, alt: item.caption || "Image in the message", loading: "lazy", referrerpolicy: "no-referrer" }) : null,
      );
    }),
  );
}

function numberedAlready(text, options) {
  return options.every((option, i) => text.includes(`${i + 1}. ${option.label}`));
}

function deliveryLine(message) {
  const states = message.states && message.states.length ? message.states : [{ state: message.state, at: message.updated_at }];
  const last = states[states.length - 1];
  // a reason is news only when the message failed (a delivery report may say "SUCCESS")
  const failed = message.state === "FAILED";
  const reason = failed ? message.reason_description || message.reason_code || last.reason_description || last.reason_code || "no reason given" : null;
  return h(
    "div",
    { class: "delivery" },
    h("span", { class: "visually-hidden" }, "Delivery state: "),
    badge(message.state),
    h("ol", { "aria-label": "State history" }, states.map((s) => h("li", {}, `${s.state} `, time(s.at, false)))),
    reason ? h("span", { class: "reason" }, reason) : null,
  );
}

function itemElement(item, conversation) {
  switch (item.type) {
    case "mo": {
      const body = item.text || (item.postback ? "" : item.media && item.media.length ? "" : "(empty message)");
      return h(
        "li",
        { class: "turn user", dataset: { id: item.id, type: "mo" } },
        h("div", { class: "who" }, conversation.contact, " · ", time(item.at, false)),
        h("div", { class: "bubble" }, h("span", { class: "visually-hidden" }, "User: "), body, item.postback ? h("div", { class: "meta" }, "Chose: ", item.postback) : null, mediaList(item.media)),
      );
    }
    case "mt": {
      const message = item.message || {};
      const options = message.options || [];
      const text = message.text || "";
      const origin = message.origin === "fallback" ? "Fallback" : message.origin === "api" ? "Sent through the API" : "Bot";
      return h(
        "li",
        { class: "turn bot", dataset: { id: item.id, type: "mt", state: message.state } },
        h("div", { class: "who" }, origin, " · ", time(item.at, false)),
        h(
          "div",
          { class: "bubble" },
          h("span", { class: "visually-hidden" }, `${origin}: `),
          text,
          // numbered as a text channel gets them ("1. Billing"); an answer of "1" picks the first
          options.length && !numberedAlready(text, options)
            ? h("ul", { class: "options", "aria-label": "Options offered" }, options.map((o, i) => h("li", {}, `${i + 1}. ${o.label}`)))
            : null,
          mediaList(message.media),
        ),
        deliveryLine(message),
      );
    }
    case "bot_error":
      return h(
        "li",
        { class: "turn bot error", dataset: { id: item.id, type: "bot_error" } },
        h("div", { class: "who" }, "Bot error · ", time(item.at, false)),
        h("div", { class: "bubble", role: "note" }, "The bot failed: ", item.reason || "no reason given"),
      );
    case "conversation_opened":
      return h("li", { class: "turn system", dataset: { id: item.id, type: item.type } }, h("span", { class: "note" }, "Conversation opened · ", time(item.at)));
    case "conversation_closed":
      return h(
        "li",
        { class: "turn system", dataset: { id: item.id, type: item.type } },
        h("span", { class: "note" }, "Conversation closed", item.reason ? ` (${item.reason})` : "", " · ", time(item.at)),
      );
    default:
      return h("li", { class: "turn system", dataset: { id: item.id, type: String(item.type) } }, h("span", { class: "note" }, String(item.type)));
  }
}

function mountTranscript(main, ctx, id) {
  const alive = { on: true };
  const heading = h("h1", {}, "Conversation");
  const details = h("div");
  const transcript = h("ol", { class: "transcript", "aria-label": "Transcript" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const live = h("p", { role: "status", class: "meta" });
  const shown = new Map(); // item id → [signature, element]
  let conversation = null;

  main.append(
    h("p", {}, h("a", { href: "#/conversations" }, "← All conversations")),
    heading,
    details,
    failure,
    transcript,
    live,
  );

  async function load() {
    try {
      const [found, timeline] = await Promise.all([
        api("GET", "v1/conversations/" + seg(id)),
        api("GET", "v1/conversations/" + seg(id) + "/messages"),
      ]);
      if (!alive.on) return;
      failure.textContent = "";
      const first = conversation === null;
      conversation = found;
      heading.textContent = `Conversation with ${conversation.contact}`;
      ctx.setTitle(`Conversation with ${conversation.contact}`);
      details.replaceChildren(
        facts([
          ["State", badge(conversation.state)],
          ["Sender", await senderName(conversation.sender_id)],
          ["Connector", h("code", {}, conversation.connector_id)],
          ["Bot session", conversation.backend_session_id ? h("code", {}, conversation.backend_session_id) : "—"],
          ["Opened", time(conversation.opened_at)],
          ["Last message", time(conversation.last_mo_at)],
          ["Closed", conversation.closed_at ? time(conversation.closed_at) : undefined],
        ]),
      );
      render(timeline.items || []);
      if (!first) live.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
    } catch (error) {
      if (!alive.on) return;
      failure.textContent = error.status === 404 ? "No such conversation in this account (or it was erased)." : "Could not load the conversation: " + errorText(error);
    }
  }

  // Keyed: an item already shown is replaced only when it changed (a state moved on), so focus and scroll stay.
  function render(items) {
    const seen = new Set();
    let previous = null;
    transcript.querySelector(".empty")?.remove();
    for (const item of items) {
      seen.add(item.id);
      const signature = JSON.stringify(item);
      const known = shown.get(item.id);
      let element = known ? known[1] : null;
      if (!known || known[0] !== signature) {
        const fresh = itemElement(item, conversation);
        if (element) element.replaceWith(fresh);
        element = fresh;
        shown.set(item.id, [signature, element]);
      }
      if (previous ? previous.nextSibling !== element : transcript.firstChild !== element) {
        if (previous) previous.after(element);
        else transcript.prepend(element);
      }
      previous = element;
    }
    for (const [key, [, element]] of shown) {
      if (!seen.has(key)) {
        element.remove();
        shown.delete(key);
      }
    }
    if (!items.length) transcript.replaceChildren(h("li", { class: "empty" }, "Nothing in this conversation's history."));
  }

  const refresh = debounce(load, 200);
  const unsubscribe = ctx.stream.subscribe((frame) => {
    if (!conversation) return;
    if (frame.event === "conversation") {
      if (frame.data.id === id) refresh();
      return;
    }
    const fields = (frame.data.event && frame.data.event["fld-val-list"]) || {};
    const sender = fields.sender_id_id;
    const parties = [fields.from_address, fields.to_address];
    if ((!sender || sender === conversation.sender_id) && parties.includes(conversation.contact)) refresh();
  });
  load();
  return () => {
    alive.on = false;
    refresh.cancel();
    unsubscribe();
  };
}
