// The signed-in caller's role, and what the console shows for it. The admin API decides
// (a call above the role is refused with 403); the console only hides what would be
// refused: an element marked ``needs("hunter", el)`` shows for hunters and admins.

const ORDER = { observer: 1, hunter: 2, admin: 3 };
let current = "observer";

export function setRole(role) {
  current = role;
  document.body.dataset.role = role;
}

/** Whether the signed-in role may do what ``needed`` may. */
export function can(needed) {
  return (ORDER[current] || 0) >= ORDER[needed];
}

/** Mark ``el`` as shown only to ``role`` and above. */
export function needs(role, el) {
  el.dataset.needs = role;
  return el;
}
