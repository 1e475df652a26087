// Build step: `npm ci && npm run build` -> dist/index.html + dist/assets/app-<hash>.{js,css}.
// One esbuild bundle (video.js and its CSS, whose icon font is inlined as a data URL), no CDN.
import { build } from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(root, 'dist');
const started = Date.now();

await rm(dist, { recursive: true, force: true });
await mkdir(path.join(dist, 'assets'), { recursive: true });

// VHS (inside video.js) answers worker probes by action name only. When two probes of the same kind
// are in flight (a seek while the previous seek's segment is still loading), the first answer reaches
// both listeners; the first consumer transfers the buffer back to the worker and the second one then
// throws "Cannot perform Construct on a detached ArrayBuffer" (videojs/http-streaming#1276), which
// leaves that seek hanging. The patch lets the second listener keep waiting for its own answer.
const VHS_PROBE_LINE = 'event.data.data = new Uint8Array(event.data.data, options.byteOffset || 0, options.byteLength || event.data.data.byteLength);';
const VHS_PROBE_PATCH = `try { ${VHS_PROBE_LINE} } catch (hlsmarkDetached) {
        // hlsmark: not our answer (its buffer went back to the worker): wait for the next one.
        transmuxer.addEventListener('message', listenForEndEvent);
        return;
      }`;
const patchVhs = {
  name: 'hlsmark-vhs-probe-patch',
  setup(b) {
    b.onLoad({ filter: /[\\/]video\.js[\\/]dist[\\/]video\.es\.js$/ }, async (args) => {
      const src = await readFile(args.path, 'utf8');
      const n = src.split(VHS_PROBE_LINE).length - 1;
      if (n !== 1) {
        throw new Error(`VHS probe patch: expected the probe line once in ${args.path}, found ${n}: check the patch against this video.js version`);
      }
      return { contents: src.replace(VHS_PROBE_LINE, VHS_PROBE_PATCH), loader: 'js' };
    });
  },
};

const result = await build({
  plugins: [patchVhs],
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
