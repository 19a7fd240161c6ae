import { useEffect, useRef, useState, type ReactNode } from "react";
import { stateColor, stateGlyph } from "./lib/state";

/** DomainError is the API's payload error (field, code, message). */
export interface DomainError { field: string; code: string; message: string }

export function StateBadge({ state }: { state: string }) {
  return (
    <span className="badge" style={{ borderColor: stateColor(state) }} data-state={state}>
      <span aria-hidden="true" style={{ color: stateColor(state) }}>{stateGlyph(state)}</span> {state}
    </span>
  );
}

export function ErrorText({ error }: { error?: { message: string } | null }) {
  if (!error) return null;
  return <p role="alert" className="error">{error.message}</p>;
}

/** FieldErrors shows domain errors for one field (or the whole input when field is ""). */
export function FieldErrors({ errors, field }: { errors: readonly DomainError[] | undefined; field: string }) {
  const mine = (errors ?? []).filter((e) => e.field === field || (field === "" && !e.field));
  if (mine.length === 0) return null;
  return (
    <span role="alert" className="field-error" data-field={field}>
      {mine.map((e) => `${e.code}: ${e.message}`).join("; ")}
    </span>
  );
}

/** Confirm is a modal dialog built on <dialog>, keyboard-accessible (Esc cancels). */
export function Confirm({ open, title, children, onConfirm, onCancel }: {
  open: boolean; title: string; children?: ReactNode; onConfirm: () => void; onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return (
    <dialog ref={ref} onCancel={(e) => { e.preventDefault(); onCancel(); }} aria-labelledby="confirm-title">
      <h2 id="confirm-title">{title}</h2>
      {children}
      <div className="row">
        <button type="button" onClick={onCancel}>Cancel</button>
        <button type="button" className="danger" autoFocus onClick={onConfirm}>Confirm</button>
      </div>
    </dialog>
  );
}

/** VirtualList renders only the rows in view (fixed row height), for long lists. */
export function VirtualList<T>({ items, rowHeight, height, render, label }: {
  items: readonly T[]; rowHeight: number; height: number; render: (item: T, i: number) => ReactNode; label: string;
}) {
  const [top, setTop] = useState(0);
  const first = Math.max(0, Math.floor(top / rowHeight) - 5);
  const last = Math.min(items.length, Math.ceil((top + height) / rowHeight) + 5);
  const rows: ReactNode[] = [];
  for (let i = first; i < last; i++) {
    rows.push(<div key={i} role="listitem" style={{ position: "absolute", top: i * rowHeight, height: rowHeight, left: 0, right: 0 }}>{render(items[i]!, i)}</div>);
  }
  return (
    <div className="vlist" role="list" aria-label={label} tabIndex={0} style={{ height, overflowY: "auto", position: "relative" }}
      onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
      <div style={{ height: items.length * rowHeight, position: "relative" }}>{rows}</div>
    </div>
  );
}
