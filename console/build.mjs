// Build the console into dist/ (committed: cgs-host embeds it, and a machine without Node.js
// still builds the host). Deterministic: .ci/run rebuilds and requires no difference.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });
mkdirSync('dist');
await build({
  entryPoints: ['src/app.jsx'],
  outfile: 'dist/console.js',
  bundle: true,
  format: 'esm',
  minify: true,
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  legalComments: 'eof',
  charset: 'utf8',
  logLevel: 'warning',
});
copyFileSync('src/index.html', 'dist/index.html');
copyFileSync('src/console.css', 'dist/console.css');
