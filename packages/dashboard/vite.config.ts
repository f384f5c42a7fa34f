// The dashboard is served by the coordinator under /ui/; JSX is compiled by Vite's own esbuild
// (no Babel plugin needed for Preact).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', sourcemap: false, reportCompressedSize: false },
});
