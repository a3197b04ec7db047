// The admin JSON API, as the signed-in console calls it: the session cookie goes with
// every request, and every change carries the session's CSRF nonce.

let csrf = "";

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function setCsrf(value) {
  csrf = value;
}

async function call(url, method, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
    throw new ApiError(response.status, data);
  }
  return data;
}

/** GET /api/v1/admin/<path> with query parameters (empty ones left out). */
export function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") query.set(key, value);
  }
  const suffix = query.toString() ? `?${query}` : "";
  return call(`/api/v1/admin/${path}${suffix}`, "GET");
}

export function post(path, body = {}) {
  return call(`/api/v1/admin/${path}`, "POST", body);
}

export function del(path) {
  return call(`/api/v1/admin/${path}`, "DELETE");
}

export function session() {
  return call("/console/session", "GET");
}

/** Sign in with ``{user, password}`` or ``{token}``. */
export function signIn(credentials) {
  return call("/console/sign-in", "POST", credentials);
}

export function signOut() {
  return call("/console/sign-out", "POST", {});
}

/** Path segment for a name or id that may hold any character. */
export function seg(value) {
  return encodeURIComponent(String(value));
}
