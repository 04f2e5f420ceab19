import { defineConfig } from "vitest/config"

// DS_CONFORMANCE_EXCLUDE: a JavaScript regex matched against each test's full
// name ("<describe> <nested describe> <test>", joined by single spaces), e.g.
// '^Fork - ' or '^(Fork - |Reserved subscription APIs )'. Matching tests are
// not run and are reported as skipped (vitest's testNamePattern with a
// negative lookahead).
const exclude = process.env.DS_CONFORMANCE_EXCLUDE
let testNamePattern
if (exclude) {
  new RegExp(exclude) // fail fast on an invalid pattern
  testNamePattern = new RegExp(`^(?!(?:${exclude}))`)
}

export default defineConfig({
  test: {
    include: ["conformance.test.mjs"],
    // Tests in one file run in order; the suite creates uniquely named streams.
    fileParallelism: false,
    // Tests without their own timeout get this one. Some of them wait out a
    // full server long-poll, so the server's long_poll_timeout (run.sh: 2s)
    // must stay well below it. The suite's client retries 5xx and network
    // errors forever, so a broken server costs up to this much per test.
    testTimeout: 10_000,
    hookTimeout: 10_000,
    teardownTimeout: 10_000,
    passWithNoTests: false,
    testNamePattern,
    // In CI, one line per test as it finishes (progress and timings in the log).
    reporters: [process.env.CI ? "verbose" : "default", "./count-reporter.mjs"],
  },
})
