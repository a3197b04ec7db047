// The lineage graph of a trace as SVG: dagre places the processes (nodes) and the
// edges between them (parent → child, and IPC channels labelled with the channel);
// the SVG is built with DOM calls, every host value set as text, and the same element
// is what "Export SVG" saves.

import dagre from "./vendor/dagre/dagre.esm.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 230;
const NODE_H = 46;
const COLOURS = { focus: "#ffe3e3", ancestor: "#eef3ff", descendant: "#f3f3f3", peer: "#fff6d6" };

function el(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

/** The label of an edge: its channel kind and what it names (a path, an endpoint). */
export function edgeLabel(edge) {
  if (edge.kind === "spawn") return "";
  return edge.label ? `${edge.kind} ${edge.label}` : edge.kind;
}

/** An <svg> element for ``trace`` ({nodes, edges, focus}). */
export function traceSvg(trace) {
  const g = new dagre.graphlib.Graph({ multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 30, ranksep: 60, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const node of trace.nodes) g.setNode(String(node.pid), { width: NODE_W, height: NODE_H });
  trace.edges.forEach((edge, i) => {
    const label = edgeLabel(edge);
    g.setEdge(String(edge.source), String(edge.target), label ? { label, width: Math.min(label.length * 6.5, 320), height: 14, labelpos: "c" } : {}, `e${i}`);
  });
  dagre.layout(g);
  const size = g.graph();
  const svg = el("svg", {
    xmlns: SVG,
    width: Math.ceil(size.width),
    height: Math.ceil(size.height),
    viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
    "font-family": "sans-serif",
    "font-size": 11,
    id: "trace-svg",
  });
  const defs = el("defs");
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto-start-reverse" });
  marker.appendChild(el("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#555" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  trace.edges.forEach((edge, i) => {
    const laid = g.edge({ v: String(edge.source), w: String(edge.target), name: `e${i}` });
    if (!laid) return;
    const points = laid.points.map((p) => `${p.x},${p.y}`).join(" ");
    const spawn = edge.kind === "spawn";
    const group = el("g", { class: `edge ${spawn ? "spawn" : "ipc"}`, "data-kind": edge.kind });
    group.appendChild(el("polyline", { points, fill: "none", stroke: spawn ? "#777" : "#c2410c", "stroke-width": spawn ? 1.2 : 1.6, "stroke-dasharray": spawn ? "" : "5 3", "marker-end": "url(#arrow)" }));
    const label = edgeLabel(edge);
    if (label) {
      const text = el("text", { x: laid.x, y: laid.y, "text-anchor": "middle", fill: "#9a3412", class: "edge-label" }, clip(label, 60));
      text.appendChild(el("title", {}, label));
      group.appendChild(text);
    }
    svg.appendChild(group);
  });
  for (const node of trace.nodes) {
    const laid = g.node(String(node.pid));
    const x = laid.x - NODE_W / 2;
    const y = laid.y - NODE_H / 2;
    const group = el("g", { class: `node ${node.role}`, "data-pid": node.pid });
    group.appendChild(el("title", {}, `${node.name}[${node.pid}] ${node.user || ""}\n${node.path}\n${node.cmdline}`));
    group.appendChild(el("rect", { x, y, width: NODE_W, height: NODE_H, rx: 4, fill: COLOURS[node.role] || "#fff", stroke: node.role === "focus" ? "#b00020" : "#889", "stroke-width": node.role === "focus" ? 2 : 1 }));
    group.appendChild(el("text", { x: x + 6, y: y + 16, "font-weight": "bold", class: "node-name" }, clip(`${node.name}[${node.pid}]${node.user ? ` (${node.user})` : ""}`, 38)));
    group.appendChild(el("text", { x: x + 6, y: y + 33, fill: "#445", class: "node-cmdline" }, clip(node.cmdline || node.path || "", 40)));
    svg.appendChild(group);
  }
  return svg;
}

/** Offer ``text`` as a download called ``name``. */
export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function svgText(svg) {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(svg)}`;
}
