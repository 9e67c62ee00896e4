import { ApiError } from "../api";

/** A failed request, inline, with a way to try again (never a blank page). */
export function ErrorBox({ error, retry }: { error: unknown; retry?: () => void }) {
  const status = error instanceof ApiError ? error.status : null;
  const msg = error instanceof Error ? error.message : String(error);
  return (
    <div className="error-box" role="alert">
      <strong>{status === 404 ? "Not found" : "Request failed"}</strong>
      <span>{status ? ` (${status})` : ""}: {msg}</span>
      {retry && <button type="button" onClick={() => retry()}>Retry</button>}
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return <div className="loading" role="status">Loading {what}…</div>;
}
