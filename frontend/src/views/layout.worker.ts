// Graph layout off the main thread: dagre ranks the node-role DAG (parents above children).
import dagre from "@dagrejs/dagre";

export interface LayoutIn { nodes: { id: string; w: number; h: number }[]; edges: { from: string; to: string }[] }
export interface LayoutOut { nodes: Record<string, { x: number; y: number }>; width: number; height: number }

self.onmessage = (ev: MessageEvent<LayoutIn>) => {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: "TB", nodesep: 20, ranksep: 50, marginx: 10, marginy: 10 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of ev.data.nodes) g.setNode(n.id, { width: n.w, height: n.h });
  for (const e of ev.data.edges) if (g.hasNode(e.from) && g.hasNode(e.to)) g.setEdge(e.from, e.to);
  dagre.layout(g);
  const out: LayoutOut = { nodes: {}, width: g.graph().width ?? 0, height: g.graph().height ?? 0 };
  for (const id of g.nodes()) { const n = g.node(id); out.nodes[id] = { x: n.x, y: n.y }; }
  (self as unknown as Worker).postMessage(out);
};
