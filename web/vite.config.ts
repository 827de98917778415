/**
 * The playground's build: `npm run web` serves it with hot reload, `npm run build:web` writes a static
 * site to dist/web/ (relative asset paths, so it works from any directory of any static host).
 */

import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = fileURLToPath(new URL('..', import.meta.url));

export default defineConfig({
  root: here,
  base: './',
  // The page imports the model from src/ and the scenarios from examples/, outside web/.
  server: { fs: { allow: [repo] } },
  build: {
    outDir: `${repo}dist/web`,
    emptyOutDir: true,
    target: 'es2022',
    // One page, one bundle: the model is ~0.5 MB of source and the page needs all of it at once.
    chunkSizeWarningLimit: 2048,
  },
});
