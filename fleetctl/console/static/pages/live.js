// Live query: pick targets (all, a platform, a label, a host), send SQL, and follow it:
// answered / online / targeted, rows as they arrive, and each host's error.

import * as api from "../api.js";
import { cellText, errorBox, h, replace, simpleTable, when } from "../dom.js";

const POLL_MS = 1000;

function targetSpec(kind, value) {
  return kind === "all" ? "all" : `${kind}:${value.trim()}`;
}

/** The refusal of a query that does not validate, with each error the validator named. */
export function refusal(error) {
  const details = (error.body && error.body.errors) || [];
  return h(
    "div",
    { class: "error", role: "alert" },
    error.message,
    details.length ? h("ul", {}, details.map((d) => h("li", {}, d.message || JSON.stringify(d)))) : null,
  );
}

export async function render(main) {
  const kind = h("select", { id: "live-kind" }, ["all", "platform", "label", "host"].map((k) => h("option", { value: k }, k)));
  const value = h("input", { type: "text", id: "live-target", placeholder: "linux / label name / host" });
  const sql = h("textarea", { id: "live-sql", spellcheck: "false", "aria-label": "SQL" });
  sql.value = "SELECT pid, name, cmdline FROM processes LIMIT 20";
  const timeout = h("input", { type: "number", id: "live-timeout", value: 60, min: 1 });
  const progress = h("p", { id: "live-progress", class: "muted" });
  const hosts = h("div", { id: "live-hosts" });
  const rowsBox = h("div", { id: "live-rows" });
  let timer = null;

  const follow = (id) => {
    const seen = new Map(); // host -> target state
    const rows = [];
    let columns = [];
    let cursor = null;
    const poll = async () => {
      let answer;
      try {
        answer = await api.get(`queries/${id}`, { since: cursor });
      } catch (error) {
        replace(progress, errorBox(error));
        return;
      }
      if (answer.cursor) cursor = answer.cursor;
      for (const target of answer.hosts) {
        if (seen.has(target.host) && seen.get(target.host).answered === target.answered) continue;
        seen.set(target.host, target);
        for (const row of target.rows) {
          for (const c of Object.keys(row)) if (!columns.includes(c)) columns = [...columns, c];
          rows.push({ host: target.host, ...row });
        }
      }
      progress.textContent =
        `query ${answer.id}: ${answer.answered} answered / ${answer.online} online / ${answer.targeted} targeted` +
        (answer.expired ? " (expired)" : "");
      replace(
        hosts,
        simpleTable(
          [["Host", (t) => t.host], ["State", (t) => t.state], ["Rows", (t) => t.rows.length], ["Answered", (t) => when(t.answered)], ["Error", (t) => t.message || ""]],
          [...seen.values()],
          { id: "live-host-states" },
        ),
      );
      replace(
        rowsBox,
        h("p", { class: "muted" }, `${rows.length} rows`),
        simpleTable(["host", ...columns].map((c) => [c, (r) => cellText(r[c])]), rows, { id: "live-results" }),
      );
      if (answer.expired || (answer.targeted && answer.answered >= answer.targeted)) clearInterval(timer);
    };
    poll();
    timer = setInterval(poll, POLL_MS);
  };

  const start = async (event) => {
    event.preventDefault();
    clearInterval(timer);
    replace(hosts);
    replace(rowsBox);
    progress.textContent = "sending…";
    try {
      const started = await api.post("queries", {
        sql: sql.value,
        targets: targetSpec(kind.value, value.value),
        timeout: Number(timeout.value) || 60,
      });
      progress.textContent = `query ${started.id}: 0 answered / ${started.online} online / ${started.targeted} targeted`;
      follow(started.id);
    } catch (error) {
      replace(progress, refusal(error));
    }
  };

  replace(
    main,
    h("h1", {}, "Live query"),
    h(
      "form",
      { id: "live-form", onsubmit: start },
      h("div", { class: "toolbar" }, h("label", {}, "Targets", kind), h("label", {}, "Which", value), h("label", {}, "Timeout (s)", timeout)),
      sql,
      h("button", { type: "submit", id: "live-run" }, "Run on the targets"),
    ),
    progress,
    hosts,
    rowsBox,
  );
  return () => clearInterval(timer);
}
