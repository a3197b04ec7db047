// The SQL hunting notebook: the hunting views and their columns beside an editor, run
// read-only through the admin API, results in a sortable, paged grid with CSV and JSON
// downloads, errors inline, this browser's history (localStorage), queries saved for
// every admin of the store, and an "as of" picker that writes the time predicate of the
// row views.

import * as api from "../api.js";
import { errorBox, h, isoOf, replace } from "../dom.js";
import { download } from "../graph.js";
import { grid } from "../grid.js";

const HISTORY_KEY = "fleetctl.sql.history";
const HISTORY_MAX = 50;

function history() {
  try {
    return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]");
  } catch {
    return [];
  }
}

function remember(sql) {
  const kept = [sql, ...history().filter((s) => s !== sql)].slice(0, HISTORY_MAX);
  localStorage.setItem(HISTORY_KEY, JSON.stringify(kept));
}

/** "As of T": a row existed at T if it was first seen by then and not yet removed. */
export function asOfPredicate(unix) {
  return `first_seen <= ${unix} AND (removed_at IS NULL OR removed_at > ${unix})`;
}

function insertAt(editor, text) {
  const start = editor.selectionStart ?? editor.value.length;
  const end = editor.selectionEnd ?? start;
  editor.value = editor.value.slice(0, start) + text + editor.value.slice(end);
  editor.focus();
  editor.selectionStart = editor.selectionEnd = start + text.length;
}

function sidebar(views, editor) {
  return h(
    "aside",
    { class: "sidebar", id: "views" },
    h("h2", {}, "Hunting views"),
    views.map((v) =>
      h(
        "details",
        {},
        h("summary", { title: v.description }, v.view),
        h("p", { class: "muted" }, v.description),
        h(
          "ul",
          {},
          v.columns.map((c) =>
            h(
              "li",
              {},
              h("a", { href: "#/sql", onclick: (e) => { e.preventDefault(); insertAt(editor, c.name); } }, c.name),
              " ",
              h("span", { class: "muted" }, c.type + (c.values.length ? ` (${c.values.join(", ")})` : "")),
            ),
          ),
        ),
      ),
    ),
  );
}

export async function render(main) {
  const editor = h("textarea", { id: "sql-editor", spellcheck: "false", "aria-label": "SQL" });
  editor.value = history()[0] || "SELECT host, pid, name, cmdline FROM hunt_processes WHERE removed_at IS NULL";
  const asOf = h("input", { type: "datetime-local", id: "as-of", step: 1 });
  const limit = h("input", { type: "number", id: "sql-limit", value: 10000, min: 1, max: 1000000 });
  const out = h("div", { id: "sql-result" });
  const past = h("select", { id: "sql-history", "aria-label": "history" });
  const fillHistory = () =>
    replace(past, h("option", { value: "" }, "History…"), history().map((s) => h("option", { value: s }, s.slice(0, 120))));
  fillHistory();
  past.addEventListener("change", () => {
    if (past.value) editor.value = past.value;
  });
  const saved = h("select", { id: "sql-saved", "aria-label": "saved queries" });
  const saveName = h("input", { type: "text", id: "sql-save-name", placeholder: "name to save under" });
  const saveSaid = h("span", { id: "sql-save-said" });
  let shared = [];
  const fillSaved = async () => {
    try {
      shared = (await api.get("sql/saved")).queries;
      replace(saved, h("option", { value: "" }, "Saved queries…"), shared.map((q) => h("option", { value: q.name, title: q.description }, `${q.name} (${q.saved_by})`)));
    } catch (error) {
      replace(saveSaid, errorBox(error));
    }
  };
  saved.addEventListener("change", () => {
    const chosen = shared.find((q) => q.name === saved.value);
    if (chosen) {
      editor.value = chosen.sql;
      saveName.value = chosen.name;
    }
  });
  const saveQuery = async () => {
    replace(saveSaid);
    try {
      const answer = await api.post("sql/saved", { name: saveName.value.trim(), sql: editor.value });
      replace(saveSaid, h("span", { class: "muted" }, `${answer.action} ${answer.name}`));
      await fillSaved();
    } catch (error) {
      replace(saveSaid, errorBox(error));
    }
  };
  let result = null;
  const run = async () => {
    replace(out, h("p", { class: "muted" }, "running…"));
    const sql = editor.value;
    remember(sql);
    fillHistory();
    try {
      result = await api.post("sql", { sql, limit: Number(limit.value) || 10000 });
      replace(
        out,
        h("p", { class: "muted", id: "sql-status" }, `${result.rows.length} rows` + (result.truncated ? ` (truncated: ${result.reason})` : "")),
        grid(result.columns, result.rows, "sql-grid"),
      );
    } catch (error) {
      result = null;
      replace(out, errorBox(error));
    }
  };
  const save = (kind) => () => {
    if (!result) return;
    if (kind === "csv") {
      const csv = window.Papa.unparse({ fields: result.columns, data: result.rows.map((r) => result.columns.map((c) => r[c])) });
      download("hunt.csv", csv, "text/csv");
    } else {
      download("hunt.json", JSON.stringify(result.rows, null, 2), "application/json");
    }
  };
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("button", { type: "button", id: "sql-run", onclick: run }, "Run (Ctrl+Enter)"),
    h("label", {}, "Row limit", limit),
    h("label", {}, "As of", asOf),
    h("button", { type: "button", id: "as-of-insert", onclick: () => {
      const at = isoOf(asOf.value);
      if (at) insertAt(editor, asOfPredicate(Math.floor(Date.parse(at) / 1000)));
    } }, "Insert time predicate"),
    past,
    h("button", { type: "button", id: "download-csv", onclick: save("csv") }, "CSV"),
    h("button", { type: "button", id: "download-json", onclick: save("json") }, "JSON"),
  );
  const sharing = h(
    "div",
    { class: "toolbar" },
    saved,
    saveName,
    h("button", { type: "button", id: "sql-save", onclick: saveQuery }, "Save for every hunter"),
    saveSaid,
  );
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  let views = [];
  let problem = null;
  try {
    views = (await api.get("sql/schema")).views;
  } catch (error) {
    problem = errorBox(error);
  }
  replace(
    main,
    h("h1", {}, "SQL"),
    h("div", { class: "notebook" }, sidebar(views, editor), h("div", {}, problem, sharing, editor, toolbar, out)),
  );
  await fillSaved();
}
