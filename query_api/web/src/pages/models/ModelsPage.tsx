import { useQuery } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { api } from "../../api";
import { Resource } from "../../components/Resource";
import { fmtInt } from "../../lib/format";
import { withParam } from "../../lib/url";
import { useProject } from "../../session";
import { ModelProfile } from "./ModelProfile";
import { RecommendForm } from "./RecommendForm";
import { fixed, ModelEntry } from "./types";

const CAPABILITIES = ["tools", "json_output", "vision"];
const LINK = { background: "none", border: "none", padding: 0, color: "var(--accent)", cursor: "pointer" };

/** The model registry (filters in the URL), one model's observed profile, and the recommendation form.
 * The registry is a few dozen rows, so a plain table rather than the virtualised one of the traces page. */
export default function ModelsPage() {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const provider = params.get("provider") ?? "";
  const caps = params.getAll("capability");
  const selected = params.get("model");
  const all = useQuery({ queryKey: ["models", projectId], queryFn: () => api<{ models: ModelEntry[] }>("/models", { project: projectId }) });
  const list = useQuery({
    queryKey: ["models", projectId, provider, caps],
    queryFn: () => api<{ models: ModelEntry[] }>("/models", { project: projectId, params: { provider, capability: caps } }),
  });
  const providers = [...new Set((all.data?.models ?? []).map((m) => m.provider))].sort();
  return (
    <div className="page">
      <h1>Models</h1>
      <section aria-labelledby="registry-h">
        <h2 id="registry-h">Registry</h2>
        <form className="inline-form" onSubmit={(e) => e.preventDefault()}>
          <label>Provider
            <select value={provider} onChange={(e) => setParams(withParam(params, "provider", e.target.value))}>
              <option value="">all</option>
              {providers.map((p) => <option key={p}>{p}</option>)}
            </select>
          </label>
          <fieldset className="inline-form"><legend className="small">Capabilities</legend>
            {CAPABILITIES.map((c) => (
              <label key={c}><input type="checkbox" checked={caps.includes(c)} onChange={(e) =>
                setParams(withParam(params, "capability", e.target.checked ? [...caps, c] : caps.filter((x) => x !== c)))} />{c}</label>
            ))}
          </fieldset>
        </form>
        <Resource q={list} what="models">
          {(data) => (
            <table className="list" aria-label="Model registry" data-testid="registry">
              <thead><tr><th>Provider</th><th>Model</th><th>Context</th><th>Max output</th><th>Capabilities</th>
                <th>Input $/1M</th><th>Output $/1M</th><th>Deprecation</th><th>Source</th></tr></thead>
              <tbody>
                {data.models.map((m) => (
                  <tr key={m.id} data-model={m.id}>
                    <td>{m.provider}</td>
                    <td><button type="button" style={LINK} onClick={() => setParams(withParam(params, "model", m.id))}>{m.name}</button></td>
                    <td>{fmtInt(m.context_window)}</td>
                    <td>{fmtInt(m.max_output_tokens)}</td>
                    <td>{CAPABILITIES.filter((c) => m.capabilities[c]).join(", ") || "–"}</td>
                    <td>{m.price ? fixed(m.price.prices.input, 4) : "no price"}</td>
                    <td>{m.price ? fixed(m.price.prices.output ?? 0, 4) : "–"}</td>
                    <td>{m.deprecation_date ?? "–"}</td>
                    <td>{m.source}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Resource>
      </section>
      {selected && <ModelProfile id={selected} days={Number(params.get("days") ?? 30)} />}
      <RecommendForm />
    </div>
  );
}
