import { ReactNode, useRef } from "react";
import { ColumnDef, flexRender, getCoreRowModel, useReactTable } from "@tanstack/react-table";
import { useVirtualizer } from "@tanstack/react-virtual";

/** A TanStack table whose rows are virtualised and measured (rows holding JSON trees differ in height),
 * so a run of 10,000 items renders as fast as one of 10. ``widths`` are CSS grid tracks per column. */
export function VirtualTable<T>({ rows, columns, rowId, label, testId, rowTestId, widths, footer, estimate = 60 }: {
  rows: T[]; columns: ColumnDef<T>[]; rowId: (r: T) => string; label: string; testId: string; rowTestId: string;
  widths?: Record<string, string>; footer?: ReactNode; estimate?: number;
}) {
  const table = useReactTable({ data: rows, columns, getCoreRowModel: getCoreRowModel(), getRowId: rowId });
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => estimate, overscan: 8 });
  const cols = table.getVisibleLeafColumns();
  const headers = table.getHeaderGroups()[0]?.headers ?? [];
  const grid = cols.map((c) => widths?.[c.id] ?? "minmax(80px, 1fr)").join(" ");
  const modelRows = table.getRowModel().rows;
  return (
    <div className="table" role="grid" aria-label={label} aria-rowcount={rows.length} data-testid={testId}>
      <div className="thead" role="row" style={{ gridTemplateColumns: grid }}>
        {headers.map((h) => <div role="columnheader" key={h.id}>{flexRender(h.column.columnDef.header, h.getContext())}</div>)}
      </div>
      <div className="tbody" ref={scroller}>
        <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
          {virtual.getVirtualItems().map((v) => {
            const row = modelRows[v.index];
            return (
              <div role="row" key={row.id} data-index={v.index} ref={virtual.measureElement} data-testid={rowTestId} data-row-id={row.id}
                   className="tr tall" aria-rowindex={v.index + 1} style={{ transform: `translateY(${v.start}px)`, gridTemplateColumns: grid }}>
                {row.getVisibleCells().map((cell) => <div role="gridcell" key={cell.id}>{flexRender(cell.column.columnDef.cell, cell.getContext())}</div>)}
              </div>
            );
          })}
        </div>
      </div>
      <div className="tfoot"><span data-testid="row-count">{rows.length} rows</span>{footer}</div>
    </div>
  );
}
