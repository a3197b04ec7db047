// DET0493 coverage: each platform's and host's cells, and what makes the report fail.

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";

function cell(c) {
  return c ? h("span", { class: `cov-${c.status}`, title: c.reason }, c.status) : "";
}

export async function render(main) {
  let report;
  try {
    report = await api.get("coverage");
  } catch (error) {
    replace(main, h("h1", {}, "Coverage"), errorBox(error));
    return;
  }
  if (!report.hosts.length) {
    replace(main, h("h1", {}, "Coverage"), h("p", { class: "muted", id: "coverage-empty" }, "No coverage report yet: no host has enrolled."));
    return;
  }
  const items = report.items;
  replace(
    main,
    h("h1", {}, "Coverage"),
    h("p", { id: "coverage-verdict", class: report.ok ? "online" : "error" }, report.ok ? "every item covered" : `${report.failing.length} cells fall short`, ` (generated ${when(report.generated_at)}, retention required ${report.retention_required})`),
    h("h2", {}, "Platforms"),
    simpleTable([["Platform", (p) => `${p.platform} (${p.hosts} hosts)`], ...items.map((i) => [i.title, (p) => cell(p.cells[i.id])])], report.platforms, { id: "coverage-platforms" }),
    h("h2", {}, "Hosts"),
    simpleTable([["Host", (x) => x.host], ["Validation", (x) => (x.validation ? x.validation.status || JSON.stringify(x.validation) : "")], ...items.map((i) => [i.title, (x) => cell(x.cells[i.id])])], report.hosts, { id: "coverage-hosts" }),
    report.failing.length ? h("h2", {}, "Falling short") : null,
    report.failing.length ? simpleTable([["Host", (f) => f.host], ["Item", (f) => f.item], ["Status", (f) => f.status], ["Why", (f) => f.reason]], report.failing) : null,
  );
}
