import { describe, expect, it } from 'vitest';
import { dollarQuote, localStatementTimeout } from '../../src/write-back/store/session-free-sql.js';

/** What Postgres's lexer reads as the literal: from the opening tag to the first closing one. */
function lexed(quoted: string): string {
  const tag = quoted.slice(0, quoted.indexOf('$', 1) + 1);
  const close = quoted.indexOf(tag, tag.length);
  return quoted.slice(tag.length, close) + (close + tag.length === quoted.length ? '' : '<!>');
}

describe('session-free SQL helpers', () => {
  it('dollarQuote: the literal closes exactly at its end whatever the text holds', () => {
    const texts = ['', 'plain', "it's", '\\', '$', '$$', '$wb$', 'x$wb', 'x$w', 'x$', '$wb$$wb0$x$wb1', 'a$wb$b$wb0$c$wb1$d$wb', '"k"\u00e9'];
    for (const text of texts) expect(lexed(dollarQuote(text)), text).toBe(text);
  });

  it('localStatementTimeout: set_config(..., true) of a non-negative integer only', () => {
    expect(localStatementTimeout(0)).toBe(`SELECT set_config('statement_timeout', '0', true), set_config('lock_timeout', '0', true);`);
    expect(localStatementTimeout(30000)).toContain(`set_config('statement_timeout', '30000', true)`);
    expect(() => localStatementTimeout(-1)).toThrow(RangeError);
    expect(() => localStatementTimeout(1.5)).toThrow(RangeError);
  });
});
