// The project pages, in nav order. A later capability adds its page here (one line) and a folder
// under pages/; each page is its own chunk, loaded when first opened.
import { lazy } from "react";

export interface PageDef {
  path: string;
  label: string;
  component: ReturnType<typeof lazy>;
}

export const PAGES: PageDef[] = [
  { path: "traces", label: "Traces", component: lazy(() => import("./pages/traces/TracesPage")) },
  { path: "sessions", label: "Sessions & users", component: lazy(() => import("./pages/sessions/SessionsPage")) },
  { path: "dashboard", label: "Dashboard", component: lazy(() => import("./pages/dashboard/DashboardPage")) },
  { path: "compare", label: "Compare", component: lazy(() => import("./pages/compare/ComparePage")) },
  { path: "evaluations", label: "Evaluations", component: lazy(() => import("./pages/evaluations/EvaluationsPage")) },
  { path: "models", label: "Models", component: lazy(() => import("./pages/models/ModelsPage")) },
  { path: "alerts", label: "Alerts", component: lazy(() => import("./pages/alerts/AlertsPage")) },
  { path: "settings", label: "Settings", component: lazy(() => import("./pages/settings/SettingsPage")) },
];

// Pages reached from others (not in the nav).
export const SUBPAGES = [
  { path: "traces/:traceId", component: lazy(() => import("./pages/trace/TraceDetailPage")) },
  { path: "sessions/:sessionId", component: lazy(() => import("./pages/sessions/SessionPage")) },
  { path: "users/:userId", component: lazy(() => import("./pages/sessions/UserPage")) },
];
