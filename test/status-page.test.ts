import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserServer, type Page } from 'playwright-core';
import { pickFreeLoopbackPort } from '../nginx/status.js';
import { adminPortOf, DEMO_START_TIMEOUT_MS, demoManifestCopy, demoPodItem, isAlive } from './support/demo.js';
import { eventually } from './support/eventually.js';
import { startRouterProcess, type RouterProcess } from './support/router-process.js';

// The status page in a real browser (headless Chromium driven by playwright-core), served
// by `k8s-router demo`: what a person sees, that it follows the manifest by itself, and
// that what pods write in their annotations is shown as text, never run.

const CHROMIUM = process.env.CHROMIUM_BINARY ?? '/usr/bin/chromium';
const SCREENSHOT = fileURLToPath(new URL('../test-output/status-page.png', import.meta.url));
const HOSTILE_HOST = '<script>window.__pwned=1</script>';
const HOSTILE_PATH = '/<img/src=x/onerror=window.__pwned=2>';

let dir: string;

let manifest: string;

let demo: RouterProcess;

let server: BrowserServer;

let browser: Browser;

let page: Page;

async function startRouterAndBrowser(): Promise<void> {
  assert.ok(
    existsSync(CHROMIUM),
    `Chromium is not at ${CHROMIUM}: install it ` +
      '(Debian: apt-get install -y chromium; npm test does it when run as root) or set CHROMIUM_BINARY',
  );
  dir = await mkdtemp(join(tmpdir(), 'k8s-router-status-page-'));
  const hostile = demoPodItem({
    name: 'hostile-0',
    namespace: 'mallory',
    ip: '127.0.106.61',
    port: 3000,
    hosts: `${HOSTILE_HOST} mallory.k8s.local`,
    paths: `3000:/ 3000:${HOSTILE_PATH}`,
  });
  manifest = await demoManifestCopy(dir, 106, (text) => `${text}${hostile}`);
  demo = await startRouterProcess(
    [
      '--manifest',
      manifest,
      '--port',
      String(await pickFreeLoopbackPort()),
      '--admin-port',
      '0',
      '--hold-off-ms',
      '20',
    ],
    {},
    { command: 'demo', startTimeoutMs: DEMO_START_TIMEOUT_MS },
  );
  server = await chromium.launchServer({
    executablePath: CHROMIUM,
    headless: true,
    // A fresh profile in a temporary directory each run (launchServer makes one and removes it).
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  browser = await chromium.connect(server.wsEndpoint());
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`http://127.0.0.1:${adminPortOf(demo)}/`);
}

async function stopRouterAndBrowser(): Promise<void> {
  const pid = server?.process().pid;
  await browser?.close().catch(() => {});
  await server?.close().catch(() => {});
  if (pid !== undefined && isAlive(pid)) await server.kill();
  await demo?.stop();
  await rm(dir, { recursive: true, force: true });
  if (pid !== undefined) assert.equal(isAlive(pid), false, `chromium (pid ${pid}) has ended`);
}

async function showsHostsPathsAndPods(): Promise<void> {
  await page.waitForSelector('section[data-host="shop.k8s.local"]', { timeout: 15_000 });
  const shop = await page.locator('section[data-host="shop.k8s.local"]').innerText();
  for (const pod of ['shop/shop-web-7d9f-a1', 'shop/shop-web-7d9f-b2', 'shop/shop-web-7d9f-c3'])
    assert.ok(shop.includes(pod), `${pod} in ${shop}`);
  assert.ok(shop.includes('127.0.106.11:3000'));
  assert.ok(shop.includes('open'));
  const billing = await page.locator('section[data-host="billing.k8s.local"]').innerText();
  assert.match(
    billing,
    /\/api\s+billing\s+API key required\s+round robin\s+billing\/billing-api-0 127\.0\.106\.21:8080/,
  );
  const chat = await page.locator('section[data-host="chat.k8s.local"]').innerText();
  assert.match(
    chat,
    /\/\s+chat\s+open\s+affinity ip\s+chat\/chat-0 127\.0\.106\.41:3000\s+chat\/chat-1 127\.0\.106\.42:3000/,
  );
  assert.match(await page.locator('#readiness').innerText(), /^ready$/);
  assert.match(
    await page.locator('#last-change').innerText(),
    /^Route table v1, last changed .+: \d+ routes, \d+ rejections\.$/,
  );
}

async function showsAddedRouteWithoutReload(): Promise<void> {
  await page.evaluate(() => ((globalThis as { __sameDocument?: boolean }).__sameDocument = true));
  const added = demoPodItem({
    name: 'added-0',
    namespace: 'newcomer',
    ip: '127.0.106.51',
    port: 3000,
    hosts: 'added.k8s.local',
    paths: '3000:/hello',
  });
  await writeFile(manifest, `${await readFile(manifest, 'utf8')}${added}`);
  await page.waitForSelector('section[data-host="added.k8s.local"]', { timeout: 20_000 });
  assert.match(
    await page.locator('section[data-host="added.k8s.local"]').innerText(),
    /\/hello\s+newcomer\s+open\s+round robin\s+newcomer\/added-0 127\.0\.106\.51:3000/,
  );
  assert.equal(
    await page.evaluate(() => (globalThis as { __sameDocument?: boolean }).__sameDocument),
    true,
    'the same document: no reload',
  );
  await eventually(
    async () => /^Route table v2,/.test(await page.locator('#last-change').innerText()),
    'the new version to be shown',
    10_000,
  );
}

describe('status page in headless Chromium', { concurrency: 1 }, () => {
  before(startRouterAndBrowser);

  after(stopRouterAndBrowser);

  it(
    'shows hosts, paths and pods, and marks routes locked by an API key or sticky by client address',
    showsHostsPathsAndPods,
  );

  it('shows every rejected pod with its code and reason', async () => {
    const rows = await page.locator('tr.rejection').allInnerTexts();
    const notReady = rows.find((row) => row.includes('shop/shop-web-7d9f-d4'));
    assert.ok(notReady, `the not-ready pod is listed: ${rows.join(' | ')}`);
    assert.match(notReady, /NOT_READY\s+pod is not ready \(Ready condition is False\)/);
    const claimed = rows.find((row) => row.includes('intruder/intruder-0') && row.includes('ROUTE_CLAIMED'));
    assert.match(claimed ?? '', /owned by namespace billing/);
  });

  it('shows hostile annotation values as text and runs none of them', async () => {
    const rows = await page.locator('tr.rejection').allInnerTexts();
    assert.ok(
      rows.some((row) => row.includes(HOSTILE_HOST) && row.includes('BAD_HOST')),
      'the <script> host is shown as text',
    );
    assert.ok(
      rows.some((row) => row.includes(HOSTILE_PATH) && row.includes('BAD_PATH')),
      'the <img> path is shown as text',
    );
    assert.equal(
      await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned),
      undefined,
      'nothing from an annotation ran',
    );
    assert.equal(await page.locator('script').count(), 1, 'the page’s own script only');
    assert.equal(await page.locator('img').count(), 0);
  });

  it('shows a route added to the manifest without a reload of the page', showsAddedRouteWithoutReload);

  it('saves a screenshot with the test output', async (t) => {
    await mkdir(join(SCREENSHOT, '..'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    assert.ok((await readFile(SCREENSHOT)).length > 10_000);
    t.diagnostic(`screenshot: ${SCREENSHOT}`);
    process.stdout.write(`# status page screenshot: ${SCREENSHOT}\n`);
  });
});
