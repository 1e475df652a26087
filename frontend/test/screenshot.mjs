// Writes frontend/screenshot.png (the README picture): the real stack for ~40 s so the table has
// live and archived markers, then the page paused on a generator marker's frame.
//
//   npm run screenshot          (HLSMARK_BIN / HLSMARK_TEST_URL as for the browser suite)
import path from 'node:path';
import { frontendDir, launchBrowser, sleep, startStack, stopStack, waitUntil } from './harness.mjs';

const SECONDS = Number(process.env.SCREENSHOT_AFTER ?? 40);
let browser;
try {
  const stack = await startStack({ liveWindow: 20 });
  browser = await launchBrowser();
  const page = await browser.newPage();
  await page.goto(`${stack.url}/?stream=live`);
  await page.waitForFunction(() => window.hlsmark?.state.ready, null, { timeout: 20000 });
  await sleep(SECONDS * 1000);
  const id = await waitUntil('a marker in the live window', () => page.evaluate(() => {
    const h = window.hlsmark;
    const sk = h.player.seekable();
    const ms = [...h.markers.values()].filter((m) => !h.isArchived(m.id) && h.clientOf(m) !== null
      && h.clientOf(m) > sk.start(0) + 1 && h.clientOf(m) < h.player.currentTime() - 1);
    return ms.length ? ms[Math.floor(ms.length / 2)].id : null;
  }), 20000, 250);
  await page.evaluate((mid) => window.hlsmark.seekToMarker(mid), id);
  await page.focus(`#markers tr[data-id="${id}"]`);
  await page.mouse.move(400, 300);
  await sleep(300);
  const file = path.join(frontendDir, 'screenshot.png');
  await page.screenshot({ path: file });
  console.log(JSON.stringify(await page.evaluate(() => [...document.querySelectorAll('.hm-bar-marker')].map((el) => [
    window.hlsmark.markers.get(el.dataset.id).label, el.hidden ? 'hidden' : el.style.left, el.className]))));
  console.log(`wrote ${file}`);
} finally {
  await browser?.close();
  stopStack();
}
