import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { createBrowserRouter, Navigate, RouterProvider } from "react-router";
import { ApiError } from "./api";
import { Layout, RootRedirect } from "./Layout";
import { SignIn } from "./SignIn";
import { PAGES, PageModule, SUBPAGES } from "./pages";
import { Loading } from "./components/ErrorBox";
import "./styles.css";

// A session that ended (signed out elsewhere, expired) sends the user to sign in, then back here.
const queryCache = new QueryCache({
  onError: (error) => {
    if (error instanceof ApiError && error.status === 401 && !location.pathname.startsWith("/sign-in")) {
      location.assign(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
  },
});

const client = new QueryClient({
  queryCache,
  defaultOptions: {
    queries: {
      // Client errors (400 / 401 / 403 / 404) will not pass on a retry; the page shows them with a Retry button.
      retry: (count, error) => !(error instanceof ApiError && error.status >= 400 && error.status < 500) && count < 2,
      refetchOnWindowFocus: false,
    },
  },
});

// A page's code loads before its route renders (react-router's route ``lazy``), not behind a Suspense
// fallback: React keeps a fallback it has shown for at least 300 ms (its reveal throttle), which held
// back each page's first render, and so its first request, by ~0.3 s after the chunk had arrived.
const page = (p: { path: string; load: PageModule }) => ({
  path: p.path,
  lazy: () => p.load().then((m) => ({ Component: m.default })),
});

const router = createBrowserRouter([
  { path: "/", element: <RootRedirect /> },
  { path: "/sign-in", element: <SignIn /> },
  { path: "/invite", element: <SignIn invite /> },
  {
    path: "/projects/:projectId",
    element: <Layout />,
    HydrateFallback: () => <Loading what="page" />, // while the first page's code loads
    children: [
      { index: true, element: <Navigate to="traces" replace /> },
      ...PAGES.map(page),
      ...SUBPAGES.map(page),
    ],
  },
  { path: "*", element: <RootRedirect /> },
]);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={client}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  </StrictMode>,
);
