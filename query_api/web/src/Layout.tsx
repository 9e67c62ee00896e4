import { Navigate, NavLink, Outlet, useLocation, useNavigate, useParams } from "react-router";
import { api } from "./api";
import { useResetSession, useSession } from "./session";
import { ErrorBox, Loading } from "./components/ErrorBox";
import { PAGES } from "./pages";

export function RootRedirect() {
  const session = useSession();
  if (session.isLoading) return <Loading what="session" />;
  if (session.error) return <ErrorBox error={session.error} retry={session.refetch} />;
  if (!session.data) return <Navigate to="/sign-in" replace />;
  const first = session.data.projects[0];
  if (!first) return <div className="page"><p>You are not a member of any project yet.</p></div>;
  return <Navigate to={`/projects/${first.id}/traces`} replace />;
}

export function Layout() {
  const session = useSession();
  const { projectId = "" } = useParams();
  const location = useLocation();
  const navigate = useNavigate();
  const reset = useResetSession();
  if (session.error) return <ErrorBox error={session.error} retry={session.refetch} />;
  if (session.data === null) return <Navigate to={`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`} replace />;
  // While the session loads, the page starts its own requests (and loads its code) at the same
  // time: the API answers for the project itself, so nothing is shown that the caller may not see.
  const { user, projects } = session.data ?? { user: null, projects: [] };
  const project = projects.find((p) => p.id === projectId);
  const page = location.pathname.split("/")[3] || "traces";
  const signOut = async () => {
    try { await api("/auth/logout", { method: "POST" }); } finally { reset(); navigate("/sign-in"); }
  };
  return (
    <div className="shell">
      <header className="topbar">
        <span className="brand">EvalForge</span>
        <label className="switcher">
          <span>Project</span>
          <select value={projectId} onChange={(e) => navigate(`/projects/${e.target.value}/${PAGES.some((p) => p.path === page) ? page : "traces"}`)}>
            {!project && <option value={projectId}>{session.isLoading ? "…" : "(not available)"}</option>}
            {projects.map((p) => <option key={p.id} value={p.id}>{p.name} ({p.role})</option>)}
          </select>
        </label>
        <nav aria-label="Pages">
          {PAGES.map((p) => <NavLink key={p.path} to={`/projects/${projectId}/${p.path}`}>{p.label}</NavLink>)}
        </nav>
        <span className="spacer" />
        {user && <span className="user" title={user.email}>{user.name || user.email}</span>}
        {user && <button type="button" onClick={signOut}>Sign out</button>}
      </header>
      <main className="content">
        {project || session.isLoading ? <Outlet /> : (
          // Same answer whether the project exists or not: existence does not leak.
          <div className="page"><h1>Not found</h1><p>This project does not exist or you are not a member of it.</p></div>
        )}
      </main>
    </div>
  );
}
