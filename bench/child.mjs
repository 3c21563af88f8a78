// Runs one scenario in its own process (own heap, own JIT state) and sends its result to bench/run.mjs.
import { performance } from 'node:perf_hooks';

const name = process.argv[2];
const ctx = JSON.parse(process.env.BENCH_CTX ?? '{}');

function send(message) {
  return new Promise((resolve) => {
    if (process.send) process.send(message, () => resolve());
    else {
      process.stdout.write(`${JSON.stringify(message, null, 2)}\n`);
      resolve();
    }
  });
}

const started = performance.now();
try {
  const scenario = await import(`./scenarios/${name}.mjs`);
  const result = await scenario.run(ctx);
  await send({ ok: true, result: { scenario: name, status: 'ok', ...result, durationMs: Math.round(performance.now() - started) } });
  process.exit(0);
} catch (error) {
  await send({ ok: false, error: error?.stack ?? String(error), durationMs: Math.round(performance.now() - started) });
  process.exit(1);
}
