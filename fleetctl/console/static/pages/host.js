// One host: its details, its findings, its current process tree, data-loss gaps and
// status logs.

import * as api from "../api.js";
import { errorBox, h, link, replace, simpleTable, when } from "../dom.js";
import { detectionText } from "./fleet.js";
import { findingsTable } from "./findings.js";

function section(title, ...content) {
  return h("section", { class: "card" }, h("h2", {}, title), ...content);
}

async function part(title, load) {
  try {
    return section(title, await load());
  } catch (error) {
    return section(title, errorBox(error));
  }
}

/** The host's process tree now: every process under its parent, from the snapshot the
 *  lineage graph reads, which every role may read. */
async function processTree(ref) {
  const rows = (await api.get("processes", { host: ref })).processes;
  const children = new Map();
  const pids = new Set(rows.map((r) => String(r.pid)));
  for (const row of rows) {
    const parent = pids.has(String(row.parent)) ? String(row.parent) : "";
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent).push(row);
  }
  const branch = (parent) =>
    h(
      "ul",
      {},
      (children.get(parent) || []).map((row) =>
        h("li", {}, h("code", {}, `${row.pid} ${row.name}`), " ", h("span", { class: "muted" }, row.cmdline), children.has(String(row.pid)) ? branch(String(row.pid)) : null),
      ),
    );
  return h("div", { class: "tree" }, h("p", { class: "muted" }, `${rows.length} processes`), branch(""));
}

export async function render(main, ref) {
  let shown;
  try {
    shown = await api.get(`hosts/${api.seg(ref)}`);
  } catch (error) {
    replace(main, errorBox(error));
    return;
  }
  const host = shown.host;
  replace(
    main,
    h("h1", {}, host.host_identifier),
    simpleTable(
      [["Field", (x) => x[0]], ["Value", (x) => x[1]]],
      [
        ["hostname", host.hostname],
        ["uuid", host.uuid],
        ["platform", `${host.platform} ${host.os_version}`],
        ["osquery", host.osquery_version],
        ["last seen", when(host.last_seen)],
        ["state", host.online ? "online" : "offline"],
        ["detection", detectionText(host)],
        ["warning", host.warning],
      ],
      { id: "host-details" },
    ),
  );
  const parts = await Promise.all([
    part("Findings", async () => findingsTable((await api.get("findings", { host: ref })).findings)),
    part("Process tree", () => processTree(ref)),
    part("Data loss", async () => {
      const loss = await api.get("data-loss", { host: ref });
      return simpleTable(
        [["Query", (x) => x.query], ["Kind", (x) => x.kind], ["Missing", (x) => x.missing], ["At", (x) => when(x.at)], ["Resolved", (x) => when(x.resolved)], ["Detail", (x) => x.detail]],
        loss.data_loss,
        { id: "host-data-loss" },
      );
    }),
    part("Status logs", async () => {
      const logs = await api.get("status-logs", { host: ref, limit: 200 });
      return simpleTable(
        [["Time", (x) => when(x.time)], ["Severity", (x) => x.severity], ["Where", (x) => x.location], ["Message", (x) => x.message]],
        logs.status_logs,
        { id: "host-status-logs" },
      );
    }),
  ]);
  main.append(...parts, link("#/fleet", "Back to the fleet"));
}
