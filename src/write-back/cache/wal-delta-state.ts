import { deltaText, parseDeltaText, type Delta } from '../model/delta.js';
import type { DirtyEntry } from './dirty-set.js';

/** What a WAL delta record holds: every delta of the key not yet committed. */
export interface WalDeltaState {
  /** The snapshot in flight (or waiting for its retry), with its version: the ledger tells if it was applied. */
  flight?: { version: number; delta: Delta };
  /** The deltas written since, at the record's version. */
  pending?: Delta;
}

/** `{"f":{"n":version,"x":delta},"x":delta}`, members omitted when absent. */
export function walDeltaState(entry: DirtyEntry): string {
  const parts: string[] = [];
  const flight = entry.flight;
  if (flight?.delta !== undefined) parts.push(`"f":{"n":${flight.version},"x":${deltaText(flight.delta)}}`);
  if (entry.delta !== undefined) parts.push(`"x":${deltaText(entry.delta)}`);
  return `{${parts.join(',')}}`;
}

export function parseWalDeltaState(text: string): WalDeltaState {
  const raw = JSON.parse(text) as { f?: { n: number; x: unknown }; x?: unknown };
  const state: { flight?: { version: number; delta: Delta }; pending?: Delta } = {};
  if (raw.f !== undefined) state.flight = { version: raw.f.n, delta: parseDeltaText(JSON.stringify(raw.f.x)) };
  if (raw.x !== undefined) state.pending = parseDeltaText(JSON.stringify(raw.x));
  return state;
}
