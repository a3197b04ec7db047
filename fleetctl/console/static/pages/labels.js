// Labels: the list, one label's query and members, and a change shown as a diff before
// it is applied (its fields, its members, and what the packs that target it gain or
// lose), refused with the errors `packs validate` names. As for packs, a hunter may
// diff a change and only an admin apply it.

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";
import { diffTable, problems } from "./packs.js";

async function showLabel(box, name, edit) {
  try {
    const shown = await api.get(`labels/${api.seg(name)}`);
    const label = shown.label;
    box.hidden = false;
    replace(
      box,
      h("h2", {}, `Label ${label.name}`),
      h("button", { type: "button", id: "label-edit", dataset: { needs: "hunter" }, onclick: () => edit(label, shown.members) }, "Edit"),
      h("p", {}, `${label.kind}, platform ${label.platform || "all"}`, label.description ? ` — ${label.description}` : ""),
      label.query ? h("pre", {}, label.query) : null,
      simpleTable([["Host", (m) => h("a", { href: `#/hosts/${api.seg(m.host_identifier)}` }, m.host_identifier)], ["Platform", (m) => m.platform], ["Evaluated", (m) => when(m.evaluated)]], shown.members, { id: "label-members" }),
    );
  } catch (error) {
    box.hidden = false;
    replace(box, errorBox(error));
  }
}

/** The "Change a label" card: the label asked for, its diff, and Apply once diffed. */
function changeCard(applied) {
  const name = h("input", { type: "text", id: "label-name", required: true });
  const kind = h("select", { id: "label-kind" }, ["manual", "dynamic"].map((k) => h("option", { value: k }, k)));
  const platform = h("input", { type: "text", id: "label-platform", placeholder: "all" });
  const description = h("input", { type: "text", id: "label-description" });
  const hosts = h("textarea", { id: "label-hosts", spellcheck: "false", "aria-label": "hosts, one a line" });
  const query = h("textarea", { id: "label-query", spellcheck: "false", "aria-label": "label query" });
  const hostsBox = h("label", {}, "Hosts (one a line)", hosts);
  const queryBox = h("label", { hidden: true }, "Query", query);
  const out = h("div", { id: "label-change" });
  let diffed = null;

  const showKind = () => {
    hostsBox.hidden = kind.value !== "manual";
    queryBox.hidden = kind.value !== "dynamic";
  };
  const incoming = () => {
    const body = { name: name.value.trim(), description: description.value };
    if (platform.value.trim()) body.platform = platform.value.trim();
    if (kind.value === "dynamic") body.query = query.value;
    else body.hosts = hosts.value.split("\n").map((s) => s.trim()).filter(Boolean);
    return body;
  };
  const diff = async () => {
    diffed = null;
    apply.disabled = true;
    try {
      const change = incoming();
      const answer = await api.post("labels/diff", change);
      diffed = change;
      apply.disabled = false;
      const m = answer.members;
      const moved = [...m.gain.map((host) => [host, "joins"]), ...m.lose.map((host) => [host, "leaves"])];
      replace(
        out,
        h("p", { class: "muted", id: "label-diff-summary" }, `${answer.label}: ${answer.action}; members ${m.before} → ${m.after}`, m.evaluated_by_hosts ? " until the hosts evaluate its query" : ""),
        simpleTable([["Field", (f) => f.field], ["From", (f) => f.from ?? ""], ["To", (f) => f.to ?? ""]], answer.fields, { id: "label-diff-fields" }),
        simpleTable([["Host", (x) => x[0]], ["Change", (x) => x[1]]], moved, { id: "label-diff-members" }),
        diffTable(answer.diff, "label-diff"),
      );
    } catch (error) {
      replace(out, problems(error));
    }
  };
  const apply = h("button", { type: "button", id: "label-apply", disabled: true, dataset: { needs: "admin" }, onclick: async () => {
    if (!diffed) return;
    try {
      const answer = await api.post("labels", diffed);
      replace(out, h("p", { id: "label-applied" }, `${answer.label}: ${answer.action}`));
      apply.disabled = true;
      await applied(answer.label);
    } catch (error) {
      replace(out, problems(error));
    }
  } }, "Apply");

  const edit = (label, members) => {
    name.value = label.name;
    kind.value = label.kind;
    platform.value = label.platform || "";
    description.value = label.description || "";
    query.value = label.query || "";
    hosts.value = members.map((m) => m.host_identifier).join("\n");
    showKind();
    apply.disabled = true;
  };
  kind.addEventListener("change", showKind);
  const card = h(
    "section",
    { class: "card", id: "label-change-card", dataset: { needs: "hunter" } },
    h("h2", {}, "Change a label"),
    h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Kind", kind), h("label", {}, "Platform", platform), h("label", {}, "Description", description)),
    hostsBox,
    queryBox,
    h("div", { class: "toolbar" }, h("button", { type: "button", id: "label-diff-button", onclick: diff }, "Diff"), apply),
    out,
  );
  card.addEventListener("input", () => {
    apply.disabled = true; // what is applied is what was last diffed
  });
  return { card, edit };
}

export async function render(main) {
  const box = h("section", { class: "card", id: "label-detail", hidden: true }); // until one is opened
  const list = h("div", { id: "label-list" });
  const load = async () => {
    try {
      const labels = (await api.get("labels")).labels;
      replace(
        list,
        simpleTable(
          [
            ["Label", (l) => h("a", { href: "#/labels", class: "label-open", onclick: (e) => { e.preventDefault(); showLabel(box, l.name, change.edit); } }, l.name)],
            ["Kind", (l) => l.kind],
            ["Platform", (l) => l.platform],
            ["Members", (l) => l.members],
            ["Query", (l) => l.query],
          ],
          labels,
          { id: "labels" },
        ),
      );
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  const change = changeCard(async (name) => {
    await load();
    await showLabel(box, name, change.edit);
  });
  replace(main, h("h1", {}, "Labels"), list, box, change.card);
  await load();
}
