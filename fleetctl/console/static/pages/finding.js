// One finding: what it is, its occurrences, the triage answers, its history, and the
// lineage graph of a process at a point in time, exportable as DOT and SVG.

import * as api from "../api.js";
import { errorBox, h, isoOf, link, localInput, replace, simpleTable, when } from "../dom.js";
import { download, svgText, traceSvg } from "../graph.js";

function triageView(triage) {
  if (!triage) return h("p", { class: "muted" }, "no occurrence to triage");
  return h(
    "div",
    { id: "triage" },
    h("p", { class: "muted" }, `pid ${triage.pid}, started ${when(triage.start_time_iso)}, window ${triage.window}`),
    triage.answers.map((a) =>
      h(
        "details",
        { class: "answer", open: a.status !== "no" },
        h("summary", {}, h("strong", {}, a.question), " ", h("span", { class: "muted" }, `[${a.status}]`), " ", a.answer),
        a.why ? h("p", {}, a.why) : null,
        a.evidence.length
          ? h("details", {}, h("summary", {}, `evidence (${a.evidence.length} rows)`), h("pre", {}, JSON.stringify(a.evidence, null, 2)))
          : null,
        a.evidence_cut ? h("p", { class: "muted" }, "evidence cut") : null,
      ),
    ),
  );
}

function traceSection(finding, initialPid, initialAt) {
  const pid = h("input", { type: "number", id: "trace-pid", value: initialPid, min: 0 });
  const at = h("input", { type: "datetime-local", id: "trace-at", step: 1, value: localInput(initialAt) });
  const out = h("div", { id: "trace" });
  let shown = null;
  const show = async () => {
    replace(out, h("p", { class: "muted" }, "loading…"));
    try {
      shown = await api.get("trace", { host: finding.host, pid: pid.value, at: isoOf(at.value) });
      replace(
        out,
        h("p", { class: "muted" }, `${shown.trace.nodes.length} processes, ${shown.trace.edges.length} edges at ${when(shown.at)}`),
        h("div", { id: "graph-box" }, traceSvg(shown.trace)),
        h("details", {}, h("summary", {}, "As text"), h("pre", { id: "trace-text" }, shown.text)),
      );
    } catch (error) {
      shown = null;
      replace(out, errorBox(error));
    }
  };
  const exportAs = (kind) => () => {
    if (!shown) return;
    const base = `trace-${finding.host}-${shown.pid}`.replace(/[^\w.-]+/g, "_");
    if (kind === "dot") download(`${base}.dot`, shown.dot, "text/vnd.graphviz");
    else download(`${base}.svg`, svgText(document.getElementById("trace-svg")), "image/svg+xml");
  };
  const section = h(
    "section",
    { class: "card" },
    h("h2", {}, "Lineage"),
    h(
      "form",
      { class: "toolbar", id: "trace-form", onsubmit: (e) => { e.preventDefault(); show(); } },
      h("label", {}, "pid", pid),
      h("label", {}, "At", at),
      h("button", { type: "submit" }, "Show"),
      h("button", { type: "button", id: "export-dot", onclick: exportAs("dot") }, "Export DOT"),
      h("button", { type: "button", id: "export-svg", onclick: exportAs("svg") }, "Export SVG"),
    ),
    out,
  );
  return { section, show };
}

export async function render(main, id) {
  let shown;
  try {
    shown = await api.get(`findings/${api.seg(id)}`);
  } catch (error) {
    replace(main, errorBox(error));
    return;
  }
  const f = shown.finding;
  const newest = shown.occurrences[0];
  const trace = traceSection(f, f.pid, newest ? newest.last_seen : f.last_seen);
  replace(
    main,
    h("h1", {}, `Finding ${f.id}`),
    simpleTable(
      [["Field", (x) => x[0]], ["Value", (x) => x[1]]],
      [
        ["host", link(`#/hosts/${api.seg(f.host)}`, f.host)],
        ["severity", h("span", { class: `sev-${f.severity}` }, `${f.severity} (score ${f.score})`)],
        ["status", f.status],
        ["parent → child", `${f.parent} → ${f.child}`],
        ["paths", `${f.parent_path} → ${f.child_path}`],
        ["key", f.key],
        ["prevalence", f.prevalence],
        ["first / last seen", `${when(f.first_seen)} / ${when(f.last_seen)}`],
        ["acked", f.acked_by ? `${f.acked_by} at ${when(f.acked_at)}` : ""],
        ["note", f.note || ""],
        ["reasons", h("ul", {}, f.reasons.map((r) => h("li", {}, r)))],
      ],
      { id: "finding-summary" },
    ),
    trace.section,
    h("section", { class: "card" }, h("h2", {}, "Triage"), triageView(shown.triage)),
    h(
      "section",
      { class: "card" },
      h("h2", {}, `Occurrences (${shown.occurrences.length})`),
      simpleTable(
        [
          ["pid", (o) => o.pid],
          ["Severity", (o) => o.severity],
          ["Status", (o) => o.status],
          ["First seen", (o) => when(o.first_seen)],
          ["Last seen", (o) => when(o.last_seen)],
          ["Reasons", (o) => o.reasons.join("; ")],
          ["", (o) => h("button", { type: "button", onclick: () => {
            document.getElementById("trace-pid").value = o.pid;
            document.getElementById("trace-at").value = localInput(o.last_seen);
            trace.show();
          } }, "Trace")],
        ],
        shown.occurrences,
        { id: "occurrences" },
      ),
    ),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "History"),
      simpleTable([["At", (c) => when(c.at)], ["Field", (c) => c.field], ["From", (c) => c.from], ["To", (c) => c.to], ["By", (c) => c.by], ["Note", (c) => c.note]], shown.history),
    ),
  );
  await trace.show();
}
