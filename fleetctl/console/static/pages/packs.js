// Packs: the list, one pack's body and history, and a change shown as a diff before it
// is applied; the validator's errors are listed as `fleetctl packs validate` names them
// (file, pack, query, name at fault, message). As the admin API allows, a hunter may
// diff a change and only an admin apply it.

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";

/** The validator's errors, or the plain error when there are none. */
export function problems(error) {
  const rows = (error.body && error.body.errors) || [];
  if (!rows.length) return errorBox(error);
  return h(
    "div",
    { class: "error", role: "alert", id: "validation-errors" },
    error.message,
    simpleTable(
      [["File", (e) => e.file], ["Pack", (e) => e.pack || ""], ["Query", (e) => e.query || ""], ["Name", (e) => e.identifier || ""], ["Problem", (e) => e.message]],
      rows,
    ),
  );
}

/** A diff's rows: per query of a pack, what changes and how many hosts gain or lose it. */
export function diffTable(rows, id) {
  return simpleTable(
    [["Pack", (d) => d.pack], ["Query", (d) => d.query], ["Change", (d) => d.change], ["Hosts gain", (d) => d.hosts_gain], ["Hosts lose", (d) => d.hosts_lose], ["Hosts after", (d) => d.hosts_after]],
    rows,
    { id },
  );
}

async function showPack(box, name, editor) {
  try {
    const shown = await api.get(`packs/${api.seg(name)}`);
    replace(
      box,
      h("h2", {}, `Pack ${name}`),
      h("button", { type: "button", dataset: { needs: "hunter" }, onclick: () => editor(name, shown.body, shown.pack.labels) }, "Edit"),
      h("pre", { id: "pack-body" }, JSON.stringify(shown.body, null, 2)),
      h("h3", {}, "History"),
      simpleTable([["Version", (v) => v.version], ["Created", (v) => when(v.created)], ["Deleted", (v) => (v.deleted ? "yes" : "")], ["Labels", (v) => v.labels.join(", ")]], shown.history),
    );
  } catch (error) {
    replace(box, errorBox(error));
  }
}

export async function render(main) {
  const list = h("div", { id: "pack-list" });
  const box = h("section", { class: "card", id: "pack-detail" });
  const name = h("input", { type: "text", id: "pack-name", required: true });
  const labels = h("input", { type: "text", id: "pack-labels", placeholder: "label, label" });
  const body = h("textarea", { id: "pack-json", spellcheck: "false", "aria-label": "pack JSON" });
  const out = h("div", { id: "pack-change" });
  let diffed = null;

  const edit = (packName, packBody, packLabels) => {
    name.value = packName;
    body.value = JSON.stringify(packBody, null, 2);
    labels.value = (packLabels || []).join(", ");
    body.focus();
  };
  const incoming = () => {
    let pack;
    try {
      pack = JSON.parse(body.value);
    } catch (error) {
      throw new Error(`the pack is not JSON: ${error.message}`);
    }
    const wanted = labels.value.split(",").map((s) => s.trim()).filter(Boolean);
    return { packs: [{ name: name.value.trim(), pack, labels: wanted, source: `<console ${name.value.trim()}>` }] };
  };
  const load = async () => {
    try {
      const packs = (await api.get("packs")).packs;
      replace(
        list,
        simpleTable(
          [
            ["Pack", (p) => h("a", { href: "#/packs", class: "pack-open", onclick: (e) => { e.preventDefault(); showPack(box, p.name, edit); } }, p.name)],
            ["Version", (p) => p.version],
            ["Queries", (p) => p.queries],
            ["Platform", (p) => p.platform],
            ["Labels", (p) => p.labels.join(", ")],
            ["Updated", (p) => when(p.updated)],
          ],
          packs,
          { id: "packs" },
        ),
      );
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  const diff = async () => {
    diffed = null;
    apply.disabled = true;
    try {
      const change = incoming();
      const answer = await api.post("packs/diff", change);
      diffed = change;
      apply.disabled = false;
      replace(
        out,
        h("p", { class: "muted" }, `${answer.diff.length} changes over ${answer.hosts} hosts`),
        diffTable(answer.diff, "pack-diff"),
      );
    } catch (error) {
      replace(out, problems(error));
    }
  };
  const apply = h("button", { type: "button", id: "pack-apply", disabled: true, dataset: { needs: "admin" }, onclick: async () => {
    if (!diffed) return;
    try {
      const answer = await api.post("packs/apply", diffed);
      replace(out, simpleTable([["Pack", (a) => a.pack], ["Action", (a) => a.action], ["Version", (a) => a.version], ["Queries", (a) => a.queries]], answer.applied, { id: "pack-applied" }));
      apply.disabled = true;
      await load();
    } catch (error) {
      replace(out, problems(error));
    }
  } }, "Apply");

  replace(
    main,
    h("h1", {}, "Packs"),
    list,
    box,
    h(
      "section",
      { class: "card", id: "pack-change-card", dataset: { needs: "hunter" } },
      h("h2", {}, "Change a pack"),
      h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Labels", labels)),
      body,
      h("div", { class: "toolbar" }, h("button", { type: "button", id: "pack-diff-button", onclick: diff }, "Diff"), apply),
      out,
    ),
  );
  body.addEventListener("input", () => {
    apply.disabled = true; // what is applied is what was last diffed
  });
  await load();
}
