// The REST API as the console calls it.
//
// The API key lives in this tab's sessionStorage only. It leaves the browser
// in exactly one way: the Authorization header that `headersWith` builds.
// It is never put in a URL, never written to the console or the page.
// Every URL is relative to the page's own location, so a host mounted under a
// prefix (`/bridge/console`) is called at `/bridge/v1/...`.

const STORAGE_NAME = "botbridge-console-signin";

// `/bridge/console#/senders` → `/bridge/`: the root every API path hangs from.
export const ROOT = new URL(".", window.location.href);

export function signedIn() {
  return Boolean(window.sessionStorage.getItem(STORAGE_NAME));
}

export function remember(key) {
  window.sessionStorage.setItem(STORAGE_NAME, key);
}

export function forget() {
  window.sessionStorage.removeItem(STORAGE_NAME);
  pluginsOnce = null;
}

function headersWith(extra, key) {
  const headers = { accept: "application/json", ...extra };
  const bearer = key ?? window.sessionStorage.getItem(STORAGE_NAME);
  if (bearer) headers.authorization = "Bearer " + bearer;
  return headers;
}

// A URL below the root; `path` never starts with "/" (that would leave a mount prefix).
export function apiUrl(path, query) {
  const url = new URL(path.replace(/^\/+/, ""), ROOT);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, String(value));
  }
  return url;
}

// One segment of a path, e.g. an id: `v1/senders/` + seg(id).
export function seg(value) {
  return encodeURIComponent(String(value));
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = Array.isArray(details) ? details : [];
  }
}

function unauthorized() {
  window.dispatchEvent(new CustomEvent("botbridge:unauthorized"));
}

// Call the API; resolves with the JSON body (null for 204), rejects with ApiError.
export async function api(method, path, options = {}) {
  const { query, body, signal, key, quiet401 } = options;
  const extra = {};
  let payload;
  if (body !== undefined) {
    extra["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(apiUrl(path, query), {
      method,
      headers: headersWith(extra, key),
      body: payload,
      signal,
      cache: "no-store",
      credentials: "omit",
    });
  } catch (error) {
    if (signal && signal.aborted) throw error;
    throw new ApiError(0, "network_error", "The host did not answer (network error).", []);
  }
  if (response.status === 204) return null;
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const found = (data && data.error) || {};
    const error = new ApiError(
      response.status,
      found.code || "http_" + response.status,
      found.message || response.statusText || "HTTP " + response.status,
      found.details,
    );
    if (response.status === 401 && !quiet401) unauthorized();
    throw error;
  }
  return data;
}

// A public endpoint's text (/metrics, /readyz): no key is sent.
export async function publicGet(path, signal) {
  const response = await fetch(apiUrl(path), { signal, cache: "no-store", credentials: "omit" });
  return { status: response.status, text: await response.text() };
}

// Is this key accepted? Asked before it is kept.
export async function checkKey(key) {
  await api("GET", "v1/keys", { query: { limit: 1 }, key, quiet401: true });
}

// Every item of a list endpoint (all pages, up to `max` items).
export async function listAll(path, query = {}, max = 1000) {
  const items = [];
  let cursor;
  do {
    const page = await api("GET", path, { query: { ...query, limit: 200, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

let pluginsOnce = null;

// /v1/plugins, asked once per sign-in: channels and connector types for the forms.
export function plugins() {
  if (!pluginsOnce) {
    pluginsOnce = api("GET", "v1/plugins").catch((error) => {
      pluginsOnce = null;
      throw error;
    });
  }
  return pluginsOnce;
}

// --- the live stream ---------------------------------------------------------
//
// GET /v1/events/stream is Server-Sent Events, but EventSource cannot send an
// Authorization header: the stream is read with fetch() and parsed here. After
// a drop it reconnects (backing off) and resumes with Last-Event-ID.

export class SSEParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buffer = "";
    this.reset();
    this.lastId = null;
    this.retry = null;
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  feed(text) {
    this.buffer += text;
    let end;
    while ((end = this.buffer.indexOf("\n")) >= 0) {
      let line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.id !== null) this.lastId = this.id;
      if (this.data.length) {
        this.onFrame({ event: this.event || "message", data: this.data.join("\n"), id: this.lastId });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keepalive
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "event") this.event = value;
    else if (name === "data") this.data.push(value);
    else if (name === "id" && !value.includes("\0")) this.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

export class EventStream {
  constructor() {
    this.listeners = new Set();
    this.statusListeners = new Set();
    this.lastId = null;
    this.running = false;
    this.controller = null;
  }

  // fn({event: "event" | "conversation", data: object, id}); returns the unsubscribe function.
  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  onStatus(fn) {
    this.statusListeners.add(fn);
  }

  status(state) {
    for (const fn of this.statusListeners) fn(state);
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
    if (this.controller) this.controller.abort();
    this.lastId = null;
    this.status("off");
  }

  async loop() {
    let delay = 1000;
    while (this.running) {
      this.controller = new AbortController();
      const parser = new SSEParser((frame) => this.dispatch(frame));
      parser.lastId = this.lastId;
      try {
        const extra = { accept: "text/event-stream" };
        if (this.lastId) extra["last-event-id"] = this.lastId;
        const response = await fetch(apiUrl("v1/events/stream"), {
          headers: headersWith(extra),
          signal: this.controller.signal,
          cache: "no-store",
          credentials: "omit",
        });
        if (response.status === 401) {
          unauthorized();
          return;
        }
        if (!response.ok || !response.body) throw new Error("stream answered " + response.status);
        this.status("live");
        delay = 1000;
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.feed(value);
          if (parser.retry) delay = parser.retry;
        }
      } catch {
        // dropped, refused or aborted: below
      }
      if (!this.running) return;
      this.status("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 30000);
    }
  }

  dispatch(frame) {
    this.lastId = frame.id || this.lastId;
    let data;
    try {
      data = JSON.parse(frame.data);
    } catch {
      return;
    }
    for (const fn of this.listeners) {
      try {
        fn({ event: frame.event, data, id: frame.id });
      } catch {
        // one page's bug must not stop the stream for the others
      }
    }
  }
}
