// Starts bin/durable-streams-server for the tests in this directory: one
// Caddyfile with a site per entry of `sites` on free loopback ports, each
// with durable_streams at site level (sse_reconnect_interval 1s plus the
// entry's extra options), /health, /metrics and a file_server for `siteDir`.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// sites: { name: extraOptions }. Returns { bases: { name: url }, siteDir,
// logTail(), stop() }.
export async function startServer(bin, sites) {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'ds-browser-'));
  const siteDir = path.join(tmp, 'site');
  mkdirSync(siteDir, { recursive: true });
  const bases = {};
  let caddyfile = '{\n\tadmin off\n\tauto_https off\n\tgrace_period 1s\n}\n';
  for (const [name, extra] of Object.entries(sites)) {
    const port = await freePort();
    bases[name] = `http://127.0.0.1:${port}`;
    caddyfile += `
http://127.0.0.1:${port} {
	durable_streams {
		sse_reconnect_interval 1s
		${extra}
	}
	respond /health "OK" 200
	metrics /metrics
	root * ${JSON.stringify(siteDir)}
	file_server
}
`;
  }
  writeFileSync(path.join(tmp, 'Caddyfile'), caddyfile);
  let log = '';
  const proc = spawn(bin, ['run', '--config', path.join(tmp, 'Caddyfile'), '--adapter', 'caddyfile'], {
    env: { ...process.env, XDG_CONFIG_HOME: path.join(tmp, 'xdg-config'), XDG_DATA_HOME: path.join(tmp, 'xdg-data') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const logTail = () => log.split('\n').slice(-30).join('\n');
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(() => { proc.kill('SIGKILL'); r(); }, 10_000);
        proc.on('exit', () => { clearTimeout(t); r(); });
      });
    }
    rmSync(tmp, { recursive: true, force: true });
  };
  const until = Date.now() + 30_000;
  try {
    for (const base of Object.values(bases)) {
      for (;;) {
        if (proc.exitCode !== null) throw new Error(`server exited during startup:\n${logTail()}`);
        try {
          const r = await fetch(`${base}/health`);
          if (r.status === 200) break;
        } catch {}
        if (Date.now() > until) throw new Error(`server did not answer /health within 30s:\n${logTail()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return { bases, siteDir, logTail, stop };
}

// The value of an unlabelled-or-labelled gauge summed over its samples.
export async function metric(base, name) {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}

// Sends one request; throws unless it succeeded.
export async function request(method, url, body) {
  const r = await fetch(url, { method, body, headers: body === undefined ? {} : { 'Content-Type': 'text/plain' } });
  await r.arrayBuffer();
  if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status}`);
  return r;
}
