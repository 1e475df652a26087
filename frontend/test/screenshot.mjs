// Writes frontend/screenshot.png (the README picture): three generator streams (plus, when the
// binary runs real sources, one whose camera cannot be reached) for ~40 s so the table has live and
// archived markers, then the page on stream `lobby` playing live (latency pill) after a seek to a
// generator marker's frame, that marker's row focused.
//
//   npm run screenshot          (HLSMARK_BIN / HLSMARK_TEST_URL as for the browser suite)
import path from 'node:path';
import { frontendDir, launchBrowser, sleep, startStreams, stopStack, waitUntil } from './harness.mjs';

const SECONDS = Number(process.env.SCREENSHOT_AFTER ?? 40);
let browser;
try {
  const stack = await startStreams({ names: ['dock', 'lobby', 'yard'], broken: [{ name: 'gate', source: 'rtsp://127.0.0.1:1/x' }], liveWindow: 20 });
  browser = await launchBrowser();
  const page = await browser.newPage();
  await page.goto(`${stack.url}/?stream=lobby`);
  await page.waitForFunction(() => window.hlsmark?.state.ready, null, { timeout: 20000 });
  await sleep(SECONDS * 1000);
  const id = await waitUntil('a marker in the live window', () => page.evaluate(() => {
    const h = window.hlsmark;
    const sk = h.player.seekable();
    const ms = [...h.markers.values()].filter((m) => !h.isArchived(m.id) && h.clientOf(m) !== null
      && h.clientOf(m) > sk.start(0) + 1 && h.clientOf(m) < h.player.currentTime() - 1);
    return ms.length ? ms[Math.floor(ms.length / 2)].id : null;
  }), 20000, 250);
  // A marker's frame once (the page is exercised), then live again so the picture shows the
  // latency pill, with that marker's row focused.
  await page.evaluate((mid) => window.hlsmark.seekToMarker(mid), id);
  await page.evaluate(() => window.hlsmark.backToLive());
  await waitUntil('the latency to settle', () => page.evaluate(() => {
    const l = window.hlsmark.latency();
    return l !== null && l < 1.2 && !document.getElementById('latency').hidden;
  }), 20000, 250);
  await page.focus(`#markers tr[data-id="${id}"]`);
  // Focusing the row scrolls it into view; the picture starts at the top of the page.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.mouse.move(400, 300);
  await sleep(300);
  const file = path.join(frontendDir, 'screenshot.png');
  await page.screenshot({ path: file });
  console.log(JSON.stringify(await page.evaluate(() => ({ view: window.hlsmark.timeline.view(), stats: window.hlsmark.timeline.stats }))));
  console.log(`wrote ${file}`);
} finally {
  await browser?.close();
  stopStack();
}
