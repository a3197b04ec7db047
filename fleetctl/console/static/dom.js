// Building the page from data. Every value reaches the page as text (text nodes,
// textContent, attribute values): nothing from a host or the API is parsed as HTML.

/** An element: h("a", {href: "#/x", class: "y", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace everything in ``el`` with ``children``. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** How a cell shows a value: text, with objects as compact JSON. */
export function cellText(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, error.message || String(error));
}

/** A link to a console page. */
export function link(hash, text) {
  return h("a", { href: hash }, text);
}

export function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\+00:00$|Z$/, " UTC") : "";
}

/** A plain table: columns as [title, value(row) -> text or Node]. */
export function simpleTable(columns, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("thead", {}, h("tr", {}, columns.map(([title]) => h("th", {}, title)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          {},
          columns.map(([, value]) => {
            const shown = value(row);
            return h("td", {}, shown instanceof Node ? shown : cellText(shown));
          }),
        ),
      ),
    ),
  );
}

/** A datetime-local input's value (the browser's time zone) as ISO 8601 UTC. */
export function isoOf(local) {
  return local ? new Date(local).toISOString().replace(/\.\d{3}Z$/, "Z") : "";
}

/** An ISO time as a datetime-local input's value, to the second. */
export function localInput(iso) {
  const at = iso ? new Date(iso) : new Date();
  const pad = (n) => String(n).padStart(2, "0");
  return (
    `${at.getFullYear()}-${pad(at.getMonth() + 1)}-${pad(at.getDate())}` +
    `T${pad(at.getHours())}:${pad(at.getMinutes())}:${pad(at.getSeconds())}`
  );
}
