// Colour plus a glyph and text for every state, so state never rests on colour alone.
export const machineStates = ["NEW", "DISCOVERED", "READY", "BUSY", "ERROR"] as const;
export type MachineState = (typeof machineStates)[number];

export const nodeRoleStates = ["PROPOSED", "TODO", "BLOCKED", "TRANSITION", "ACTIVE", "ERROR"] as const;

const palette: Record<string, { color: string; glyph: string }> = {
  NEW: { color: "#9aa5b1", glyph: "○" },
  DISCOVERED: { color: "#5b8def", glyph: "◐" },
  READY: { color: "#2f9e44", glyph: "●" },
  BUSY: { color: "#e8a317", glyph: "◆" },
  ERROR: { color: "#d9480f", glyph: "✖" },
  PROPOSED: { color: "#c5cbd3", glyph: "…" },
  TODO: { color: "#74c0fc", glyph: "○" },
  BLOCKED: { color: "#adb5bd", glyph: "⊘" },
  TRANSITION: { color: "#e8a317", glyph: "↻" },
  ACTIVE: { color: "#2f9e44", glyph: "✔" },
  PENDING: { color: "#74c0fc", glyph: "○" },
  RUNNING: { color: "#e8a317", glyph: "↻" },
  SUCCEEDED: { color: "#2f9e44", glyph: "✔" },
  FAILED: { color: "#d9480f", glyph: "✖" },
  ABANDONED: { color: "#adb5bd", glyph: "⊘" },
};

export function stateColor(s: string): string { return palette[s]?.color ?? "#868e96"; }
export function stateGlyph(s: string): string { return palette[s]?.glyph ?? "?"; }
