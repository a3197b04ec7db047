// The findings queue: filters, occurrences, ack with a note, suppress with a scope.
// The list polls, so new findings appear without a reload.

import * as api from "../api.js";
import { errorBox, h, isoOf, link, replace, simpleTable, when } from "../dom.js";

const POLL_MS = 5000;
const PAGE = 200; // rows drawn at once: a queue of thousands stays quick to redraw
const SEVERITIES = ["info", "low", "medium", "high", "critical"];
const STATUSES = ["", "open", "reopened", "acked", "suppressed"];

function select(name, values, chosen) {
  return h(
    "select",
    { name, id: `filter-${name}` },
    values.map((v) => h("option", { value: v, selected: v === chosen }, v || "any")),
  );
}

/** Ack or suppress from a row: the note (and scope) are asked in a small form. */
function actions(finding, changed) {
  const note = h("input", { type: "text", placeholder: "note", class: "note", "aria-label": "note" });
  const scope = select("scope", ["host", "fleet"], "host");
  const said = h("span", { class: "error" });
  const act = (what, body) => async () => {
    said.textContent = "";
    try {
      await api.post(`findings/${api.seg(finding.id)}/${what}`, body());
      changed();
    } catch (error) {
      said.textContent = error.message;
    }
  };
  return h(
    "span",
    { class: "actions", dataset: { needs: "hunter" } },
    note,
    h("button", { type: "button", class: "ack", onclick: act("ack", () => ({ note: note.value })) }, "Ack"),
    scope,
    h("button", { type: "button", class: "suppress", onclick: act("suppress", () => ({ note: note.value, scope: scope.value })) }, "Suppress"),
    said,
  );
}

export function findingsTable(findings, changed = null) {
  const columns = [
    ["Finding", (x) => link(`#/findings/${api.seg(x.id)}`, x.id)],
    ["Severity", (x) => h("span", { class: `sev-${x.severity}` }, x.severity)],
    ["Status", (x) => x.status],
    ["Host", (x) => link(`#/hosts/${api.seg(x.host)}`, x.host)],
    ["Parent → child", (x) => `${x.parent} → ${x.child}`],
    ["Child path", (x) => x.child_path],
    ["Occurrences", (x) => x.occurrences],
    ["Last occurrence", (x) => when(x.last_occurrence)],
    ["Reasons", (x) => h("ul", {}, (x.reasons || []).map((r) => h("li", {}, typeof r === "string" ? r : r.text || JSON.stringify(r))))],
  ];
  if (changed) columns.push(["", (x) => actions(x, changed)]);
  return simpleTable(columns, findings, { id: "findings", class: "findings" });
}

export async function render(main) {
  const form = h(
    "form",
    { class: "filters", id: "finding-filters" },
    h("label", {}, "Severity at least", select("min_severity", SEVERITIES, "low")),
    h("label", {}, "Status", select("status", STATUSES, "")),
    h("label", {}, "Host", h("input", { name: "host", type: "text", id: "filter-host" })),
    h("label", {}, "Seen since", h("input", { name: "since", type: "datetime-local", id: "filter-since", step: 1 })),
    h("label", {}, "Seen until", h("input", { name: "until", type: "datetime-local", id: "filter-until", step: 1 })),
    h("button", { type: "submit" }, "Filter"),
  );
  const status = h("p", { class: "muted", id: "findings-status" });
  const list = h("div");

  let timer = null;
  let known = null;
  let page = 0;
  let latest = [];
  const pager = h("div", { class: "toolbar", id: "findings-pager" });
  replace(main, h("h1", {}, "Findings"), form, status, pager, list);
  const turn = (by) => () => {
    page += by;
    known = null; // "new" is new on this page since it was shown
    load();
  };
  const draw = () => {
    replace(
      pager,
      h("button", { type: "button", class: "prev", disabled: page === 0, onclick: turn(-1) }, "‹ Prev"),
      h("span", {}, `page ${page + 1}`),
      h("button", { type: "button", class: "next", disabled: latest.length < PAGE, onclick: turn(1) }, "Next ›"),
    );
    replace(list, findingsTable(latest, load));
  };
  const load = async () => {
    const data = new FormData(form);
    const params = {
      min_severity: data.get("min_severity"),
      status: data.get("status"),
      host: data.get("host"),
      since: isoOf(data.get("since")),
      until: isoOf(data.get("until")),
      limit: PAGE, // the server pages: a queue of 10,000 findings draws one page of them
      offset: page * PAGE,
    };
    try {
      const answer = await api.get("findings", params);
      // "New" is new since the page was opened (or the filter last changed).
      if (known === null) known = new Set(answer.findings.map((f) => f.id));
      const fresh = answer.findings.filter((f) => !known.has(f.id)).length;
      const shown = answer.findings.length;
      status.textContent =
        (shown ? `findings ${answer.offset + 1}-${answer.offset + shown}` : "0 findings") +
        (fresh ? `, ${fresh} new since opened` : "") +
        (answer.learning.hosts ? `; ${answer.learning.hosts} hosts learning until ${when(answer.learning.until)}` : "") +
        ` (updated ${new Date().toLocaleTimeString()})`;
      // Keep what the admin is typing: a row being annotated is not redrawn under them.
      latest = answer.findings;
      if (!list.contains(document.activeElement) || document.activeElement.tagName === "BUTTON") {
        draw();
      }
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    known = null;
    page = 0;
    load();
  });
  await load();
  timer = setInterval(load, POLL_MS);
  return () => clearInterval(timer);
}
