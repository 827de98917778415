/**
 * `npm run fuzz -- --runs N`: the reliability properties run long, in worker processes, in chunks of
 * runs with seeds derived from one base seed. Every failure is printed with its seed and path
 * (replay it with FUZZ_SEED / FUZZ_PATH in test/fuzz/fuzz.test.ts, or `--seed S --replay PATH`
 * here) and its shrunk counterexample; the summary counts runs, steps, time, runs/s, exceptions,
 * divergences and invariant breaks per kind. Exit 0 only when nothing failed.
 *
 *   npm run fuzz -- --runs 100000                 every kind (model, raw, smmu, guest), 100000 runs each
 *   npm run fuzz -- --runs 1e6 --kind model,raw   the long run
 *   npm run fuzz -- --kind smmu --runs 5000 --seed 42 --jobs 1
 *   npm run fuzz -- --kind model --seed 7 --replay 12:3:0 --runs 1   one failure, shrunk
 */

import { fork } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { show } from './ops.ts';
import { FUZZ_KINDS, type FuzzKind, type FuzzStats, newStats, propertyFor } from './properties.ts';

interface Chunk {
  kind: FuzzKind;
  seed: number;
  runs: number;
  replay?: string;
}

interface ChunkResult {
  kind: FuzzKind;
  seed: number;
  runs: number;
  ms: number;
  stats: FuzzStats;
  failure?: { seed: number; path: string; message: string; counterexample: string; class: string };
}

/** What kind of failure a message is (world.ts, invariants.ts, smmu-fuzz.ts word them). */
function classify(message: string): string {
  if (/^exception /m.test(message) || /not >= 0 or -errno/.test(message)) return 'exception';
  if (
    /failed but changed the state|breach|reaches|stale|pinned|locked_vm|pinned_vm|context|STE|writable|GERROR|CERROR|event/i.test(
      message,
    )
  )
    return message.includes('the references say') ? 'divergence' : 'invariant';
  return 'divergence';
}

function runChunk(c: Chunk): ChunkResult {
  const stats = newStats();
  const t0 = performance.now();
  const r = fc.check(propertyFor(c.kind, stats), {
    seed: c.seed,
    numRuns: c.runs,
    ...(c.replay !== undefined ? { path: c.replay, endOnFailure: true } : {}),
  });
  const out: ChunkResult = {
    kind: c.kind,
    seed: c.seed,
    runs: stats.runs,
    ms: performance.now() - t0,
    stats,
  };
  if (r.failed) {
    const message = r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance);
    out.failure = {
      seed: r.seed,
      path: r.counterexamplePath ?? '',
      message,
      counterexample: show(r.counterexample),
      class: classify(message),
    };
  }
  return out;
}

if (process.env.VFIO_NEST_FUZZ_WORKER === '1') {
  process.on('message', (c: Chunk | 'done') => {
    if (c === 'done') process.exit(0);
    process.send!(runChunk(c));
  });
  process.send!('ready');
} else {
  await main();
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '10000' },
      kind: { type: 'string', default: FUZZ_KINDS.join(',') },
      seed: { type: 'string' },
      jobs: { type: 'string', default: String(Math.min(availableParallelism(), 4)) },
      chunk: { type: 'string', default: '2000' },
      replay: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(
      'Usage: npm run fuzz -- [--runs N] [--kind model,raw,smmu] [--seed S] [--jobs J] [--chunk C] [--replay PATH] [--out report.json]\n' +
        'Example: npm run fuzz -- --runs 1000000 --kind model,raw\n',
    );
    return;
  }
  const runs = Number(values.runs);
  const kinds = values.kind!.split(',') as FuzzKind[];
  for (const k of kinds)
    if (!FUZZ_KINDS.includes(k)) throw new Error(`--kind: '${k}' is not one of ${FUZZ_KINDS.join(', ')}`);
  const base = values.seed !== undefined ? Number(values.seed) : (Date.now() ^ (process.pid << 16)) >>> 0;
  const chunkRuns = Math.max(1, Number(values.chunk));
  const jobs = Math.max(1, Number(values.jobs));
  if (!Number.isFinite(runs) || runs < 1) throw new Error('--runs: a positive number');

  // Chunks interleave the kinds so every kind makes progress from the start.
  const queue: Chunk[] = [];
  const perKind = Math.ceil(runs / chunkRuns);
  for (let i = 0; i < perKind; i++)
    for (const kind of kinds) {
      const n = Math.min(chunkRuns, runs - i * chunkRuns);
      queue.push({
        kind,
        // A replay runs the failure's own seed; otherwise each chunk of each kind gets its own.
        seed:
          values.replay !== undefined ? base : (base + i * 7919 + FUZZ_KINDS.indexOf(kind) * 104729) >>> 0,
        runs: n,
        replay: values.replay,
      });
    }
  process.stderr.write(
    `fuzz: ${runs} runs of ${kinds.join(', ')}, base seed ${base}, ${jobs} worker(s), chunks of ${chunkRuns}\n`,
  );

  const totals = new Map<
    FuzzKind,
    { runs: number; ms: number; stats: FuzzStats; failures: ChunkResult['failure'][] }
  >();
  for (const k of kinds) totals.set(k, { runs: 0, ms: 0, stats: newStats(), failures: [] });
  const t0 = performance.now();
  let lastReport = t0;
  const report = (force = false): void => {
    const now = performance.now();
    if (!force && now - lastReport < 15_000) return;
    lastReport = now;
    const parts = kinds.map((k) => {
      const t = totals.get(k)!;
      return `${k} ${t.runs}/${runs} (${t.failures.length} failed)`;
    });
    const done = [...totals.values()].reduce((a, t) => a + t.runs, 0);
    const rate = done / ((now - t0) / 1000);
    const left = runs * kinds.length - done;
    process.stderr.write(
      `fuzz: ${parts.join(', ')}; ${rate.toFixed(0)} runs/s, ${((now - t0) / 1000).toFixed(0)} s, about ${(left / rate / 60).toFixed(0)} min left\n`,
    );
  };

  await new Promise<void>((resolve, reject) => {
    let active = 0;
    for (let j = 0; j < Math.min(jobs, queue.length); j++) {
      const w = fork(fileURLToPath(import.meta.url), [], {
        execArgv: ['--import', 'tsx'],
        env: { ...process.env, VFIO_NEST_FUZZ_WORKER: '1' },
      });
      active++;
      const next = () => w.send(queue.shift() ?? 'done');
      w.on('message', (m: ChunkResult | 'ready') => {
        if (m !== 'ready') {
          const t = totals.get(m.kind)!;
          t.runs += m.runs;
          t.ms += m.ms;
          merge(t.stats, m.stats);
          if (m.failure) {
            t.failures.push(m.failure);
            process.stderr.write(
              `\nfuzz: ${m.kind} FAILED (${m.failure.class}), seed ${m.failure.seed}, path ${m.failure.path}\n${m.failure.message}\n` +
                `counterexample: ${m.failure.counterexample}\n` +
                `replay: npm run fuzz -- --kind ${m.kind} --seed ${m.failure.seed} --replay ${m.failure.path} --runs 1 --jobs 1\n\n`,
            );
          }
          report();
        }
        next();
      });
      w.on('error', reject);
      w.on('exit', () => {
        if (--active === 0) resolve();
      });
    }
  });

  const seconds = (performance.now() - t0) / 1000;
  const summary = kinds.map((k) => {
    const t = totals.get(k)!;
    const by = (c: string) => t.failures.filter((f) => f?.class === c).length;
    return {
      kind: k,
      runs: t.runs,
      steps: t.stats.steps,
      failedCalls: t.stats.failedCalls,
      uncertain: t.stats.uncertain,
      isolationChecks: t.stats.isolationChecks,
      workerSeconds: Math.round(t.ms / 1000),
      runsPerWorkerSecond: Math.round(t.runs / (t.ms / 1000)),
      exceptions: by('exception'),
      divergences: by('divergence'),
      invariantBreaks: by('invariant'),
      failures: t.failures,
      ...(k === 'smmu'
        ? { smmu: t.stats.smmu }
        : k === 'guest'
          ? { guest: t.stats.guest }
          : { succeeded: t.stats.succeeded, uncertainWhy: t.stats.uncertainWhy }),
    };
  });
  for (const s of summary)
    process.stdout.write(
      `${s.kind.padEnd(6)} ${String(s.runs).padStart(8)} runs ${String(s.steps).padStart(10)} steps  ${s.runsPerWorkerSecond} runs/s per worker  ` +
        `exceptions ${s.exceptions}  divergences ${s.divergences}  invariant breaks ${s.invariantBreaks}` +
        (s.kind === 'model' ? `  uncertain ${s.uncertain}` : '') +
        '\n',
    );
  const total = summary.reduce((a, s) => a + s.runs, 0);
  process.stdout.write(
    `total  ${total} runs in ${seconds.toFixed(0)} s (${(total / seconds).toFixed(0)} runs/s with ${jobs} worker(s)), base seed ${base}\n`,
  );
  if (values.out) writeFileSync(values.out, `${JSON.stringify({ base, jobs, seconds, summary }, null, 2)}\n`);
  process.exitCode = summary.some((s) => s.failures.length > 0) ? 1 : 0;
}

function merge(into: FuzzStats, from: FuzzStats): void {
  into.runs += from.runs;
  into.steps += from.steps;
  into.failedCalls += from.failedCalls;
  into.uncertain += from.uncertain;
  into.isolationChecks += from.isolationChecks;
  for (const [k, v] of Object.entries(from.succeeded)) into.succeeded[k] = (into.succeeded[k] ?? 0) + v;
  for (const [k, v] of Object.entries(from.uncertainWhy))
    into.uncertainWhy[k] = (into.uncertainWhy[k] ?? 0) + v;
  for (const k of Object.keys(into.smmu) as (keyof FuzzStats['smmu'])[])
    if (typeof from.smmu[k] === 'number') (into.smmu[k] as number) += from.smmu[k] as number;
  into.guest.delivered += from.guest.delivered;
  into.guest.dropped += from.guest.dropped;
}
