import fc from 'fast-check';

/**
 * `random(n)`: a whole number in [0, n), uniform, from fast-check's generator seeded with `seed`, so a run
 * replays. For loops that draw as they go; a whole input is better generated as an arbitrary (`fc.property`).
 */
export function seededRandom(seed: number): (n: number) => number {
  const [generate] = fc.sample(fc.noBias(fc.gen()), { seed, numRuns: 1 });
  return (n) => generate(fc.nat, { max: n - 1 });
}
