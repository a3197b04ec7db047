// Fleet: every host, whether it is online, where detection stands, and its coverage.

import * as api from "../api.js";
import { errorBox, h, link, replace, simpleTable, when } from "../dom.js";

export function detectionText(host) {
  if (host.detection === "learning" && host.learning_until) {
    return `learning until ${when(host.learning_until)}`;
  }
  return host.detection;
}

function coverageText(cells) {
  if (!cells) return "";
  const all = Object.values(cells);
  const ok = all.filter((cell) => cell.status === "ok").length;
  return `${ok}/${all.length} ok`;
}

export async function render(main) {
  const body = h("div");
  replace(main, h("h1", {}, "Fleet"), body);
  let hosts;
  let coverage = {};
  try {
    hosts = (await api.get("hosts")).hosts;
  } catch (error) {
    replace(body, errorBox(error));
    return;
  }
  try {
    const report = await api.get("coverage");
    for (const host of report.hosts) coverage[host.id] = host.cells;
  } catch {
    coverage = {};
  }
  replace(
    body,
    h("p", { class: "muted" }, `${hosts.length} hosts`),
    simpleTable(
      [
        ["Host", (x) => link(`#/hosts/${api.seg(x.host_identifier)}`, x.host_identifier)],
        ["Hostname", (x) => x.hostname],
        ["Platform", (x) => `${x.platform} ${x.os_version}`],
        ["osquery", (x) => x.osquery_version],
        ["Last seen", (x) => when(x.last_seen)],
        ["State", (x) => h("span", { class: x.online ? "online" : "offline" }, x.online ? "online" : "offline")],
        ["Detection", (x) => detectionText(x)],
        ["Coverage", (x) => coverageText(coverage[x.id])],
        ["Warning", (x) => x.warning],
      ],
      hosts,
      { id: "hosts" },
    ),
  );
}
