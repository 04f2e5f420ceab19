// Starts the Node.js reference server (@durable-streams/server, pinned in
// package-lock.json) on loopback for tests/bench/run.sh.
//
//   node node-server.mjs --port 4437 [--data-dir DIR] [--long-poll-timeout-ms 30000]
//
// Without --data-dir the store is in memory; with it, the package's
// file-backed store (segment files + LMDB metadata, fdatasync per append).
import { DurableStreamTestServer } from "@durable-streams/server"

const opts = { host: "127.0.0.1", port: 0, longPollTimeout: 30000 }
const argv = process.argv.slice(2)
for (let i = 0; i < argv.length; i++) {
  const value = argv[i + 1]
  switch (argv[i]) {
    case "--port":
      opts.port = Number(value)
      i++
      break
    case "--data-dir":
      opts.dataDir = value
      i++
      break
    case "--long-poll-timeout-ms":
      opts.longPollTimeout = Number(value)
      i++
      break
    default:
      console.error(`node-server.mjs: unknown argument ${argv[i]}`)
      process.exit(2)
  }
}

const server = new DurableStreamTestServer(opts)
const url = await server.start()
console.log(
  `ready ${url ?? `http://${opts.host}:${opts.port}`} (${opts.dataDir ? `dataDir ${opts.dataDir}` : "in memory"})`
)

let stopping = false
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    if (stopping) process.exit(1)
    stopping = true
    const timer = setTimeout(() => process.exit(0), 3000)
    timer.unref()
    try {
      await server.stop()
    } finally {
      process.exit(0)
    }
  })
}
