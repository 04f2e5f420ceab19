// The official client (@durable-streams/client) against a tight per-client
// rate limit: its appends get 429 with Retry-After, and it must retry them
// so that every append lands exactly once and in order.
//
//   node tests/browser/ratelimit.test.mjs <binary>
//
// Two writers share one client address (the limit is 5/s, burst 5): a
// DurableStream with batching off (one POST per append, awaited) and an
// IdempotentProducer (batched, Producer-Id/Epoch/Seq). The fetch they use
// counts the 429s the server answered. Passes when at least one 429 was
// retried and each stream holds exactly what was appended.
import path from 'node:path';
import { DurableStream, IdempotentProducer } from '@durable-streams/client';
import { startServer } from './server.mjs';

const bin = path.resolve(process.argv[2] ?? 'bin/durable-streams-server');
const appends = 20;

let failed = false;
function fail(msg) {
  failed = true;
  console.error(`FAIL: ${msg}`);
}

async function main(server) {
  const base = server.bases.limited;
  const stats = { requests: 0, refused: 0, retryAfter: new Set() };
  const countingFetch = async (input, init) => {
    stats.requests++;
    const res = await fetch(input, init);
    if (res.status === 429) {
      stats.refused++;
      stats.retryAfter.add(res.headers.get('retry-after'));
    }
    return res;
  };
  const started = Date.now();

  // One append per request.
  const direct = `${base}/v1/stream/limits/direct`;
  const ds = await DurableStream.create({ url: direct, contentType: 'text/plain', fetch: countingFetch, batching: false });
  let expected = '';
  for (let i = 0; i < appends; i++) {
    const line = `direct ${i}\n`;
    await ds.append(line);
    expected += line;
  }
  const direct429 = stats.refused;

  // An idempotent producer. In client 0.2.6 it sends with the plain fetch
  // (no backoff): a batch answered 429 goes to onError and is dropped, and
  // the next batch then meets a sequence gap (409). Its onError is counted;
  // what landed must still be in order and without duplicates.
  const lost = `${base}/v1/stream/limits/producer-plain`;
  const errors = [];
  const expectedLost = await produce(lost, 'plain', countingFetch, errors);

  // The workaround: give the producer a fetch that waits out 429s
  // (Retry-After) and sends the same request again, same Producer-Seq, so
  // the batch lands exactly once.
  const retry429 = async (input, init) => {
    for (;;) {
      const res = await countingFetch(input, init);
      if (res.status !== 429) return res;
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get('retry-after') ?? 1)));
    }
  };
  const batched = `${base}/v1/stream/limits/producer-retry`;
  const retryErrors = [];
  const expectedP = await produce(batched, 'retry', retry429, retryErrors);
  if (retryErrors.length) fail(`producer with the 429-retrying fetch: ${retryErrors.length} errors: ${retryErrors[0]}`);
  const elapsed = (Date.now() - started) / 1000;

  console.log(`${stats.requests} requests in ${elapsed.toFixed(1)}s, ${stats.refused} answered 429 ` +
    `(direct appends: ${direct429}), Retry-After values: ${[...stats.retryAfter].join(',')}`);
  if (stats.refused === 0) fail('the server never answered 429; the limit is not tight enough to test retries');
  if (direct429 === 0) fail('the one-append-per-request writer never met a 429');
  for (const v of stats.retryAfter) if (!/^[1-9][0-9]*$/.test(v ?? '')) fail(`Retry-After ${v}`);

  // Read back without the client (and after the bucket refilled).
  await new Promise((r) => setTimeout(r, 1500));
  const plain = await (await fetch(`${lost}?offset=-1`)).text();
  const landed = plain.split('\n').filter(Boolean);
  const want = expectedLost.split('\n').filter(Boolean);
  let j = 0;
  for (const line of landed) {
    while (j < want.length && want[j] !== line) j++;
    if (j === want.length) fail(`plain producer: ${JSON.stringify(line)} out of order or duplicated`);
    j++;
  }
  const refused429 = errors.filter((e) => e.status === 429).length;
  console.log(`plain IdempotentProducer: ${landed.length}/${want.length} appends landed; onError saw ` +
    `${errors.length} errors (${refused429} of them 429): ${[...new Set(errors.map((e) => e.message.split('\n')[0]))].join(' | ')}`);
  if (landed.length < want.length && errors.length === 0) fail('plain producer lost appends without reporting an error');
  await new Promise((r) => setTimeout(r, 1500));
  for (const [url, want] of [[direct, expected], [batched, expectedP]]) {
    const res = await fetch(`${url}?offset=-1`);
    const body = await res.text();
    if (res.status !== 200 || body !== want) {
      fail(`${url}: ${res.status}\n${JSON.stringify(body)}\nwant exactly\n${JSON.stringify(want)}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
}

// produce appends through an IdempotentProducer using fetchFn, collecting
// onError's errors, and returns what it appended.
async function produce(url, name, fetchFn, errors) {
  const ps = await DurableStream.create({ url, contentType: 'text/plain' });
  const producer = new IdempotentProducer(ps, `rate-${name}`, {
    lingerMs: 1, maxInFlight: 1, fetch: fetchFn, onError: (e) => errors.push(e),
  });
  let expected = '';
  for (let i = 0; i < appends; i++) {
    const line = `${name} ${i}\n`;
    producer.append(line);
    expected += line;
    await new Promise((r) => setTimeout(r, 20));
  }
  try {
    await producer.flush();
    await producer.close();
  } catch (e) {
    errors.push(e);
  }
  return expected;
}

const server = await startServer(bin, {
  limited: 'rate_limit {\n\t\t\tper_client 5/s burst 5\n\t\t}',
});
try {
  await main(server);
} catch (e) {
  fail(`${e.stack ?? e}`);
} finally {
  if (failed) console.error(server.logTail());
  await server.stop();
}
if (failed) process.exit(1);
console.log('PASS');
