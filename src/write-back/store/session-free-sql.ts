/**
 * Helpers that keep the module's pooled connections free of session state, so they work behind a transaction
 * pooler (PgBouncer `pool_mode = transaction`) where consecutive transactions of one client run on different
 * server connections, and a server connection carries whatever another client left on it.
 */

/**
 * `statement_timeout` (and `lock_timeout` = 0) set locally, to put in front of a statement sent in the same simple-protocol query
 * string. A multi-statement query string runs as one implicit transaction, so the setting ends with it and never
 * outlives the statement; Postgres (13+) times each statement of the string separately, so the statement after it
 * runs under exactly this timeout whatever the session (a start-up parameter, a leftover `SET` of another client
 * of the same pooler, a role default) says. `0` turns the timeout off for the statement, explicitly. Only this
 * set_config itself (microseconds) starts under the session's values.
 */
export function localStatementTimeout(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError(`statement timeout must be a non-negative integer, got ${ms}`);
  // lock_timeout too: a leftover one would fail statements the statement timeout allows (a commit with NOTIFY
  // waits for the database's notify queue lock while other instances commit theirs).
  return `SELECT set_config('statement_timeout', '${ms}', true), set_config('lock_timeout', '0', true);`;
}

/**
 * `text` as a dollar-quoted SQL literal whose tag does not occur in it. Unlike `'...'` literals it needs no
 * escaping and does not depend on `standard_conforming_strings` (a session setting another pooler client could
 * have changed), so values travel inline in a simple-protocol query string safely and with no per-character work.
 */
export function dollarQuote(text: string): string {
  let tag = '$wb$';
  for (let n = 0; !closesOnlyAtEnd(text, tag); n++) tag = `$wb${n}$`;
  return `${tag}${text}${tag}`;
}

/**
 * Whether the first `tag` in `text + tag` is the appended one: `tag` is not in `text`, and no end of `text` starts
 * an occurrence that the appended tag completes (`x$wb` + `$wb$` would close at the first four characters of
 * `$wb$wb$`). Only the last `tag.length - 1` characters of `text` can take part in such an occurrence.
 */
function closesOnlyAtEnd(text: string, tag: string): boolean {
  if (text.includes(tag)) return false;
  const tail = text.slice(-(tag.length - 1));
  return (tail + tag).indexOf(tag) === tail.length;
}

/**
 * `sql` with its `$1`, `$2`... replaced by dollar-quoted literals of `values`, in one pass (a literal's own text is
 * never scanned again): the entity statements are written with parameters, the store sends no parameters.
 */
export function inline(sql: string, values: readonly string[]): string {
  return sql.replace(/\$(\d+)(?!\d)/g, (match, n: string) => (Number(n) <= values.length ? dollarQuote(values[Number(n) - 1]) : match));
}
