import { FormEvent, useState } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { api, ApiError, SessionInfo } from "./api";

export function SignIn({ invite = false }: { invite?: boolean }) {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [name, setName] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const body = invite ? { token: params.get("token") ?? "", password, name: name || undefined } : { email, password };
      const session = await api<SessionInfo>(invite ? "/auth/accept-invite" : "/auth/login", { method: "POST", body });
      qc.clear();
      qc.setQueryData(["session"], session);
      const next = params.get("next");
      const first = session.projects[0];
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : first ? `/projects/${first.id}/traces` : "/");
    } catch (err) {
      if (err instanceof ApiError && err.status === 429) {
        setError(`Too many attempts. Try again in ${err.retryAfter ?? "a few"} seconds.`);
      } else setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">{invite ? "Accept invitation" : "Sign in to EvalForge"}</h1>
        {!invite && (
          <label>Email<input type="email" name="email" autoComplete="username" required value={email}
                             onChange={(e) => setEmail(e.target.value)} /></label>
        )}
        {invite && (
          <label>Name<input name="name" value={name} onChange={(e) => setName(e.target.value)} /></label>
        )}
        <label>Password<input type="password" name="password" autoComplete={invite ? "new-password" : "current-password"}
                              required value={password} onChange={(e) => setPassword(e.target.value)} /></label>
        {error && <p className="error-box" role="alert">{error}</p>}
        <button type="submit" disabled={busy}>{invite ? "Join" : "Sign in"}</button>
      </form>
    </main>
  );
}
