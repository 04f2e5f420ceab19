// A webhook receiver that verifies Durable Streams webhook signatures
// (PROTOCOL.md §7.1, §12.10) with nothing but the server's jwks.json and
// Node's own crypto. README's "Webhook security" shows it; the Go tests in
// caddymodule/webhook run it against our signer.
//
//   JWKS_URL=http://127.0.0.1:4437/v1/stream/__ds/jwks.json PORT=8080 node receiver.mjs
//
// It prints "listening <port>", then one JSON line per request:
// {"ok":true,"kid":...,"subscription_id":...} or {"ok":false,"reason":...}.
// Verified wakes are answered {"done":true} (acks the wake's snapshot).
import { createServer } from "node:http";
import { createPublicKey, verify } from "node:crypto";

const JWKS_URL = process.env.JWKS_URL;
const REPLAY_WINDOW_S = 300; // reject timestamps more than 5 minutes off

let keys = new Map(); // kid -> KeyObject
async function refreshKeys() {
  const res = await fetch(JWKS_URL);
  if (!res.ok) throw new Error(`jwks.json: HTTP ${res.status}`);
  const set = await res.json();
  keys = new Map(
    set.keys
      .filter((k) => k.kty === "OKP" && k.crv === "Ed25519")
      .map((k) => [k.kid, createPublicKey({ key: k, format: "jwk" })]),
  );
}

async function check(header, rawBody) {
  // Webhook-Signature: t=<unix seconds>,kid=<kid>,ed25519=<base64url>
  const params = Object.fromEntries(
    (header ?? "").split(",").map((p) => {
      const i = p.indexOf("=");
      return [p.slice(0, i).trim(), p.slice(i + 1).trim()];
    }),
  );
  const { t, kid, ed25519: sig } = params;
  if (!/^\d+$/.test(t ?? "") || !kid || !sig) return "malformed Webhook-Signature";
  if (Math.abs(Date.now() / 1000 - Number(t)) > REPLAY_WINDOW_S) return "timestamp outside the replay window";
  if (!keys.has(kid)) await refreshKeys(); // a rotation: fetch the set again, once
  const key = keys.get(kid);
  if (!key) return `unknown kid ${kid}`;
  const signed = Buffer.concat([Buffer.from(`${t}.`), rawBody]); // the exact bytes received
  if (!verify(null, signed, key, Buffer.from(sig, "base64url"))) return "bad signature";
  return null;
}

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    const raw = Buffer.concat(chunks);
    let reason;
    try {
      reason = await check(req.headers["webhook-signature"], raw);
    } catch (e) {
      reason = `error: ${e.message}`;
    }
    if (reason) {
      console.log(JSON.stringify({ ok: false, reason }));
      res.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: reason }));
      return;
    }
    const wake = JSON.parse(raw.toString("utf8"));
    const kid = /kid=([^,]+)/.exec(req.headers["webhook-signature"])[1];
    console.log(JSON.stringify({ ok: true, kid, subscription_id: wake.subscription_id, wake_id: wake.wake_id }));
    // Do the work here (read each stream from its acked_offset), then either
    // answer done (acks the snapshot) or call back later with callback_token.
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ done: true }));
  });
});

await refreshKeys();
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
