import { FormEvent } from "react";
import { useSearchParams } from "react-router";
import { RANGES } from "../../lib/url";

const TEXT_FILTERS: Array<[string, string]> = [
  ["model", "Model"], ["provider", "Provider"], ["user_id", "User"], ["session_id", "Session"], ["tag", "Tag"],
  ["metadata", "Metadata (key=value)"], ["name", "Name"], ["min_latency_ms", "Min latency (ms)"],
  ["max_latency_ms", "Max latency (ms)"], ["min_cost", "Min cost ($)"], ["max_cost", "Max cost ($)"],
  ["score_name", "Score name"], ["min_score", "Min score"], ["max_score", "Max score"],
];

/** Filters as a form whose fields are the URL's parameters; Apply writes them to the URL. */
export function FilterBar() {
  const [params, setParams] = useSearchParams();
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(e.currentTarget).entries()) {
      if (typeof v === "string" && v.trim() !== "") next.append(k, v.trim());
    }
    for (const k of ["sort", "order", "hide", "live", "attribute"]) for (const v of params.getAll(k)) next.append(k, v);
    setParams(next);
  };
  return (
    <form className="filters" onSubmit={submit} aria-label="Trace filters" key={params.toString()}>
      <label className="grow">Search<input type="search" name="q" defaultValue={params.get("q") ?? ""}
                                           placeholder="text in inputs and outputs" /></label>
      <label>Time range
        <select name="range" defaultValue={params.get("range") ?? "all"}>
          {Object.keys(RANGES).map((r) => <option key={r} value={r}>{r === "all" ? "All time" : `Last ${r}`}</option>)}
        </select>
      </label>
      <label>Status
        <select name="status" defaultValue={params.get("status") ?? ""}>
          <option value="">any</option><option value="ok">ok</option><option value="error">error</option>
          <option value="unset">unset</option>
        </select>
      </label>
      {TEXT_FILTERS.map(([key, label]) => (
        <label key={key}>{label}<input name={key} defaultValue={params.get(key) ?? ""} size={10} /></label>
      ))}
      <div className="filter-actions">
        <button type="submit">Apply</button>
        <button type="button" onClick={() => setParams(new URLSearchParams())}>Clear</button>
      </div>
      {params.getAll("attribute").length > 0 && (
        <div className="pills" aria-label="Attribute filters">
          {params.getAll("attribute").map((a) => (
            <button type="button" key={a} className="pill" title="Remove this filter" onClick={() => {
              const next = new URLSearchParams(params);
              next.delete("attribute");
              for (const other of params.getAll("attribute")) if (other !== a) next.append("attribute", other);
              setParams(next);
            }}>{a} ✕</button>
          ))}
        </div>
      )}
    </form>
  );
}
