// The console: sign-in, navigation between pages (#/name/...), the live stream.

import { checkKey, EventStream, forget, remember, signedIn } from "./api.js";
import { add, clear, field, Form, h } from "./dom.js";
import { Sampler } from "./metrics.js";
import * as connectors from "./page-connectors.js";
import * as conversations from "./page-conversations.js";
import * as health from "./page-health.js";
import * as pluginsPage from "./page-plugins.js";
import * as senders from "./page-senders.js";
import * as subscriptions from "./page-subscriptions.js";

const PAGES = {
  conversations: { title: "Conversations", module: conversations },
  senders: { title: "Senders", module: senders },
  connectors: { title: "Connectors", module: connectors },
  subscriptions: { title: "Subscriptions", module: subscriptions },
  health: { title: "Health", module: health },
  plugins: { title: "Plugins", module: pluginsPage },
};

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const session = document.getElementById("session");
const streamStatus = document.getElementById("stream-status");
const stream = new EventStream();
const sampler = new Sampler();
let unmount = null;

const STATUS_TEXT = {
  connecting: "Live updates: connecting…",
  live: "Live updates: on",
  reconnecting: "Live updates: reconnecting…",
  off: "Live updates: off",
};
stream.onStatus((state) => {
  streamStatus.dataset.state = state;
  streamStatus.textContent = STATUS_TEXT[state] || state;
});

function leavePage() {
  if (unmount) {
    try {
      unmount();
    } catch {
      // a page that fails to clean up must not block the next one
    }
  }
  unmount = null;
}

function signIn(message) {
  leavePage();
  stream.stop();
  sampler.stop();
  nav.hidden = true;
  session.hidden = true;
  document.title = "Sign in · botbridge console";
  const keyField = field({
    name: "api_key",
    label: "API key",
    type: "password",
    autocomplete: "off",
    required: true,
    hint: "Kept in this browser tab only (session storage) and sent to the host as a bearer header; never put in a URL.",
  });
  const form = new Form([keyField], {
    submitLabel: "Sign in",
    onSubmit: async (values) => {
      const key = values.api_key.trim();
      try {
        await checkKey(key);
      } catch (error) {
        if (error.status === 401) throw { details: [{ field: "api_key", message: "This key was refused (unknown or revoked)." }] };
        throw error;
      }
      keyField.input.value = "";
      remember(key);
      start();
    },
  });
  const heading = h("h1", { tabindex: "-1" }, "Sign in");
  add(clear(main),
    heading,
    h("p", { class: "lead" }, "The botbridge console shows one account's senders, connectors, conversations and subscriptions, live, and the host's health. Sign in with an API key of that account."),
    message ? h("p", { class: "form-error", role: "alert" }, message) : null,
    form.element,
  );
  keyField.input.focus();
}

function start() {
  nav.hidden = false;
  session.hidden = false;
  stream.start();
  sampler.start();
  if (!window.location.hash.startsWith("#/")) window.location.hash = "#/conversations";
  else route();
}

function route() {
  const hash = window.location.hash;
  if (hash && !hash.startsWith("#/")) return; // an in-page anchor
  if (!signedIn()) {
    signIn();
    return;
  }
  const [name, ...rest] = (hash.slice(2) || "conversations").split("/");
  const page = PAGES[name] || null;
  leavePage();
  for (const link of nav.querySelectorAll("a[data-page]")) {
    if (link.dataset.page === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clear(main);
  if (!page) {
    document.title = "Not found · botbridge console";
    main.append(h("h1", { tabindex: "-1" }, "Page not found"), h("p", {}, h("a", { href: "#/conversations" }, "Go to conversations")));
    return;
  }
  document.title = `${page.title} · botbridge console`;
  unmount = page.module.mount(main, {
    stream,
    sampler,
    params: rest.map((part) => decodeURIComponent(part)),
    setTitle: (title) => {
      document.title = `${title} · botbridge console`;
    },
  });
  const heading = main.querySelector("h1");
  if (heading && document.activeElement && !main.contains(document.activeElement)) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  forget();
  signIn("Signed out. The key is gone from this tab.");
});

document.getElementById("skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

window.addEventListener("botbridge:unauthorized", () => {
  if (!signedIn()) return;
  forget();
  signIn("The host refused the API key (revoked or unknown). Sign in again.");
});

window.addEventListener("hashchange", route);

if (signedIn()) start();
else signIn();
