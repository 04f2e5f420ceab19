// Prints one final line "N passed, N failed[, N skipped]" that CI parses.
// Errors outside tests (a test file that fails to load, unhandled errors) are
// counted as failures so the line never looks green when vitest is red.
import { writeFileSync } from "node:fs"

export default class CountReporter {
  onTestRunEnd(testModules, unhandledErrors) {
    let passed = 0
    let failed = 0
    let skipped = 0
    let extra = 0
    for (const mod of testModules) {
      for (const t of mod.children.allTests()) {
        const state = t.result().state
        if (state === "passed") passed++
        else if (state === "failed") failed++
        else skipped++ // "skipped" (excluded, runIf(false), todo) or "pending" (never ran)
      }
      extra += mod.errors().length
    }
    extra += unhandledErrors?.length ?? 0
    if (extra > 0) {
      process.stdout.write(`\nnote: ${extra} error(s) outside tests counted as failed\n`)
    }
    failed += extra
    let line = `${passed} passed, ${failed} failed`
    if (skipped > 0) line += `, ${skipped} skipped`
    // run.sh sets DS_CONFORMANCE_COUNTS_FILE and prints the line itself, last.
    if (process.env.DS_CONFORMANCE_COUNTS_FILE) {
      writeFileSync(process.env.DS_CONFORMANCE_COUNTS_FILE, `${line}\n`)
    } else {
      process.stdout.write(`\n${line}\n`)
    }
  }
}
