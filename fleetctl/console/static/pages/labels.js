// Labels: the list, and one label's query and members.

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";

async function showLabel(box, name) {
  try {
    const shown = await api.get(`labels/${api.seg(name)}`);
    const label = shown.label;
    replace(
      box,
      h("h2", {}, `Label ${label.name}`),
      h("p", {}, `${label.kind}, platform ${label.platform || "all"}`, label.description ? ` — ${label.description}` : ""),
      label.query ? h("pre", {}, label.query) : null,
      simpleTable([["Host", (m) => h("a", { href: `#/hosts/${api.seg(m.host_identifier)}` }, m.host_identifier)], ["Platform", (m) => m.platform], ["Evaluated", (m) => when(m.evaluated)]], shown.members, { id: "label-members" }),
    );
  } catch (error) {
    replace(box, errorBox(error));
  }
}

export async function render(main) {
  const box = h("section", { class: "card", id: "label-detail" });
  let labels;
  try {
    labels = (await api.get("labels")).labels;
  } catch (error) {
    replace(main, h("h1", {}, "Labels"), errorBox(error));
    return;
  }
  replace(
    main,
    h("h1", {}, "Labels"),
    simpleTable(
      [
        ["Label", (l) => h("a", { href: "#/labels", class: "label-open", onclick: (e) => { e.preventDefault(); showLabel(box, l.name); } }, l.name)],
        ["Kind", (l) => l.kind],
        ["Platform", (l) => l.platform],
        ["Members", (l) => l.members],
        ["Query", (l) => l.query],
      ],
      labels,
      { id: "labels" },
    ),
    box,
  );
}
