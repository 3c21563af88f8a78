// Ad-hoc A/B of what the replica machinery adds to one 1,000-row batch statement (no listener in the process):
// off (singleInstance), notify only, fix-up only, both; 40 rounds alternating, median ms. Reaches into the store's
// internals (replication, fixUpSql) to switch the parts: a measuring tool, not an API. node bench/replicas-sql-cost.mjs
import { startService, freshSchema } from './lib/service.mjs';
import { VALUE_JSON, median } from './lib/util.mjs';
import { createBenchDatabase, dropBenchDatabase, withDatabase } from './lib/db.mjs';
const server = 'postgres://postgres@127.0.0.1:5432/postgres';
const db = `write_back_bench_sqlcost_${process.pid}`;
await createBenchDatabase(server, db);
const url = withDatabase(server, db);
const s = await startService(url, { schema: freshSchema('sqlcost'), autoFlush: false }, 'sqlcost');
const store = s.service.store;
const proto = Object.getPrototypeOf(store);
const variants = {
  off: () => { store.replication.notify = false; store.fixUpSql = () => ''; },
  notify: () => { store.replication.notify = true; store.fixUpSql = () => ''; },
  fixup: () => { store.replication.notify = false; store.fixUpSql = (items) => proto.fixUpSql.call({ ...store, replication: { notify: true }, entriesTable: store.entriesTable, tombstonesTable: store.tombstonesTable }, items); },
  both: () => { store.replication.notify = true; delete store.fixUpSql; },
};
let seq = 0;
const times = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
for (let round = 0; round < 40; round++) {
  for (const [name, apply] of Object.entries(variants)) {
    apply();
    const items = Array.from({ length: 1000 }, (_, i) => ({ key: `user:${seq++}`, json: VALUE_JSON[i & 4095], version: 1e15 + seq, rank: 1 }));
    const t0 = performance.now();
    await store.writeBatch(items);
    times[name].push(performance.now() - t0);
  }
}
for (const [name, t] of Object.entries(times)) console.log(name, median(t.slice(5)).toFixed(2), 'ms per 1000-row batch');
await s.close({ abandon: false });
await dropBenchDatabase(server, db);
process.exit(0);
