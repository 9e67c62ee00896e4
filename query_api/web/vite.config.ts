import { defineConfig } from "vitest/config";

// Built into ../web_dist (committed: the server package ships the dashboard without Node).
// React's automatic JSX runtime through esbuild: no @vitejs/plugin-react needed.
export default defineConfig({
  esbuild: { jsx: "automatic" },
  build: {
    outDir: "../web_dist",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    chunkSizeWarningLimit: 400,
    rollupOptions: {
      // TanStack's "use client" markers mean nothing to a plain SPA bundle.
      onwarn(warning, warn) {
        if (warning.code === "MODULE_LEVEL_DIRECTIVE") return;
        warn(warning);
      },
    },
  },
  server: { proxy: { "/api": "http://127.0.0.1:4318", "/v1": "http://127.0.0.1:4318" } },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
});
