// Build step: `npm ci && npm run build` -> dist/index.html + dist/assets/app-<hash>.{js,css}.
// One esbuild bundle (video.js core as the UI, hls.js as the HLS engine, video.js's CSS with its icon
// font inlined as a data URL), no CDN.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');
const started = Date.now();

await rm(dist, { recursive: true, force: true });
await mkdir(path.join(dist, 'assets'), { recursive: true });

const result = await build({
  entryPoints: { app: path.join(root, 'src/main.js') },
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  entryNames: '[name]-[hash]',
  assetNames: '[name]-[hash]',
  outdir: path.join(dist, 'assets'),
  loader: { '.woff': 'dataurl', '.woff2': 'dataurl', '.ttf': 'dataurl', '.svg': 'dataurl' },
  define: { 'process.env.NODE_ENV': '"production"' },
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs).map((p) => path.relative(path.join(dist, 'assets'), path.resolve(root, p)));
const js = outputs.find((p) => /^app-.*\.js$/.test(p));
const css = outputs.find((p) => /^app-.*\.css$/.test(p));
if (!js || !css) throw new Error(`build: missing bundle in ${outputs.join(', ')}`);

const html = (await readFile(path.join(root, 'index.html'), 'utf8'))
  .replace('%APP_JS%', `/assets/${js}`)
  .replace('%APP_CSS%', `/assets/${css}`);
await writeFile(path.join(dist, 'index.html'), html);

const sizes = await Promise.all([js, css].map(async (f) => `${f} ${((await readFile(path.join(dist, 'assets', f))).length / 1024).toFixed(0)} KiB`));
console.log(`frontend built in ${Date.now() - started} ms: dist/index.html, ${sizes.join(', ')}`);
