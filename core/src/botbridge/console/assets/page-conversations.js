// Conversations: a live list (search by contact) and one conversation as a chat transcript.

import { api, listAll, seg } from "./api.js";
import { badge, clear, debounce, errorText, facts, field, Form, h, safeUrl, time } from "./dom.js";

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

// Who made an MT (message.origin); anything else reads as the bot's.
const ORIGINS = {
  fallback: "Fallback",
  api: "Agent or API",
  interim: "Bot (still working)",
  handoff: "Hand-off timed out",
  opt_out: "Opt-out answer",
};

// Who handed a conversation off (handoff_by, a "handoff" item's reason), and why it came back ("resumed").
const HANDED_BY = { bot: "the bot", api: "an operator" };
const RESUMED_BY = { api: "by an operator", keyword: "the contact asked for the bot", timeout: "no agent answered in time" };

function systemLine(item, ...text) {
  return h("li", { class: "turn system", dataset: { id: item.id, type: String(item.type) } }, h("span", { class: "note" }, text));
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
      const origin = ORIGINS[message.origin] || "Bot";
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
      return systemLine(item, "Conversation opened · ", time(item.at));
    case "conversation_closed":
      return systemLine(item, "Conversation closed", item.reason ? ` (${item.reason})` : "", " · ", time(item.at));
    case "handoff":
      return systemLine(item, "Handed to an agent by ", HANDED_BY[item.reason] || item.reason || "—", " · ", time(item.at));
    case "resumed":
      return systemLine(item, "Given back to the bot (", RESUMED_BY[item.reason] || item.reason || "no reason given", ") · ", time(item.at));
    default:
      return systemLine(item, String(item.type));
  }
}

function mountTranscript(main, ctx, id) {
  const alive = { on: true };
  const heading = h("h1", {}, "Conversation");
  const details = h("div");
  const agent = agentControls(id, () => conversation, load, (text) => (live.textContent = text));
  const transcript = h("ol", { class: "transcript", "aria-label": "Transcript" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const live = h("p", { role: "status", class: "meta" });
  const shown = new Map(); // item id → [signature, element]
  let conversation = null;

  main.append(
    h("p", {}, h("a", { href: "#/conversations" }, "← All conversations")),
    heading,
    details,
    agent.element,
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
      agent.update(conversation);
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

// Hand-off to a person: who has the conversation now, the button that moves it, and an agent's reply form.
// `load` reads the conversation again (the change itself is queued, and the live stream tells when it is done).
function agentControls(id, current, load, announce) {
  const state = h("div", { class: "handoff" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const text = field({ name: "text", label: "Message", textarea: true, required: true, hint: "Sent to the contact in this conversation, as an agent." });
  const reply = new Form([text], {
    title: "Reply as an agent",
    submitLabel: "Send as agent",
    onSubmit: async (values) => {
      const conversation = current();
      await api("POST", "v1/messages", {
        body: { sender_id: conversation.sender_id, to: conversation.contact, text: values.text, conversation_id: conversation.id },
      });
      text.input.value = "";
      announce("Sent as agent.");
      load();
    },
  });
  const element = h("div", {}, state, failure, reply.element);
  let shownKey = null;

  async function change(button, action, queued) {
    failure.textContent = "";
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
    try {
      await api("POST", `v1/conversations/${seg(id)}/${action}`);
      announce(queued);
      await load();
    } catch (error) {
      button.disabled = false;
      button.removeAttribute("aria-busy");
      failure.textContent = (error.status === 409 ? "" : "Could not change who answers: ") + errorText(error);
    }
  }

  function update(conversation) {
    const open = conversation.state === "open";
    reply.element.hidden = !open;
    const key = [conversation.state, conversation.handoff_at, conversation.handoff_by].join("|");
    if (key === shownKey) return; // unchanged: the button keeps its focus
    const hadFocus = state.contains(document.activeElement);
    shownKey = key;
    failure.textContent = "";
    let button = null;
    if (conversation.handoff_at) {
      if (open) button = h("button", { type: "button" }, "Give back to the bot");
      button?.addEventListener("click", () => change(button, "resume", "Giving the conversation back to the bot…"));
      state.replaceChildren(
        h(
          "p",
          { class: "handoff-state" },
          badge("agent", "warn"),
          " With an agent since ",
          time(conversation.handoff_at),
          ", handed off by ",
          HANDED_BY[conversation.handoff_by] || conversation.handoff_by || "—",
          ".",
        ),
        button ? h("div", { class: "actions" }, button) : null,
      );
    } else {
      if (open) button = h("button", { type: "button", class: "primary" }, "Hand to an agent");
      button?.addEventListener("click", () => change(button, "handoff", "Handing the conversation to an agent…"));
      state.replaceChildren(
        h("p", { class: "meta" }, open ? "The bot answers this conversation." : "The conversation has ended."),
        button ? h("div", { class: "actions" }, button) : null,
      );
    }
    if (hadFocus && button) button.focus();
  }

  return { element, update };
}
