// A results grid: click a column to sort (numbers as numbers), page through the rows.

import { cellText, h, replace } from "./dom.js";

const PAGE = 100;

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

/** A grid of ``rows`` (objects) under ``columns``; returns its element. */
export function grid(columns, rows, id = "grid") {
  const box = h("div", { class: "grid", id });
  let order = rows;
  let sortedBy = null;
  let descending = false;
  let page = 0;
  const draw = () => {
    const pages = Math.max(1, Math.ceil(order.length / PAGE));
    page = Math.min(page, pages - 1);
    const shown = order.slice(page * PAGE, (page + 1) * PAGE);
    const header = columns.map((c) =>
      h(
        "th",
        { class: "sortable", onclick: () => sort(c) },
        c,
        sortedBy === c ? (descending ? " ▼" : " ▲") : "",
      ),
    );
    replace(
      box,
      h(
        "div",
        { class: "toolbar" },
        h("button", { type: "button", class: "prev", disabled: page === 0, onclick: () => { page -= 1; draw(); } }, "‹ Prev"),
        h("span", { class: "page-info" }, `page ${page + 1} of ${pages} (${order.length} rows)`),
        h("button", { type: "button", class: "next", disabled: page >= pages - 1, onclick: () => { page += 1; draw(); } }, "Next ›"),
      ),
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, header)),
        h("tbody", {}, shown.map((row) => h("tr", {}, columns.map((c) => h("td", {}, cellText(row[c])))))),
      ),
    );
  };
  const sort = (column) => {
    descending = sortedBy === column ? !descending : false;
    sortedBy = column;
    order = [...rows].sort((a, b) => compare(a[column], b[column]) * (descending ? -1 : 1));
    page = 0;
    draw();
  };
  draw();
  return box;
}
