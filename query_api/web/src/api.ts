// Every server call goes through here: the same /api/v1 endpoints scripts use, with the session
// cookie, the project header and (for writes) the CSRF token the server set in ``ef_csrf``.

export class ApiError extends Error {
  constructor(public status: number, message: string, public retryAfter: string | null = null) {
    super(message);
  }
}

function cookie(name: string): string {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

export type Params = URLSearchParams | Record<string, string | number | boolean | string[] | undefined | null>;

export function query(params?: Params): string {
  if (!params) return "";
  const sp = params instanceof URLSearchParams ? params : new URLSearchParams();
  if (!(params instanceof URLSearchParams)) {
    for (const [k, v] of Object.entries(params)) {
      if (v == null || v === "") continue;
      for (const one of Array.isArray(v) ? v : [v]) sp.append(k, String(one));
    }
  }
  const s = sp.toString();
  return s ? `?${s}` : "";
}

export interface CallOptions {
  method?: string;
  body?: unknown;
  params?: Params;
  project?: string;
  signal?: AbortSignal;
}

export async function api<T = any>(path: string, opts: CallOptions = {}): Promise<T> {
  const method = opts.method ?? "GET";
  const headers: Record<string, string> = { Accept: "application/json" };
  if (opts.project) headers["X-EvalForge-Project"] = opts.project;
  if (method !== "GET" && method !== "HEAD") {
    headers["X-CSRF-Token"] = cookie("ef_csrf");
    // A FormData body (a file upload) sets its own multipart Content-Type.
    if (opts.body !== undefined && !(opts.body instanceof FormData)) headers["Content-Type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(`/api/v1${path}${query(opts.params)}`, {
      method, headers, credentials: "same-origin", signal: opts.signal,
      body: opts.body === undefined ? undefined : opts.body instanceof FormData ? opts.body : JSON.stringify(opts.body),
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, "the server could not be reached");
  }
  if (res.status === 204) return null as T;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const msg = (data && (data.error || data.detail)) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, typeof msg === "string" ? msg : JSON.stringify(msg), res.headers.get("Retry-After"));
  }
  return data as T;
}

export interface ProjectRef {
  id: string;
  name: string;
  role: string;
}

export interface SessionInfo {
  user: { id: string; email: string; name: string } | null;
  projects: ProjectRef[];
}

/** Who is signed in: the session cookie (``/auth/me``), else an API key the browser sends itself
 * (e.g. a proxy adding ``Authorization``), which names one project; null when neither. */
export async function loadSession(): Promise<SessionInfo | null> {
  try {
    return await api<SessionInfo>("/auth/me");
  } catch (e) {
    if (!(e instanceof ApiError) || ![401, 403, 404].includes(e.status)) throw e;
  }
  try {
    const p = await api<{ id: string; name: string }>("/projects/current");
    return { user: null, projects: [{ id: p.id, name: p.name, role: "admin" }] };
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return null;
    throw e;
  }
}

export const WRITE_ROLES = new Set(["member", "admin", "owner"]);
export const ADMIN_ROLES = new Set(["admin", "owner"]);
