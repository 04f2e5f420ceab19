// The official client (@durable-streams/client) reads a stream over SSE
// across the server's reconnects: the `id:` lines of control events must
// not disturb it, and it must get exactly what was appended.
//
//   node tests/browser/client.test.mjs <binary>
//
// Same server as eventsource.test.mjs (sse_reconnect_interval 1s, engine
// fan-out and goroutine sites). Passes when each reader made at least three
// SSE requests (two reconnects) and received exactly the appended text.
import path from 'node:path';
import { stream } from '@durable-streams/client';
import { request, startServer } from './server.mjs';

const bin = path.resolve(process.argv[2] ?? 'bin/durable-streams-server');
const appends = 24;
const appendEveryMs = 150;
const deadlineMs = 30_000;

let failed = false;
function fail(msg) {
  failed = true;
  console.error(`FAIL: ${msg}`);
}

async function main(server) {
  const readers = [];
  for (const [mode, base] of Object.entries(server.bases)) {
    const url = `${base}/v1/stream/client-${mode}`;
    await request('PUT', url, 'first\n');
    const rd = { mode, url, expected: 'first\n', got: '', sseRequests: 0, abort: new AbortController() };
    const countingFetch = (input, init) => {
      if (String(input instanceof Request ? input.url : input).includes('live=sse')) rd.sseRequests++;
      return fetch(input, init);
    };
    const res = await stream({ url, offset: '-1', live: 'sse', fetch: countingFetch, signal: rd.abort.signal, warnOnHttp: false });
    res.subscribeText((chunk) => {
      rd.got += chunk.text;
    });
    readers.push(rd);
  }
  for (let i = 0; i < appends; i++) {
    await new Promise((r) => setTimeout(r, appendEveryMs));
    for (const rd of readers) {
      const chunk = `${rd.mode} ${i}\n`;
      await request('POST', rd.url, chunk);
      rd.expected += chunk;
    }
  }
  const until = Date.now() + deadlineMs;
  for (const rd of readers) {
    while ((rd.got.length < rd.expected.length || rd.sseRequests < 3) && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 100));
    }
    rd.abort.abort();
    console.log(`${rd.mode}: ${rd.sseRequests} SSE requests, ${rd.got.length}/${rd.expected.length} bytes`);
    if (rd.sseRequests < 3) fail(`${rd.mode}: ${rd.sseRequests} SSE requests; want at least 3 (two reconnects)`);
    if (rd.got !== rd.expected) {
      fail(`${rd.mode}: the client received\n${JSON.stringify(rd.got)}\nwant exactly\n${JSON.stringify(rd.expected)}`);
    }
  }
}

let server;
try {
  server = await startServer(bin, { takeover: '', goroutine: 'sse_takeover off' });
  await main(server);
} catch (e) {
  fail(e.stack ?? String(e));
} finally {
  if (failed && server) console.error(`---- server log (tail) ----\n${server.logTail()}`);
  if (server) await server.stop();
}
console.log(failed ? 'official client: FAILED' : 'official client: ok');
process.exit(failed ? 1 : 0);
