// Rack elevation as lean SVG: the rails, holes and U grid are one pattern-filled rect and one path
// (not one element per U), so an empty 42U face is a handful of elements and a row of 100 racks
// stays cheap. Machines are a <g> each (rect + title + label); adjacent machines are separated by a
// 1px inset. The opposite face's occupancy is shaded.
import { memo } from "react";
import { stateColor, stateGlyph } from "../lib/state";

export interface RackMachine {
  id: string;
  name: string;
  uPosition?: number | null;
  uHeight: number;
  state: string;
  alive: boolean;
  power?: string | null;
}

export const U = 14; // px per rack unit
const W = 190;
const RAIL = 18;

interface Props {
  id: string;
  height: number;
  machines: readonly RackMachine[];
  face: "front" | "rear";
  compact?: boolean;
  onOpen?: (id: string) => void;
}

function label(m: RackMachine) {
  return `${m.name} — U${m.uPosition ?? "?"}${m.uHeight > 1 ? `–${(m.uPosition ?? 0) + m.uHeight - 1}` : ""}, ${m.state}, ${m.alive ? "alive" : "not answering"}${m.power ? `, power ${m.power}` : ""}`;
}

/**
 * CompactMachines draws a rack's machines for the row view as one path per state (plus one for
 * machines not answering): a few elements per rack whatever it holds, so 100 racks stay light.
 * Hover details come from the rack's own <title>; clicks resolve the U under the pointer.
 */
function CompactMachines({ machines, height, w, rail }: { machines: readonly RackMachine[]; height: number; w: number; rail: number }) {
  const byState = new Map<string, string>();
  let dead = "";
  for (const m of machines) {
    if (m.uPosition == null) continue;
    const y = (height - (m.uPosition + m.uHeight - 1)) * U + 1;
    const d = `M${rail + 1} ${y}h${w - 2 * rail - 2}v${m.uHeight * U - 2}h${-(w - 2 * rail - 2)}z`;
    byState.set(m.state, (byState.get(m.state) ?? "") + d);
    if (!m.alive) dead += d;
  }
  return (
    <>
      {[...byState].map(([st, d]) => <path key={st} d={d} fill={stateColor(st)} data-state={st} />)}
      {dead && <path d={dead} fill="none" stroke="#d9480f" strokeDasharray="3 2" />}
    </>
  );
}

/** machineAt returns the machine occupying U u (1 = bottom), if any. */
export function machineAt(machines: readonly RackMachine[], u: number): RackMachine | undefined {
  return machines.find((m) => m.uPosition != null && u >= m.uPosition && u < m.uPosition + m.uHeight);
}

export const RackSVG = memo(function RackSVG({ id, height, machines, face, compact, onOpen }: Props) {
  const w = compact ? 60 : W;
  const rail = compact ? 6 : RAIL;
  const h = height * U;
  const pid = `holes-${compact ? "c" : "f"}`;
  const top = (u: number, hgt: number) => (height - (u + hgt - 1)) * U; // U1 at the bottom
  return (
    <svg xmlns="http://www.w3.org/2000/svg" width={w} height={h + 2} viewBox={`0 -1 ${w} ${h + 2}`} role="img"
      aria-label={`${face} face`} data-rack={id} data-face={face} className="rack-svg"
      onClick={compact && onOpen ? (e) => {
        const r = e.currentTarget.getBoundingClientRect();
        const u = height - Math.floor(((e.clientY - r.top) / r.height) * (h + 2) / U);
        const m = machineAt(machines, u);
        if (m) onOpen(m.id);
      } : undefined}>
      {compact && <title>{machines.map((m) => `U${m.uPosition} ${m.name.split(".")[0]} ${m.state}${m.alive ? "" : " (not answering)"}`).join("\n")}</title>}
      <defs>
        <pattern id={pid} width={w} height={U} patternUnits="userSpaceOnUse">
          {compact && <rect x={rail / 2 - 1.5} y={U / 2 - 1.5} width={3} height={3} fill="#6c757d" />}
          <rect x={w - rail / 2 - 1.5} y={U / 2 - 1.5} width={3} height={3} fill="#6c757d" />
          <path d={`M${rail} 0H${w - rail}`} stroke="#e9ecef" strokeWidth={1} />
        </pattern>
      </defs>
      <rect x={0} y={0} width={w} height={h} fill="#343a40" />
      <rect x={0} y={0} width={w} height={h} fill={`url(#${pid})`} />
      <rect x={rail} y={0} width={w - 2 * rail} height={h} fill="#f8f9fa" fillOpacity={0.92} />
      {!compact && (
        // U numbers: one <text> of tspans, on the left rail.
        <text fontSize={8} fill="#f8f9fa" textAnchor="middle" aria-hidden="true">
          {Array.from({ length: height }, (_, i) => <tspan key={i} x={rail / 2} y={(height - i - 1) * U + U / 2 + 3}>{i + 1}</tspan>)}
        </text>
      )}
      {compact ? <CompactMachines machines={machines} height={height} w={w} rail={rail} /> : machines.map((m) => {
        if (m.uPosition == null) return null;
        const y = top(m.uPosition, m.uHeight);
        const hh = m.uHeight * U;
        if (face === "rear") {
          // Full-depth machines occupy the rear too: shaded, still with their tooltip.
          return (
            <g key={m.id} className="occupied" data-machine={m.id}>
              <title>{label(m)} (seen from the rear)</title>
              <rect x={rail + 1} y={y + 1} width={w - 2 * rail - 2} height={hh - 2} fill="#adb5bd" stroke="#868e96" fillOpacity={0.6} />
            </g>
          );
        }
        return (
          <g key={m.id} className="machine" data-machine={m.id} data-u={m.uPosition} data-state={m.state} tabIndex={onOpen ? 0 : undefined}
            role={onOpen ? "link" : undefined} aria-label={label(m)}
            onClick={onOpen ? () => onOpen(m.id) : undefined}
            onKeyDown={onOpen ? (e) => { if (e.key === "Enter") onOpen(m.id); } : undefined}>
            <title>{label(m)}</title>
            <rect x={rail + 1} y={y + 1} width={w - 2 * rail - 2} height={hh - 2} rx={1.5}
              fill={stateColor(m.state)} stroke={m.alive ? "#212529" : "#d9480f"} strokeDasharray={m.alive ? undefined : "3 2"} />
            {!compact && (
              <text x={rail + 5} y={y + hh / 2 + 4} fontSize={10} fill="#fff">
                {stateGlyph(m.state)} {m.power === "off" ? "⏻ " : ""}{m.name.split(".")[0]}
              </text>
            )}
          </g>
        );
      })}
    </svg>
  );
});

/** svgSource returns a standalone SVG document of an element (for the download button). */
export function svgSource(el: SVGSVGElement): string {
  const clone = el.cloneNode(true) as SVGSVGElement;
  clone.setAttribute("xmlns", "http://www.w3.org/2000/svg");
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(clone);
}
