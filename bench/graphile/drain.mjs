// graphile-worker's drain of N no-op jobs, for bench/run.sh's comparison with switchyard's
// PostgreSQL drain on the same server in the same run.
//
//   node bench/graphile/drain.mjs postgres://u@host/db 50000
//
// A fresh database is created next to the URL's (dropped afterwards); N jobs are queued
// with addJobs, then one worker runs them with the options graphile-worker's performance
// page documents (concurrency 24, pool 25, local queue 500, completion batching with no
// delay). The rate is N over first job start → the jobs table empty (every completion
// committed), the same window as switchyard's "first claim → last finish".
import { Logger, makeWorkerUtils, run, runMigrations } from "graphile-worker";
import pg from "pg";

const [url, count = "50000"] = process.argv.slice(2);
if (!url) {
  console.error("usage: drain.mjs POSTGRES_URL [JOBS]");
  process.exit(1);
}
const jobs = Number(count);
const name = `gw_bench_${process.pid}`;
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query(`CREATE DATABASE ${name}`);
const target = new URL(url);
target.pathname = `/${name}`;
const connectionString = target.toString();
// Warnings and errors only: a line per job would measure the terminal.
const logger = new Logger(() => (level, message) => {
  if (level === "error" || level === "warning") console.error(`graphile-worker ${level}: ${message}`);
});

try {
  await runMigrations({ connectionString, logger });
  const utils = await makeWorkerUtils({ connectionString, logger });
  for (let from = 0; from < jobs; from += 1000) {
    const specs = [];
    for (let n = from; n < Math.min(jobs, from + 1000); n++) specs.push({ identifier: "noop", payload: { n } });
    await utils.addJobs(specs);
  }
  await utils.release();

  // Our own pool, so that it is closed before the database is dropped.
  const pgPool = new pg.Pool({ connectionString, max: 25 });
  pgPool.on("error", (e) => console.error(`graphile-worker pool: ${e.message}`));
  let first = 0;
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const runner = await run({
    pgPool,
    logger,
    noHandleSignals: true,
    concurrency: 24,
    maxPoolSize: 25,
    preset: { worker: { localQueue: { size: 500 }, completeJobBatchDelay: 0, failJobBatchDelay: 0 } },
    taskList: {
      noop: async () => {
        if (!first) first = performance.now();
      },
    },
  });
  const probe = new pg.Client({ connectionString });
  await probe.connect();
  for (;;) {
    const { rows } = await probe.query("SELECT count(*)::int AS n FROM graphile_worker._private_jobs");
    if (rows[0].n === 0) break;
    if (performance.now() - started > 600_000) throw new Error(`${rows[0].n} jobs left after 600 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const last = performance.now();
  const cpu = process.cpuUsage(cpu0);
  await probe.end();
  await runner.stop();
  await pgPool.end();
  const busy = (last - first) / 1000;
  const cores = (cpu.user + cpu.system) / 1e6 / ((last - started) / 1000);
  console.log(
    `graphile-worker 0.18.0 drain ${jobs}: ${Math.round(jobs / busy)} jobs/s ` +
      `(${busy.toFixed(2)} s; node ${(((cpu.user + cpu.system) / jobs) | 0)} µs/job, ${cores.toFixed(2)} cores busy)`,
  );
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}
