// Bundles src/app.js (with both SDK versions) into dist/app.js for the browser: `npm run build`.
import { readFileSync } from 'node:fs';
import * as esbuild from 'esbuild';

const versionOf = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;

await esbuild.build({
  entryPoints: ['src/app.js'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  sourcemap: true,
  outfile: 'dist/app.js',
  logLevel: 'warning',
  define: {
    SDK_V1_VERSION: JSON.stringify(versionOf('@modelcontextprotocol/sdk')),
    SDK_V2_VERSION: JSON.stringify(versionOf('@modelcontextprotocol/client')),
  },
});
