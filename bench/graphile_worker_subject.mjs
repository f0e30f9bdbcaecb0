// graphile-worker as a benchmark subject, in a database of its own (bench/peers.py
// starts this script):
//
//   node bench/graphile_worker_subject.mjs URL migrate
//   node bench/graphile_worker_subject.mjs URL pickup|noop|update CONCURRENCY [EXPECTED]
//
// `pickup` prints "ready", then, once EXPECTED jobs have started, a JSON object mapping
// each job's `i` to the moment its task was called, in seconds on the monotonic clock
// (process.hrtime is CLOCK_MONOTONIC on Linux, as is Python's time.perf_counter, which
// bench/producer.py stamps commits with), and exits. `noop` and `update` run until
// SIGTERM; the benchmark watches the jobs table drain. Logging below warnings is off,
// as ours logs nothing per job either.
import { Logger, run, runMigrations } from "graphile-worker";

const [url, mode, concurrencyText, expectedText] = process.argv.slice(2);

const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`${level}: ${message}`);
});

if (mode === "migrate") {
  await runMigrations({ connectionString: url, logger });
  process.exit(0);
}

const started = {};
const expected = Number(expectedText ?? 0);
let allStarted;
const allStartedPromise = new Promise((resolve) => {
  allStarted = resolve;
});

const taskList = {
  noop: async () => {},
  // One row per job, so concurrent jobs never wait on a lock.
  update: async (payload, helpers) => {
    await helpers.query("update bench_done set done_at = now() where i = $1", [payload.i]);
  },
  pickup: async (payload) => {
    started[payload.i] = Number(process.hrtime.bigint()) / 1e9;
    if (Object.keys(started).length >= expected) allStarted();
  },
};

const runner = await run({
  connectionString: url,
  concurrency: Number(concurrencyText),
  noHandleSignals: true,
  logger,
  taskList: { [mode]: taskList[mode] },
});
console.log("ready");

if (mode === "pickup") {
  await allStartedPromise;
  console.log(JSON.stringify(started));
  await runner.stop();
  process.exit(0);
} else {
  process.on("SIGTERM", async () => {
    await runner.stop();
    process.exit(0);
  });
}
