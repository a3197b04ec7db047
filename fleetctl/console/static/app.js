// The console's frame: sign-in, navigation and the hash router. Each page is a module
// whose ``render(main, params)`` fills ``main`` and may return a function that stops
// what it started (polling) when the page is left.

import * as api from "./api.js";
import { errorBox, replace } from "./dom.js";
import { setRole } from "./role.js";

const pages = [
  [/^#\/fleet$/, () => import("./pages/fleet.js")],
  [/^#\/hosts\/(.+)$/, () => import("./pages/host.js")],
  [/^#\/findings$/, () => import("./pages/findings.js")],
  [/^#\/findings\/([^/]+)$/, () => import("./pages/finding.js")],
  [/^#\/sql$/, () => import("./pages/sql.js")],
  [/^#\/live$/, () => import("./pages/live.js")],
  [/^#\/hunts$/, () => import("./pages/hunts.js")],
  [/^#\/packs$/, () => import("./pages/packs.js")],
  [/^#\/labels$/, () => import("./pages/labels.js")],
  [/^#\/coverage$/, () => import("./pages/coverage.js")],
  [/^#\/audit$/, () => import("./pages/audit.js")],
];

const main = document.getElementById("main");
let leave = null;
let shown = 0; // which route() call owns the page: a slower, older one must not draw over it

/** Show the page the hash names. Each call renders into a view of its own: an earlier
 *  page still awaiting its data (the fleet, right after sign-in) draws into its detached
 *  view when it finishes, not over the page the admin has since opened, and what it
 *  started (polling) is stopped at once. */
async function route() {
  if (leave) leave();
  leave = null;
  const mine = ++shown;
  const hash = location.hash || "#/fleet";
  const view = document.createElement("div");
  replace(main, view);
  const found = pages.find(([pattern]) => pattern.test(hash));
  if (!found) {
    replace(view, errorBox(new Error(`no page ${hash}`)));
    return;
  }
  const [pattern, load] = found;
  const params = hash.match(pattern).slice(1).map(decodeURIComponent);
  try {
    const page = await load();
    const stop = (await page.render(view, ...params)) || null;
    if (mine === shown) leave = stop;
    else if (stop) stop();
  } catch (error) {
    replace(view, errorBox(error));
  }
}

function showSignIn() {
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-in").hidden = false;
  if (leave) leave();
  leave = null;
  shown += 1; // a page still loading is no longer the one shown
  replace(main);
  document.getElementById("user").focus();
}

function showConsole(who) {
  api.setCsrf(who.csrf);
  setRole(who.role);
  document.getElementById("who").textContent = `${who.user} (${who.role}, until ${who.expires})`;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  route();
}

document.getElementById("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = ["user", "password", "token"].map((id) => document.getElementById(id));
  const [user, password, token] = fields;
  const said = document.getElementById("sign-in-error");
  said.textContent = "";
  try {
    const who = await api.signIn(
      token.value ? { token: token.value } : { user: user.value, password: password.value },
    );
    for (const field of fields) field.value = "";
    showConsole(who);
  } catch (error) {
    said.textContent = error.message;
  }
});

document.getElementById("sign-out").addEventListener("click", async () => {
  await api.signOut().catch(() => null);
  showSignIn();
});

window.addEventListener("signed-out", showSignIn);
window.addEventListener("hashchange", () => {
  if (!document.getElementById("nav").hidden) route();
});

api.session().then(showConsole, showSignIn);
