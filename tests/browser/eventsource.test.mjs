// A plain browser EventSource reads a stream across reconnects: no
// duplicates, no gaps (README "Reading with a plain EventSource").
//
//   node tests/browser/eventsource.test.mjs <binary>
//
// Starts the server on a free loopback port with sse_reconnect_interval 1s
// and two sites: one where SSE connections are taken over by the engine's
// fan-out (the default over HTTP/1.1), one with sse_takeover off (a
// goroutine writes every event). Headless Chromium (Debian's `chromium`, or
// $CHROMIUM) opens a page served by the same server (file_server beside the
// site-level durable_streams), whose EventSource reads a stream with
// offset=-1 while this script appends (same-origin for the takeover site,
// cross-origin for the other). The browser reconnects on its own
// after each server close, sending Last-Event-ID; the server must resume
// from it. The test passes when every page has seen at least three
// connections (two reconnects) and its data events concatenate to exactly
// what was appended. Prints "SKIP: ..." and exits 0 only when chromium
// cannot be started.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';
import { metric, request, startServer } from './server.mjs';

const bin = path.resolve(process.argv[2] ?? 'bin/durable-streams-server');
const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
const appends = 24; // one every appendEveryMs: ~5 s, so several reconnects happen mid-stream
const appendEveryMs = 200;
const deadlineMs = 30_000;

let server;
let browser;
let failed = false;
let skipped = false;

function fail(msg) {
  failed = true;
  console.error(`FAIL: ${msg}`);
}

// Opens the page (from pageBase) and starts its EventSource on base's
// stream; returns the page.
async function openReader(pageBase, base, stream) {
  const page = await browser.newPage();
  page.on('pageerror', (e) => fail(`${base}: page error ${e}`));
  await page.goto(`${pageBase}/index.html`);
  await page.evaluate((url) => {
    window.got = '';
    window.opens = 0;
    window.ids = [];
    window.errors = 0;
    const es = new EventSource(url);
    es.addEventListener('open', () => window.opens++);
    es.addEventListener('error', () => window.errors++);
    es.addEventListener('data', (e) => (window.got += e.data));
    es.addEventListener('control', (e) => {
      window.ids.push(e.lastEventId);
      if (JSON.parse(e.data).streamNextOffset !== e.lastEventId) window.badId = e.lastEventId;
    });
    window.es = es;
  }, `${base}/v1/stream/${stream}?offset=-1&live=sse`);
  return page;
}

async function main() {
  server = await startServer(bin, { takeover: '', goroutine: 'sse_takeover off' });
  const bases = server.bases;
  writeFileSync(path.join(server.siteDir, 'index.html'), '<!doctype html><title>durable streams EventSource test</title>\n');
  try {
    browser = await puppeteer.launch({
      executablePath: chromium,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
  } catch (e) {
    console.log(`SKIP: chromium (${chromium}) cannot start: ${String(e.message ?? e).split('\n')[0]}`);
    skipped = true;
    return;
  }
  console.log(`browser: ${await browser.version()}`);

  const readers = [];
  for (const [mode, base] of Object.entries(bases)) {
    const stream = `eventsource-${mode}`;
    await request('PUT', `${base}/v1/stream/${stream}`, 'first\n');
    // The goroutine site's reader runs on the other site's page: a
    // cross-origin EventSource, whose reconnects carry Last-Event-ID
    // through CORS.
    const pageBase = mode === 'goroutine' ? bases.takeover : base;
    readers.push({ mode, base, stream, expected: 'first\n', page: await openReader(pageBase, base, stream) });
  }
  // The takeover site's reader is served by the engine's fan-out (the
  // goroutine site's never is): at least one adopted session while reading.
  let adopted = 0;
  for (let i = 0; i < appends; i++) {
    await new Promise((r) => setTimeout(r, appendEveryMs));
    adopted = Math.max(adopted, await metric(bases.takeover, 'caddy_durable_streams_adopted_sessions'));
    for (const rd of readers) {
      const chunk = `${rd.mode} ${i}\n`;
      await request('POST', `${rd.base}/v1/stream/${rd.stream}`, chunk);
      rd.expected += chunk;
    }
  }
  if (adopted < 1) fail('no SSE session was taken over by the engine: the fan-out path went untested');
  // Wait until each reader has everything and has reconnected at least twice.
  const until = Date.now() + deadlineMs;
  for (const rd of readers) {
    for (;;) {
      const s = await rd.page.evaluate(() => ({ got: window.got, opens: window.opens, ids: window.ids, badId: window.badId, errors: window.errors }));
      rd.state = s;
      if ((s.got.length >= rd.expected.length && s.opens >= 3) || Date.now() > until) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const s = rd.state;
    console.log(`${rd.mode}: ${s.opens} connections, ${s.ids.length} control events, ${s.got.length}/${rd.expected.length} bytes`);
    if (s.opens < 3) fail(`${rd.mode}: ${s.opens} connections; want at least 3 (two reconnects)`);
    if (s.got !== rd.expected) {
      fail(`${rd.mode}: the EventSource received\n${JSON.stringify(s.got)}\nwant exactly\n${JSON.stringify(rd.expected)}`);
    }
    if (s.badId !== undefined) fail(`${rd.mode}: a control event's id ${s.badId} is not its streamNextOffset`);
    if (s.ids.length === 0 || !/^\d{16}_\d{16}$/.test(s.ids.at(-1))) fail(`${rd.mode}: control ids ${JSON.stringify(s.ids.slice(-3))}`);
  }
}

let rc = 0;
try {
  await main();
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  if (browser) await browser.close().catch(() => {});
  if (failed && server) console.error(`---- server log (tail) ----\n${server.logTail()}`);
  if (server) await server.stop();
  rc = failed ? 1 : 0;
}
console.log(failed ? 'eventsource: FAILED' : skipped ? 'eventsource: skipped' : 'eventsource: ok');
process.exit(rc);
