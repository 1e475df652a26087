// Runs the browser suite one test file at a time (each starts its own servers and Chromium), and a
// file that fails once more, as nextest retries a Rust test (.config/nextest.toml): the files drive
// real players on 2 shared cores. A file that passes on its second run is reported as FLAKY (its
// first failure is printed above); a file that fails twice fails the suite. Retrying a file rather
// than the whole suite keeps one flake in one file from needing seven other files to pass again.
//
//   node test/run-browser.mjs [file ...]     (default: the suite below)
//   extra environment for a file: "ENV=value,ENV2=value:file" (the LL player on `hlsmark run`)
import { spawnSync } from 'node:child_process';

const SUITE = [
  'test/clock.test.mjs',
  'test/picker.test.mjs',
  'test/player.test.mjs',
  'test/streams.test.mjs',
  'test/thumbs.test.mjs',
  'test/filters.test.mjs',
  'test/timeline.test.mjs',
  'test/history.test.mjs',
  'HLSMARK_TEST_STACK=run,HLSMARK_TEST_LL_SECONDS=10:test/player.test.mjs',
];

function parse(spec) {
  const colon = spec.lastIndexOf(':');
  if (colon < 0 || !spec.slice(0, colon).includes('=')) return { file: spec, env: {} };
  const env = Object.fromEntries(spec.slice(0, colon).split(',').map((kv) => {
    const eq = kv.indexOf('=');
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }));
  return { file: spec.slice(colon + 1), env };
}

function run({ file, env }) {
  const r = spawnSync(process.execPath, ['--test', '--test-reporter=spec', file], {
    stdio: 'inherit',
    env: { ...process.env, ...env },
  });
  return r.status === 0;
}

const specs = process.argv.length > 2 ? process.argv.slice(2) : SUITE;
const started = Date.now();
const flaky = [];
const failed = [];
for (const spec of specs) {
  const job = parse(spec);
  const name = `${Object.entries(job.env).map(([k, v]) => `${k}=${v} `).join('')}${job.file}`;
  console.log(`\n=== ${name}`);
  if (run(job)) continue;
  console.log(`==> ${name} failed; running it once more`);
  if (run(job)) flaky.push(name);
  else failed.push(name);
}
const secs = ((Date.now() - started) / 1000).toFixed(0);
for (const f of flaky) console.log(`FLAKY: ${f} passed on its second run; its first failure is above`);
if (failed.length) {
  console.log(`browser suite FAILED in ${secs} s: ${failed.join(', ')} failed twice`);
  process.exit(1);
}
console.log(`browser suite passed in ${secs} s (${specs.length} files${flaky.length ? `, ${flaky.length} flaky` : ''})`);
