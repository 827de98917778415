/**
 * The playground in a real browser: Debian's Chromium driven by playwright-core (never a browser
 * download) loads the BUILT page (`vite build`, as `npm run build:web` does, served as static files),
 * steps the demo to its cold nested miss and checks the grid's 24 reads, shows a fault's event
 * record, follows links, edits YAML, and fails on any console error. Screenshots go to test-results/.
 *
 * Without Chromium the test is skipped with a warning on a developer's machine; with CI=true it fails
 * (`.ci/run` installs Debian's chromium when it is missing).
 */

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadScenario } from '../../src/scenario/index.ts';
import { type StaticServer, serveStatic } from './static-server.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const IN_CI = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const OUT = 'test-results';
const DEMO_TEXT = readFileSync('examples/demo.yaml', 'utf8');

if (!HAVE_CHROMIUM && !IN_CI)
  console.warn(
    `test/web/playground.browser.test.ts: SKIPPED, no Chromium at ${CHROMIUM} (apt-get install -y chromium, or CHROMIUM_PATH=...)`,
  );

let server: StaticServer;
let browser: Browser;
let context: BrowserContext | null = null;
/** Everything the page said that it should not have: console errors and warnings, uncaught errors, failed loads. */
let problems: string[] = [];

async function open(hash = '', viewport = { width: 1280, height: 720 }): Promise<Page> {
  context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`failed to load ${r.url()}: ${r.failure()?.errorText}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`);
  });
  await page.goto(`${server.url}${hash}`);
  await page.locator('#card h2').waitFor();
  return page;
}

const hashOf = (page: Page): string => new URL(page.url()).hash;

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)('the playground in Chromium (the built page)', () => {
  beforeAll(async () => {
    if (!HAVE_CHROMIUM)
      throw new Error(
        `CI: no Chromium at ${CHROMIUM}; the browser test cannot run (.ci/run installs it: apt-get install -y chromium)`,
      );
    mkdirSync(OUT, { recursive: true });
    // The same build as `npm run build:web`: the test checks what would be published.
    execFileSync(
      process.execPath,
      ['node_modules/vite/bin/vite.js', 'build', '--config', 'web/vite.config.ts', '--logLevel', 'error'],
      { stdio: 'pipe' },
    );
    server = await serveStatic('dist/web');
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await server?.close();
  });

  afterEach(async () => {
    await context?.close();
    context = null;
    const seen = problems;
    problems = [];
    expect(seen).toEqual([]);
  });

  it('opens with the demo; the keyboard steps it to the cold nested miss: 24 reads in a 5 x 5 grid', async () => {
    const page = await open();
    expect(await page.title()).toBe('vfio-nest playground');
    expect(await page.locator('#scenario').inputValue()).toBe('demo.yaml');
    await expect.poll(() => page.locator('#card h2').textContent()).toBe('demo');
    for (let i = 0; i < 7; i++) await page.keyboard.press('ArrowRight');
    expect(await page.locator('#card h2').textContent()).toContain('Step 6');
    const grid = page.locator('#step-walk [data-testid=walk-grid]');
    expect(await grid.locator('.cell[data-state=read]').count()).toBe(24);
    expect(await grid.locator('.cell[data-state=skipped]').count()).toBe(0);
    expect(await grid.locator('tbody tr').count()).toBe(5);
    expect(await grid.locator('.cell[data-n="1"] .lbl').textContent()).toBe('S2 TT L0');
    expect(await grid.locator('.cell[data-n="5"] .lbl').textContent()).toBe('S1 L0');
    expect(await grid.locator('.cell[data-n="24"] .lbl').textContent()).toBe('S2 IN L3');
    const summary = await page.locator('#step-walk [data-testid=walk-summary]').textContent();
    expect(summary).toContain('24 reads (4 stage 1, 20 stage 2 = (4 + 1) x (4 + 1) - 1)');
    expect(await page.locator('#step-walk [data-testid=walk-outcome]').textContent()).toContain(
      'Result: PA 0x',
    );
    expect(hashOf(page)).toBe('#file=demo.yaml&step=6');
    await page.locator('#step-walk').scrollIntoViewIfNeeded();
    await page.screenshot({ path: `${OUT}/playground-walk-1280x720.png` });
    await page.screenshot({ path: `${OUT}/playground-walk-full.png`, fullPage: true });
    // Readable at 1280 x 720: nothing makes the page itself scroll sideways.
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
  });

  it('a stage-1 fault: the faulting cell is marked and the event record is shown', async () => {
    const page = await open('#file=demo.yaml&step=8');
    await page.locator('#next').click();
    expect(await page.locator('#card h2').textContent()).toContain('Step 9');
    const walk = page.locator('#step-walk');
    const fault = walk.locator('.cell[data-state=fault]');
    expect(await fault.count()).toBe(1);
    expect(await fault.textContent()).toContain('S1 L2');
    expect(await fault.textContent()).toContain('invalid');
    const record = walk.locator('[data-testid=event-record]');
    expect(await record.isVisible()).toBe(true);
    const text = (await record.textContent()) ?? '';
    expect(text).toContain('Event record: F_TRANSLATION');
    expect(text).toContain('the host hands this record to it');
    expect(text).toMatch(/S2\s*0/);
    expect(text).toMatch(/InputAddr\s*0x5000000/);
    expect(text).toContain('0x0000000800000010');
    await record.scrollIntoViewIfNeeded();
    await page.screenshot({ path: `${OUT}/playground-fault-stage1.png` });
    await page.screenshot({ path: `${OUT}/playground-fault-stage1-full.png`, fullPage: true });
  });

  it('a link reopens a stage-2 fault: S2 = 1 with the IPA, kept by the host', async () => {
    const page = await open('#file=demo.yaml&step=12');
    expect(await page.locator('#card h2').textContent()).toContain('Step 12');
    const record = page.locator('#step-walk [data-testid=event-record]');
    const text = (await record.textContent()) ?? '';
    expect(text).toMatch(/S2\s*1/);
    expect(text).toMatch(/IPA\s*0x8000000000/);
    expect(text).toContain('the host keeps this record');
    const out = page.locator('#step-walk [data-testid=walk-grid] tbody tr').last();
    expect(await out.locator('th').textContent()).toContain('output');
    expect(await out.locator('.cell[data-state=fault] .lbl').textContent()).toContain('S2 IN');
    await record.scrollIntoViewIfNeeded();
    await page.screenshot({ path: `${OUT}/playground-fault-stage2.png` });
  });

  it('cache hits are skipped cells: after the copy, the same address is a TLB hit with nothing read', async () => {
    const page = await open('#file=demo.yaml&step=8');
    const walk = page.locator('#explore-walk');
    expect(await walk.locator('h3').textContent()).toMatch(/^Read of 0x1000000 now — /);
    expect(await walk.locator('[data-testid=walk-grid] .cell[data-state=skipped]').count()).toBe(24);
    expect(await walk.locator('[data-testid=walk-grid] .cell[data-state=read]').count()).toBe(0);
    expect(await walk.locator('.config-strip .cell[data-state=skipped]').count()).toBe(7);
    expect(await walk.locator('[data-testid=walk-summary]').textContent()).toContain('0 reads');
    expect(await walk.locator('[data-testid=walk-outcome]').textContent()).toContain('from the TLB');
    await walk.scrollIntoViewIfNeeded();
    await page.screenshot({ path: `${OUT}/playground-tlb-hit.png` });
    // Ignoring the caches, the same address is the full cold walk again.
    await page.locator('#cold').check();
    await page.locator('#explore-form button[type=submit]').click();
    expect(await walk.locator('[data-testid=walk-grid] .cell[data-state=read]').count()).toBe(24);
    expect(hashOf(page)).toContain('cold=1');
  });

  it('back replays, Home resets, End runs to the end; a saved link reopens the same step', async () => {
    const page = await open('#file=demo.yaml&step=9');
    await page.locator('#back').click();
    expect(await page.locator('#card h2').textContent()).toContain('Step 8');
    expect(hashOf(page)).toBe('#file=demo.yaml&step=8');
    const card = await page.locator('#card').textContent();
    const link = page.url();
    await page.keyboard.press('Home');
    expect(await page.locator('#position').textContent()).toContain('no step run yet');
    expect(hashOf(page)).toBe('#file=demo.yaml');
    expect(await page.locator('#back').isDisabled()).toBe(true);
    await page.keyboard.press('End');
    expect(await page.locator('#next').isDisabled()).toBe(true);
    expect(await page.locator('.step.failed').count()).toBe(0);
    expect(await page.locator('.step.ok').count()).toBe(DEMO_TEXT.match(/^ {2}- /gm)!.length);
    await page.goto(link);
    await page.reload();
    expect(await page.locator('#card').textContent()).toBe(card);
  });

  it('a typed address: the keyboard opens the explorer, bad input is a message, a write to 0x3000000 faults at stage 2', async () => {
    const page = await open('#file=demo.yaml&step=11');
    await page.keyboard.press('/');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('iova');
    // It holds the last address a step used (the DMA of step 9).
    expect(await page.locator('#iova').inputValue()).toBe('0x5000000');
    await page.keyboard.press('Control+A');
    await page.keyboard.type('0xzz');
    await page.keyboard.press('Enter');
    expect(await page.locator('.form-error').textContent()).toBe(
      "Address: '0xzz' is not a number (like 0x1000 or 4096)",
    );
    await page.locator('#iova').fill('0x3000000');
    await page.locator('#access').selectOption('write');
    await page.locator('#iova').press('Enter');
    const walk = page.locator('#explore-walk');
    expect(await walk.locator('h3').textContent()).toMatch(/^Write of 0x3000000 now — /);
    expect(await walk.locator('[data-testid=event-record]').textContent()).toMatch(/S2\s*1/);
    expect(hashOf(page)).toContain('iova=0x3000000&write=1');
  });

  it('the state tabs by keyboard: VFIO, host SMMU (an address there opens its walk), guest vSMMU', async () => {
    const page = await open('#file=demo.yaml&step=7');
    await page.keyboard.press('2');
    expect(await page.locator('#tab-vfio').getAttribute('aria-selected')).toBe('true');
    expect(await page.locator('[data-testid=container-type]').textContent()).toBe(
      '6 (VFIO_TYPE1_NESTING_IOMMU)',
    );
    expect(await page.locator('#panel').textContent()).toContain('0x40ffffff');
    expect(await page.locator('#panel table.procs').textContent()).toContain('16384 kB');
    await page.keyboard.press('3');
    const panel = page.locator('#panel');
    expect(await panel.textContent()).toContain('nested');
    expect(await panel.locator('table.tlb tbody tr').count()).toBeGreaterThanOrEqual(16);
    await panel.locator('table.tlb button.addr', { hasText: '0x1001000' }).first().click();
    expect(await page.locator('#tab-walk').getAttribute('aria-selected')).toBe('true');
    expect(await page.locator('#explore-walk h3').textContent()).toMatch(/^Read of 0x1001000 now — /);
    await page.keyboard.press('4');
    expect(await page.locator('#panel h3').first().textContent()).toBe('vSID 0x10');
    await page.screenshot({ path: `${OUT}/playground-guest.png`, fullPage: true });
    // The tab list's own arrows move between tabs.
    await page.locator('#tab-guest').focus();
    await page.keyboard.press('ArrowLeft');
    expect(await page.locator('#tab-smmu').getAttribute('aria-selected')).toBe('true');
  });

  it('a typo in edited YAML is reported at its line with the message the CLI prints; the link keeps the text', async () => {
    const page = await open();
    await page.keyboard.press('e');
    expect(await page.locator('#editor').isVisible()).toBe(true);
    const bad = DEMO_TEXT.replace(
      'guest_map: { va: 0x1000000, ipa: 0x40100000, size: 64KiB }',
      'guest_map: { va: 0x1000000, ipa: 0x40100000, sise: 64KiB }',
    );
    let cli = '';
    try {
      loadScenario(bad, 'examples/demo.yaml');
    } catch (e) {
      cli = (e as Error).message;
    }
    expect(cli).toMatch(/^examples\/demo\.yaml:\d+:\d+: steps\[3\]\.guest_map\.sise: /);
    await page.locator('#yaml').fill(bad);
    await page.locator('#yaml').press('Control+Enter');
    expect(await page.locator('[data-testid=yaml-error]').textContent()).toBe(cli);
    expect(await page.locator('#main').isHidden()).toBe(true);
    expect(await page.locator('#scenario').inputValue()).toBe('');
    await page.screenshot({ path: `${OUT}/playground-yaml-error.png` });
    expect(hashOf(page)).toMatch(/^#yaml=/);
    await page.reload();
    await page.locator('[data-testid=yaml-error]').waitFor();
    expect(await page.locator('[data-testid=yaml-error]').textContent()).toBe(cli);
    // Fixed, it runs; the unchanged demo text is the demo again.
    await page.locator('#yaml').fill(DEMO_TEXT);
    await page.locator('#run-yaml').click();
    expect(await page.locator('#main').isVisible()).toBe(true);
    expect(await page.locator('#scenario').inputValue()).toBe('demo.yaml');
  });

  it('every example runs to the end in the page with its expectations holding', async () => {
    const page = await open();
    const names = await page
      .locator('#scenario option')
      .evaluateAll((o) => o.map((x) => (x as HTMLOptionElement).value));
    expect(names.length).toBeGreaterThanOrEqual(18);
    for (const name of names) {
      await page.locator('#scenario').selectOption(name);
      await page.locator('#end').click();
      expect(await page.locator('.step.todo').count(), name).toBe(0);
      expect(await page.locator('.step.failed').count(), name).toBe(0);
      for (const tab of ['1', '2', '3', '4']) await page.keyboard.press(tab);
    }
  });

  it('on a phone (390 x 844): one column, the grid scrolls inside its box, not the page', async () => {
    const page = await open('#file=demo.yaml&step=6', { width: 390, height: 844 });
    expect(await page.locator('#step-walk [data-testid=walk-grid] .cell[data-state=read]').count()).toBe(24);
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await page.screenshot({ path: `${OUT}/playground-phone.png`, fullPage: true });
  });
});
