// Pure layout for the machine view's boot timeline and drift (docs/discovery.md): step offsets and
// widths of a boot's waterfall, and a machine's drift map flattened into planned-vs-found rows.

export interface BootStepLike {
  kind: string;
  what: string;
  at: string;
  durationMs?: number | null;
  status?: string | null;
  error?: string | null;
}

export interface BootLike {
  trace?: string | null;
  start: string;
  durationMs: number;
  steps: readonly BootStepLike[];
}

export interface StepBar {
  step: BootStepLike;
  /** Milliseconds from the boot's start. */
  offsetMs: number;
  durationMs: number;
  /** Left edge and width as percentages of the boot's span (width at least minPct, so an instant shows). */
  leftPct: number;
  widthPct: number;
  failed: boolean;
}

const failedStatus = /^(fail|error|timeout|[45]\d\d)/i;

/** waterfall lays a boot's steps out on one time axis: the boot's start to its last step's end. */
export function waterfall(boot: BootLike, minPct = 0.5): { spanMs: number; bars: StepBar[] } {
  const t0 = Date.parse(boot.start);
  const rows = boot.steps.map((step) => {
    const at = Date.parse(step.at);
    const offsetMs = Number.isFinite(at) && Number.isFinite(t0) ? Math.max(0, at - t0) : 0;
    return { step, offsetMs, durationMs: Math.max(0, step.durationMs ?? 0) };
  });
  const spanMs = Math.max(boot.durationMs, 1, ...rows.map((r) => r.offsetMs + r.durationMs));
  const bars = rows.map((r) => {
    const leftPct = Math.min(100, (r.offsetMs / spanMs) * 100);
    const widthPct = Math.min(100 - leftPct, Math.max(minPct, (r.durationMs / spanMs) * 100));
    const failed = !!r.step.error || failedStatus.test(r.step.status ?? "");
    return { ...r, leftPct, widthPct, failed };
  });
  return { spanMs, bars };
}

export interface DriftRow {
  /** The fact that differs: "NICs", "Disk count", "Disk", "CPUs", "Memory", or the raw key for an unknown one. */
  fact: string;
  planned: string;
  found: string;
}

function n(v: unknown): string { return typeof v === "number" || typeof v === "string" ? String(v) : v == null ? "—" : JSON.stringify(v); }
function list(v: unknown): unknown[] { return Array.isArray(v) ? v : []; }
function disk(d: unknown): string {
  const o = (d ?? {}) as { name?: unknown; sizeBytes?: unknown };
  return typeof o.sizeBytes === "number" ? `${n(o.name)} (${Math.round(o.sizeBytes / 1e9)} GB)` : n(o.name);
}
function gib(v: unknown): string { return typeof v === "number" ? `${(v / 2 ** 30).toFixed(v % 2 ** 30 === 0 ? 0 : 1)} GiB` : n(v); }

/** driftRows flattens Machine.drift into one row per difference; null or {} gives none. */
export function driftRows(drift: Record<string, unknown> | null | undefined): DriftRow[] {
  const rows: DriftRow[] = [];
  for (const [key, raw] of Object.entries(drift ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    const v = (raw ?? {}) as Record<string, unknown>;
    switch (key) {
      case "nics":
        for (const mac of list(v["missing"])) rows.push({ fact: "NIC", planned: n(mac), found: "missing" });
        for (const mac of list(v["extra"])) rows.push({ fact: "NIC", planned: "not planned", found: n(mac) });
        break;
      case "disks":
        rows.push({ fact: "Disk count", planned: n(v["planned"]), found: n(v["found"]) });
        for (const d of list(v["missing"])) rows.push({ fact: "Disk", planned: disk(d), found: "missing" });
        for (const d of list(v["extra"])) rows.push({ fact: "Disk", planned: "not planned", found: disk(d) });
        break;
      case "cpuCount":
        rows.push({ fact: "CPUs", planned: n(v["planned"]), found: n(v["found"]) });
        break;
      case "memoryBytes":
        rows.push({ fact: "Memory", planned: gib(v["planned"]), found: gib(v["found"]) });
        break;
      default:
        rows.push({ fact: key, planned: n(v["planned"] ?? raw), found: n(v["found"]) });
    }
  }
  return rows;
}
