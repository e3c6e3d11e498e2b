// The list pages (senders, connectors, subscriptions): a heading, a "New …" form,
// the records of one list endpoint a page at a time, and a line saying what was done.

import { api } from "./api.js";
import { clear, confirmButton, errorText, Form, h } from "./dom.js";

// Builds the page in `main` and returns what the page's cards and forms need:
// `status` (the line saying what was done), `load()` (from the first page again),
// `alive()` (false once the page is left) and `unmount` (what `mount` returns).
// Nothing is listed until the page calls `load()`.
//
// spec: title (the heading and the list's name), lead, newLabel (the "New …" button and
// its form's title), path (the list endpoint), empty (the text of an empty list),
// failed (the text before a listing error), card(record) → <li>, beforeReload (optional:
// awaited before the first page is asked again), and create() → { fields, submitLabel,
// submit(values, form) } where submit saves and resolves with the status line to show.
export function recordsPage(main, spec) {
  const { title, lead, newLabel, path, empty, failed, card, beforeReload, create } = spec;
  let alive = true;
  const list = h("ul", { class: "records", "aria-label": title });
  const status = h("p", { role: "status", class: "notice" });
  const failure = h("p", { role: "alert", class: "form-error" });
  const formSlot = h("div");
  const more = h("button", { type: "button", hidden: true }, "Load more");
  const newButton = h("button", { type: "button", class: "primary", "aria-expanded": "false" }, newLabel);
  let cursor = null;

  main.append(
    h("h1", {}, title),
    h("p", { class: "lead" }, lead),
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
      if (reset && beforeReload) await beforeReload();
      const page = await api("GET", path, { query: { limit: 50, cursor: reset ? undefined : cursor } });
      if (!alive) return;
      if (reset) clear(list);
      for (const record of page.items) list.append(card(record));
      if (reset && !page.items.length) list.append(h("li", { class: "empty" }, empty));
      cursor = page.next_cursor;
      more.hidden = !cursor;
    } catch (error) {
      failure.textContent = failed + errorText(error);
    }
  }

  async function openCreate() {
    if (formSlot.firstChild) {
      closeCreate();
      return;
    }
    const { fields, submitLabel, submit } = await create();
    const form = new Form(fields, {
      title: newLabel,
      submitLabel,
      onCancel: closeCreate,
      onSubmit: async (values) => {
        const done = await submit(values, form);
        closeCreate();
        status.textContent = done;
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
  return {
    status,
    load,
    alive: () => alive,
    unmount: () => {
      alive = false;
    },
  };
}

// A card's "Delete" (asked once more, in place): DELETE `url`, then `deleted()`;
// a refusal is shown in the card's `error` paragraph.
export function deleteButton(url, error, deleted) {
  return confirmButton("Delete", "Delete for good", async () => {
    error.textContent = "";
    try {
      await api("DELETE", url);
      await deleted();
    } catch (e) {
      error.textContent = "Not deleted: " + errorText(e);
    }
  });
}
