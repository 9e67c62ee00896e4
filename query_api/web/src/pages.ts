// The project pages, in nav order. A later capability adds its page here (one line) and a folder
// under pages/; each page is its own chunk, loaded when first opened.
import type { ComponentType } from "react";

/** A page's chunk; main.tsx loads it before the page's route renders (react-router's route ``lazy``). */
export type PageModule = () => Promise<{ default: ComponentType }>;

export interface PageDef {
  path: string;
  label: string;
  load: PageModule;
}

export const PAGES: PageDef[] = [
  { path: "traces", label: "Traces", load: () => import("./pages/traces/TracesPage") },
  { path: "sessions", label: "Sessions & users", load: () => import("./pages/sessions/SessionsPage") },
  { path: "dashboard", label: "Dashboard", load: () => import("./pages/dashboard/DashboardPage") },
  { path: "compare", label: "Compare", load: () => import("./pages/compare/ComparePage") },
  { path: "prompts", label: "Prompts", load: () => import("./pages/prompts/PromptsPage") },
  { path: "evaluations", label: "Evaluations", load: () => import("./pages/evaluations/EvaluationsPage") },
  { path: "datasets", label: "Datasets", load: () => import("./pages/datasets/DatasetsPage") },
  { path: "experiments", label: "Experiments", load: () => import("./pages/experiments/ExperimentsPage") },
  { path: "leaderboards", label: "Leaderboards", load: () => import("./pages/leaderboards/LeaderboardsPage") },
  { path: "models", label: "Models", load: () => import("./pages/models/ModelsPage") },
  { path: "ab-tests", label: "A/B tests", load: () => import("./pages/abtests/AbTestsPage") },
  { path: "alerts", label: "Alerts", load: () => import("./pages/alerts/AlertsPage") },
  { path: "settings", label: "Settings", load: () => import("./pages/settings/SettingsPage") },
];

// Pages reached from others (not in the nav).
export const SUBPAGES = [
  { path: "traces/:traceId", load: () => import("./pages/trace/TraceDetailPage") },
  { path: "sessions/:sessionId", load: () => import("./pages/sessions/SessionPage") },
  { path: "datasets/:datasetId", load: () => import("./pages/datasets/DatasetPage") },
  { path: "experiments/compare", load: () => import("./pages/experiments/CompareRunsPage") },
  { path: "experiments/:experimentId", load: () => import("./pages/experiments/ExperimentPage") },
  { path: "users/:userId", load: () => import("./pages/sessions/UserPage") },
];
