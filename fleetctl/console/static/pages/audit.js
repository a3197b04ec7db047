// The audit trail: who did what, from where, and with what outcome; and the check of
// its hash chain (an edited or removed entry is named).

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";

/** A call's parameters and body: the first line, the rest on demand. */
function details(said) {
  const text = JSON.stringify(said);
  if (text.length <= 80) return h("code", {}, text);
  return h("details", {}, h("summary", {}, `${text.slice(0, 80)}…`), h("pre", {}, JSON.stringify(said, null, 2)));
}

function entriesTable(entries) {
  return simpleTable(
    [
      ["#", (e) => e.id],
      ["Time", (e) => when(e.at)],
      ["User", (e) => e.user],
      ["Token", (e) => e.token],
      ["Source", (e) => e.source],
      ["Action", (e) => e.action],
      ["Target", (e) => e.target],
      ["Outcome", (e) => `${e.outcome} (${e.status})`],
      ["Details", (e) => details(e.details)],
    ],
    entries,
    { id: "audit-entries" },
  );
}

export async function render(main) {
  const since = h("input", { type: "datetime-local", id: "audit-since" });
  const user = h("input", { type: "text", id: "audit-user", placeholder: "any user" });
  const list = h("div", {});
  const checked = h("p", { id: "audit-verified", role: "status" });

  const load = async () => {
    try {
      const params = { user: user.value, limit: 500 };
      if (since.value) params.since = String(Math.floor(new Date(since.value).getTime() / 1000));
      const entries = (await api.get("audit", params)).audit;
      entries.reverse();
      replace(list, h("p", { class: "muted" }, `${entries.length} entries, newest first`), entriesTable(entries));
    } catch (error) {
      replace(list, errorBox(error));
    }
  };
  const verify = async () => {
    try {
      const result = await api.get("audit/verify");
      const breaks = result.breaks.map((b) => `entry ${b.id}: ${b.problem}`);
      checked.className = result.intact ? "online" : "error";
      checked.textContent = result.intact
        ? `The chain of ${result.entries} entries is intact.`
        : `The chain is broken: ${breaks.join("; ")}`;
    } catch (error) {
      replace(checked, errorBox(error));
    }
  };
  replace(
    main,
    h("h1", {}, "Audit trail"),
    h(
      "form",
      { class: "filters", onsubmit: (event) => { event.preventDefault(); load(); } },
      h("label", {}, "Since", since),
      h("label", {}, "User", user),
      h("button", { type: "submit" }, "Show"),
      h("button", { type: "button", id: "audit-verify", onclick: verify }, "Verify the chain"),
    ),
    checked,
    list,
  );
  await load();
}
