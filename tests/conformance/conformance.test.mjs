// Runs @durable-streams/server-conformance-tests against DS_CONFORMANCE_URL (see run.sh).
import { beforeEach } from "vitest"
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const env = process.env
if (!env.DS_CONFORMANCE_URL) throw new Error("DS_CONFORMANCE_URL is required (use run.sh)")

// The suite's client retries network errors and 5xx forever, so a dead server
// would make every test hang until its timeout. If run.sh gives us a health
// URL, check it before each test and fail fast once the server is gone.
let serverGone = null
if (env.DS_CONFORMANCE_HEALTH_URL) {
  beforeEach(async () => {
    if (!serverGone) {
      try {
        const res = await fetch(env.DS_CONFORMANCE_HEALTH_URL, { signal: AbortSignal.timeout(5000) })
        await res.arrayBuffer()
      } catch (e) {
        serverGone = `server not reachable at ${env.DS_CONFORMANCE_HEALTH_URL}: ${e?.cause?.code ?? e}`
      }
    }
    if (serverGone) throw new Error(serverGone)
  })
}

runConformanceTests({
  baseUrl: env.DS_CONFORMANCE_URL,
  longPollTimeoutMs: Number(env.DS_CONFORMANCE_LONG_POLL_MS ?? 20000),
  subscriptions: /^(1|true|yes)$/i.test(env.DS_CONFORMANCE_SUBSCRIPTIONS ?? ""),
})
