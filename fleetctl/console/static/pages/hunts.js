// Hunts: the list with schedule, last and next run and the latest run's counts per
// state; create, pause, resume, cancel; each run's results, or only what is new since
// the host's previous run (diff).

import * as api from "../api.js";
import { errorBox, h, replace, simpleTable, when } from "../dom.js";
import { grid } from "../grid.js";
import { refusal } from "./live.js";

const STATES = ["queued", "sent", "done", "failed", "expired", "skipped"];

function countsText(run) {
  if (!run) return "no run yet";
  return STATES.filter((s) => run[s]).map((s) => `${run[s]} ${s}`).join(", ") || "no targets";
}

async function results(box, name, run, diff) {
  try {
    const page = await api.get(`hunts/${api.seg(name)}/results`, { run, diff: diff ? "true" : "" });
    const columns = [];
    for (const row of page.rows) for (const c of Object.keys(row)) if (!columns.includes(c)) columns.push(c);
    replace(
      box,
      h("p", { class: "muted", id: "hunt-results-status" }, page.run ? `run ${page.run}${diff ? " (new since each host's previous run)" : ""}: ${page.total} rows` : "no run yet"),
      page.failed.length ? simpleTable([["Host", (f) => f.host], ["Error", (f) => f.error]], page.failed, { class: "failed" }) : null,
      page.skipped.length ? simpleTable([["Host", (f) => f.host], ["Skipped", (f) => f.reason]], page.skipped) : null,
      grid(columns, page.rows, "hunt-results"),
    );
  } catch (error) {
    replace(box, errorBox(error));
  }
}

function runsTable(name, runs, out) {
  return simpleTable(
    [
      ["Run", (r) => r.run],
      ["Fired", (r) => when(r.fired)],
      ...STATES.map((s) => [s, (r) => r[s]]),
      ["", (r) => h("span", {},
        h("button", { type: "button", class: "run-results", onclick: () => results(out, name, r.run, false) }, "Results"),
        h("button", { type: "button", class: "run-diff", onclick: () => results(out, name, r.run, true) }, "Diff"),
      )],
    ],
    runs,
    { id: "hunt-runs" },
  );
}

// Shows one hunt and its runs; returns what refreshes the runs (a run fires after the
// hunt is shown, the first one too), leaving the results the analyst opened as they are.
async function detail(box, name) {
  try {
    const shown = await api.get(`hunts/${api.seg(name)}`);
    const out = h("div", { id: "hunt-run-results" });
    const runs = h("div", {}, runsTable(name, shown.runs, out));
    replace(box, h("h2", {}, `Hunt ${name}`), h("pre", {}, shown.hunt.sql), runs, out);
    return async () => {
      const again = await api.get(`hunts/${api.seg(name)}`);
      replace(runs, runsTable(name, again.runs, out));
    };
  } catch (error) {
    replace(box, errorBox(error));
    return null;
  }
}

export async function render(main) {
  let refreshRuns = null; // the open hunt's runs, refreshed with the list
  const list = h("div", { id: "hunt-list" });
  const box = h("section", { class: "card", id: "hunt-detail" });
  const said = h("div", { id: "hunt-error" });
  const name = h("input", { type: "text", id: "hunt-name", required: true });
  const sql = h("textarea", { id: "hunt-sql", spellcheck: "false", "aria-label": "SQL" });
  sql.value = "SELECT pid, name, cmdline FROM processes";
  const kind = h("select", { id: "hunt-kind" }, ["every", "cron", "once"].map((k) => h("option", { value: k }, k)));
  const schedule = h("input", { type: "text", id: "hunt-schedule", value: "3600", placeholder: "seconds, or a cron expression" });
  const targets = h("input", { type: "text", id: "hunt-targets", value: "all" });

  const act = (hunt, what) => async () => {
    replace(said);
    try {
      await api.post(`hunts/${api.seg(hunt)}/${what}`, {});
      await load();
    } catch (error) {
      replace(said, errorBox(error));
    }
  };

  const load = async () => {
    let hunts;
    try {
      hunts = (await api.get("hunts")).hunts;
    } catch (error) {
      replace(list, errorBox(error));
      return;
    }
    const latest = await Promise.all(
      hunts.map((x) => api.get(`hunts/${api.seg(x.name)}`).then((s) => s.runs[s.runs.length - 1], () => null)),
    );
    replace(
      list,
      simpleTable(
        [
          ["Hunt", (x) => h("a", { href: "#/hunts", class: "hunt-open", onclick: async (e) => { e.preventDefault(); refreshRuns = await detail(box, x.name); } }, x.name)],
          ["State", (x) => x.state],
          ["Schedule", (x) => x.schedule],
          ["Targets", (x) => x.targets],
          ["Runs", (x) => x.runs],
          ["Last run", (x) => when(x.last_run)],
          ["Next run", (x) => when(x.next_run)],
          ["Latest run", (x) => countsText(latest[hunts.indexOf(x)])],
          ["", (x) => h("span", { dataset: { needs: "hunter" } },
            h("button", { type: "button", class: "pause", onclick: act(x.name, "pause") }, "Pause"),
            h("button", { type: "button", class: "resume", onclick: act(x.name, "resume") }, "Resume"),
            h("button", { type: "button", class: "cancel", onclick: act(x.name, "cancel") }, "Cancel"),
          )],
        ],
        hunts,
        { id: "hunts" },
      ),
    );
  };

  const create = async (event) => {
    event.preventDefault();
    replace(said);
    const body = { name: name.value, sql: sql.value, targets: targets.value || "all" };
    if (kind.value === "every") body.every = Number(schedule.value);
    else if (kind.value === "cron") body.cron = schedule.value;
    else body.once = true;
    try {
      await api.post("hunts", body);
      await load();
      refreshRuns = await detail(box, body.name);
    } catch (error) {
      replace(said, refusal(error));
    }
  };

  replace(
    main,
    h("h1", {}, "Hunts"),
    list,
    said,
    h(
      "form",
      { class: "card", id: "hunt-form", onsubmit: create, dataset: { needs: "hunter" } },
      h("h2", {}, "New hunt"),
      h("div", { class: "toolbar" }, h("label", {}, "Name", name), h("label", {}, "Schedule", kind), h("label", {}, "Every (s) / cron", schedule), h("label", {}, "Targets", targets)),
      sql,
      h("button", { type: "submit", id: "hunt-create" }, "Create"),
    ),
    box,
  );
  await load();
  const timer = setInterval(async () => {
    await load();
    if (refreshRuns) await refreshRuns().catch(() => {});
  }, 5000);
  return () => clearInterval(timer);
}
