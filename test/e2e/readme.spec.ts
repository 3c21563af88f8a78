import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

/**
 * The TypeScript blocks of a Markdown text, each with the file it stands for: `<!-- file: src/x.ts -->` on the
 * line before the fence names it (so blocks can import each other), else `src/readme-block-<n>.ts`.
 */
export function typescriptBlocks(markdown: string): { file: string; code: string; line: number }[] {
  const blocks: { file: string; code: string; line: number }[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (!/^```(ts|typescript)\s*$/.test(lines[i])) continue;
    const named = /^<!-- file: (\S+) -->$/.exec(lines[i - 1] ?? '');
    const start = i + 1;
    let end = start;
    while (end < lines.length && !/^```\s*$/.test(lines[end])) end++;
    blocks.push({ file: named?.[1] ?? `src/readme-block-${blocks.length + 1}.ts`, code: lines.slice(start, end).join('\n'), line: i + 1 });
    i = end;
  }
  return blocks;
}

describe('README.md', () => {
  // Under node_modules/.cache: module resolution finds the repository's packages, git and vitest ignore it.
  const dir = path.join(ROOT, 'node_modules/.cache', `readme-check-${process.pid}`);
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('finds the fenced blocks and the file names given to them', () => {
    const blocks = typescriptBlocks(['<!-- file: src/a.ts -->', '```ts', 'export const a = 1;', '```', '', '```ts', 'b;', '```'].join('\n'));
    expect(blocks).toEqual([
      { file: 'src/a.ts', code: 'export const a = 1;', line: 2 },
      { file: 'src/readme-block-2.ts', code: 'b;', line: 6 },
    ]);
  });

  it('every TypeScript block compiles against the library, as an app imports it', async () => {
    const blocks = typescriptBlocks(readFileSync(path.join(ROOT, 'README.md'), 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(8);
    await rm(dir, { recursive: true, force: true });
    for (const block of blocks) {
      await mkdir(path.dirname(path.join(dir, block.file)), { recursive: true });
      await writeFile(path.join(dir, block.file), `// README.md line ${block.line}\n${block.code}\n`);
    }
    const library = (entry: string) => [path.relative(dir, path.join(ROOT, 'src/write-back', entry))];
    await writeFile(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2024'],
          module: 'nodenext',
          moduleResolution: 'nodenext',
          strict: true,
          experimentalDecorators: true,
          emitDecoratorMetadata: true,
          esModuleInterop: true,
          skipLibCheck: true,
          noEmit: true,
          types: ['node'],
          paths: {
            'nestjs-write-back': library('index.ts'),
            'nestjs-write-back/config': library('config.ts'),
            'nestjs-write-back/testing': library('testing.ts'),
          },
        },
        include: ['src'],
      }),
    );
    try {
      await run(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', dir]);
    } catch (error) {
      throw new Error(`README blocks do not compile:\n${(error as { stdout?: string }).stdout}`);
    }
  }, 120_000);
});
