import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";

interface Dataset { id: string; name: string; version: number; items: number }
interface Added { id: string; version: number; added: number; items: Array<{ id: string }> }
const NEW = "__new__";

/** Add this span to a dataset (an existing one, or one created here by name): its input becomes the
 * item's input and its output the expected output (POST /datasets/{id}/items/from-trace). Datasets are
 * listed only once the control is opened, so opening a span costs no extra request. */
export function AddToDataset({ projectId, traceId, spanId }: { projectId: string; traceId: string; spanId: string }) {
  const [open, setOpen] = useState(false);
  const [choice, setChoice] = useState("");
  const [newName, setNewName] = useState("");
  const qc = useQueryClient();
  const datasets = useQuery({ queryKey: ["datasets", projectId], enabled: open,
                              queryFn: () => api<{ datasets: Dataset[] }>("/datasets", { project: projectId }) });
  const add = useMutation({
    mutationFn: async (target: string): Promise<Added & { name: string }> => {
      let id = target, name = datasets.data?.datasets.find((d) => d.id === target)?.name ?? "";
      if (target === NEW) {
        const created = await api<{ id: string }>("/datasets", { method: "POST", project: projectId, body: { name: newName } });
        id = created.id; name = newName;
      }
      const added = await api<Added>(`/datasets/${encodeURIComponent(id)}/items/from-trace`,
                                     { method: "POST", project: projectId, body: { trace_id: traceId, span_id: spanId } });
      return { ...added, name };
    },
    onSuccess: (added) => { setChoice(added.id); setNewName(""); qc.invalidateQueries({ queryKey: ["datasets", projectId] }); },
  });
  if (!open) return <button type="button" onClick={() => setOpen(true)}>Add to dataset…</button>;
  const list = datasets.data?.datasets ?? [];
  const selected = choice || (list[0]?.id ?? NEW);
  const submit = (e: FormEvent) => { e.preventDefault(); add.mutate(selected); };
  return (
    <section aria-label="Add to dataset"><h3>Add to dataset</h3>
      {datasets.error ? <ErrorBox error={datasets.error} retry={() => datasets.refetch()} /> : (
        <form className="inline-form" onSubmit={submit} aria-label="Add span to dataset">
          <label>Dataset<select value={selected} onChange={(e) => setChoice(e.target.value)} disabled={!datasets.data}>
            {list.map((d) => <option key={d.id} value={d.id}>{d.name} (v{d.version}, {d.items} items)</option>)}
            <option value={NEW}>New dataset…</option>
          </select></label>
          {selected === NEW && <label>New dataset name<input value={newName} onChange={(e) => setNewName(e.target.value)} required /></label>}
          <button type="submit" disabled={add.isPending || !datasets.data}>Add span</button>
        </form>
      )}
      {add.data && <p role="status" data-testid="dataset-added">Added item {add.data.items[0]?.id} to {add.data.name} (version {add.data.version}).</p>}
      {add.error && <ErrorBox error={add.error} retry={() => add.variables && add.mutate(add.variables)} />}
    </section>
  );
}
