import { defineConfig } from "vite";

// A static site: relative asset URLs so that dist/ works from any folder of any static server
// (and from `bitnet serve` at /). The engine's packages are bundled from their built "browser"
// entries (not their TypeScript sources, which include the Node-only modules): no Node built-in
// reaches the page.
export default defineConfig({
  base: "./",
  resolve: { conditions: ["browser"] },
  // Dawn's Node binding: the browser has navigator.gpu, so the page never imports it.
  worker: { format: "es", rollupOptions: { external: ["webgpu"] } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 2048,
    rollupOptions: { external: ["webgpu"] },
  },
});
