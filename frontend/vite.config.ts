import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import { resolve } from "node:path";

// Built into dist/app (the committed dist/index.html placeholder stays for builds without Node);
// Go embeds dist and serves dist/app when it exists. Two pages: the console and GraphiQL, so the
// console's first load never carries GraphiQL.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist/app",
    emptyOutDir: true,
    assetsDir: "assets",
    sourcemap: false,
    rollupOptions: {
      input: {
        main: resolve(__dirname, "index.html"),
        graphiql: resolve(__dirname, "graphiql.html"),
      },
    },
  },
  worker: { format: "es" },
  server: {
    proxy: { "/graphql": { target: "http://127.0.0.1:8080", ws: true }, "/auth": "http://127.0.0.1:8080" },
  },
  test: {
    include: ["src/**/*.test.{ts,tsx}"],
    environment: "node",
  },
});
