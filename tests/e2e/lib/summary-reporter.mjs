// node --test reporter that prints one closing line, alone on its line:
//   N passed, N failed[, N skipped]
// It reads the run's own final counts (the top-level `pass`/`fail`/... diagnostics
// that every reporter receives), so it counts exactly what the spec reporter does.
// Cancelled tests (timeouts, a test file that crashed) count as failed.

export default async function* summaryReporter(source) {
  const counts = {};
  for await (const event of source) {
    if (event.type !== 'test:diagnostic' || event.data.nesting !== 0) continue;
    const m = /^(tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(event.data.message);
    if (m) counts[m[1]] = Number(m[2]);
  }
  const passed = counts.pass ?? 0;
  const failed = (counts.fail ?? 0) + (counts.cancelled ?? 0);
  const skipped = (counts.skipped ?? 0) + (counts.todo ?? 0);
  yield `\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`;
}
