import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/temp-dir.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const LIBRARY_SRC = path.join(ROOT, 'src/write-back');
/**
 * Files reached only through a subpath export (`nestjs-write-back/config`), never from the main entry: they may
 * import an optional peer statically, since only apps that use that peer load them.
 */
/** Entry points of their own (`nestjs-write-back/config`, `/testing`) and the optional peers they load. */
const SUBPATH_ONLY = new Map([
  ['config.ts', ['@nestjs/config']],
  ['testing.ts', ['@electric-sql/pglite', '@electric-sql/pglite-socket']],
]);
const isSubpathOnly = (file: string) => SUBPATH_ONLY.has(path.relative(LIBRARY_SRC, file).replace(/\.js$/, '.ts'));

/**
 * Compiles the sources as `npm run build` does, into a directory of this test beside a copy of package.json
 * and README.md: what `npm pack` reads, without touching the repository's dist/ (other workers may be using it).
 */
async function stagePackage(): Promise<string> {
  const stage = await tempDir('write-back-package-');
  execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.build.json', '--outDir', path.join(stage, 'dist')], {
    cwd: ROOT,
    stdio: 'pipe',
    timeout: 180_000,
  });
  for (const file of ['package.json', 'README.md', 'LICENSE']) {
    if (existsSync(path.join(ROOT, file))) copyFileSync(path.join(ROOT, file), path.join(stage, file));
  }
  return stage;
}

interface Manifest {
  main?: string;
  types?: string;
  type?: string;
  exports: Record<string, unknown>;
  files: string[];
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  devDependencies?: Record<string, string>;
}

const manifest = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as Manifest;

/** Every file under `dir` whose name ends with one of `suffixes`. */
function filesUnder(dir: string, suffixes: string[]): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && suffixes.some((suffix) => entry.name.endsWith(suffix)))
    .map((entry) => path.join(entry.parentPath, entry.name));
}

type ImportKind = 'static' | 'dynamic' | 'type';

interface ImportRef {
  specifier: string;
  kind: ImportKind;
  file: string;
}

/**
 * The module specifiers of a TypeScript or JavaScript file: `import ... from`, `import '...'`,
 * `export ... from`, `import('...')`; `import type`, `export type`, imports whose every name is `type`, and
 * `typeof import('...')` count as type-only.
 */
function importsOf(text: string, file: string): ImportRef[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const refs: ImportRef[] = [];
  for (const m of code.matchAll(/(?:^|[;}\s])(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]/g)) {
    const names = /^\{([\s\S]*)\}$/.exec(m[3].trim())?.[1];
    const everyNameIsType =
      names !== undefined &&
      names.split(',').map((n) => n.trim()).filter(Boolean).length > 0 &&
      names.split(',').map((n) => n.trim()).filter(Boolean).every((n) => n.startsWith('type '));
    refs.push({ specifier: m[4], kind: m[2] || everyNameIsType ? 'type' : 'static', file });
  }
  for (const m of code.matchAll(/(?:^|[;}\s])import\s*['"]([^'"]+)['"]/g)) refs.push({ specifier: m[1], kind: 'static', file });
  for (const m of code.matchAll(/(typeof\s+)?\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    refs.push({ specifier: m[2], kind: m[1] ? 'type' : 'dynamic', file });
  }
  return refs;
}

const isBuiltin = (specifier: string) => specifier.startsWith('node:') || builtinModules.includes(specifier);
const isRelative = (specifier: string) => specifier.startsWith('.') || specifier.startsWith('/');

/** `@scope/name/sub/path.js` -> `@scope/name`, `typeorm/driver/x.js` -> `typeorm`. */
function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** Bare package imports of the files, by package, with the kinds of import seen. */
function packageImports(files: string[]): Map<string, Set<ImportKind>> {
  const byPackage = new Map<string, Set<ImportKind>>();
  for (const file of files) {
    for (const ref of importsOf(readFileSync(file, 'utf8'), file)) {
      if (isBuiltin(ref.specifier) || isRelative(ref.specifier)) continue;
      const name = packageName(ref.specifier);
      if (!byPackage.has(name)) byPackage.set(name, new Set());
      byPackage.get(name)!.add(ref.kind);
    }
  }
  return byPackage;
}

/** The files `npm pack` would put in the tarball of the package in `dir`. */
function packedFiles(dir: string): string[] {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: dir, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const [result] = JSON.parse(out) as [{ files: { path: string }[] }];
  return result.files.map((f) => f.path).sort();
}

/** The file paths in an `exports` value (conditions and subpaths, depth first), with their condition keys. */
function exportTargets(value: unknown, conditions: string[] = []): { target: string; conditions: string[] }[] {
  if (typeof value === 'string') return [{ target: value, conditions }];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, inner]) => exportTargets(inner, [...conditions, key]));
}

describe('package manifest (package.json of the library)', () => {
  let stage: string;
  beforeAll(async () => {
    stage = await stagePackage();
  }, 180_000);
  const optionalPeers = Object.entries(manifest.peerDependenciesMeta ?? {})
    .filter(([, meta]) => meta.optional)
    .map(([name]) => name)
    .sort();
  const dependencies = Object.keys(manifest.dependencies ?? {});
  const peers = Object.keys(manifest.peerDependencies ?? {});

  describe('dependencies of src/write-back/', () => {
    const sourceImports = packageImports(filesUnder(LIBRARY_SRC, ['.ts']).filter((file) => !isSubpathOnly(file)));

    it('parses import forms the library uses (static, side effect, re-export, dynamic, type-only)', () => {
      const refs = importsOf(
        [
          `import { A } from 'a';`,
          `import type { B } from 'b';`,
          `import { type C, type D } from 'c/sub/path.js';`,
          `import { type E, F } from '@scope/e';`,
          `export { G } from './g.js';`,
          `export type { H } from 'h';`,
          `import 'side-effect';`,
          `const i = await import('i');`,
          `let j: typeof import('j');`,
          `// import { K } from 'k';`,
          `import {\n  L,\n  type M,\n} from 'l';`,
        ].join('\n'),
        'example.ts',
      );
      expect(refs.map((r) => `${r.kind} ${r.specifier}`).sort()).toEqual(
        [
          'static a',
          'type b',
          'type c/sub/path.js',
          'static @scope/e',
          'static ./g.js',
          'type h',
          'static side-effect',
          'dynamic i',
          'type j',
          'static l',
        ].sort(),
      );
    });

    it('every bare package it imports is a dependency or a peer dependency', () => {
      expect(sourceImports.size).toBeGreaterThan(3);
      const missing = [...sourceImports.keys()].filter((name) => !dependencies.includes(name) && !peers.includes(name));
      expect(missing, 'imported by src/write-back/ but neither in dependencies nor peerDependencies').toEqual([]);
    });

    it('declares the Nest packages, typeorm and pg as peers (the app owns those instances), not as dependencies', () => {
      for (const name of ['@nestjs/common', '@nestjs/core', 'typeorm', 'pg']) {
        expect(peers, name).toContain(name);
        expect(dependencies, name).not.toContain(name);
      }
    });

    it('every peer is imported by the library (pg: loaded by TypeORM for the DataSource the module opens)', () => {
      const imported = new Set([...packageImports(filesUnder(LIBRARY_SRC, ['.ts'])).keys()]);
      const unused = peers.filter((name) => name !== 'pg' && !imported.has(name));
      expect(unused, 'peers the package never imports (Nest itself brings rxjs and reflect-metadata)').toEqual([]);
      for (const name of sourceImports.keys()) {
        if (name.startsWith('@nestjs/')) expect(dependencies, `${name} must be a peer: one Nest instance per app`).not.toContain(name);
      }
    });

    it('subpath-only files are not imported by the main entry, and their optional peer is declared', () => {
      for (const file of filesUnder(LIBRARY_SRC, ['.ts']).filter((f) => !isSubpathOnly(f))) {
        for (const ref of importsOf(readFileSync(file, 'utf8'), file)) {
          if (!isRelative(ref.specifier)) continue;
          const target = path.resolve(path.dirname(file), ref.specifier);
          expect(isSubpathOnly(target), `${file} imports the subpath-only ${ref.specifier}`).toBe(false);
        }
      }
      for (const [file, filePeers] of SUBPATH_ONLY) {
        for (const peer of filePeers) {
          expect(packageImports([path.join(LIBRARY_SRC, file)]).get(peer), `${file} imports ${peer}`).toBeDefined();
          expect(manifest.peerDependenciesMeta?.[peer]?.optional, `${peer} is an optional peer`).toBe(true);
        }
      }
    });

    it('optional peers are exactly the packages imported only dynamically or as types (or only by subpath entries)', () => {
      const notNeededAtLoad = [...sourceImports]
        .filter(([, kinds]) => !kinds.has('static'))
        .map(([name]) => name)
        .concat([...SUBPATH_ONLY.values()].flat().filter((peer) => !sourceImports.get(peer)?.has('static')))
        .sort();
      expect(optionalPeers).toEqual(notNeededAtLoad);
      expect(optionalPeers).toEqual(expect.arrayContaining(['@nestjs/terminus', 'prom-client']));
      for (const name of optionalPeers) expect(peers, `${name} is in peerDependenciesMeta but not a peer`).toContain(name);
    });

    it('the compiled library loads no optional peer statically (a Nest app without terminus or prom-client still starts)', () => {
      const compiled = packageImports(
        filesUnder(path.join(stage, 'dist/write-back'), ['.js']).filter((f) => !SUBPATH_ONLY.has(path.relative(path.join(stage, 'dist/write-back'), f).replace(/\.js$/, '.ts'))),
      );
      for (const name of optionalPeers) expect(compiled.get(name) ?? new Set(), name).not.toContain('static');
      const staticOnes = [...compiled].filter(([, kinds]) => kinds.has('static')).map(([name]) => name);
      for (const name of staticOnes) expect([...dependencies, ...peers.filter((p) => !optionalPeers.includes(p))], name).toContain(name);
    });

    it('each peer the repo also installs for its own tests is installed at a version inside the peer range', () => {
      for (const [name, range] of Object.entries(manifest.peerDependencies ?? {})) {
        expect(range, `${name}: a caret range`).toMatch(/^\^\d+\.\d+\.\d+$/);
        const installed = JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version as string;
        const [major, minor, patch] = range.slice(1).split('.').map(Number);
        const [iMajor, iMinor, iPatch] = installed.split('.').map((n) => Number.parseInt(n, 10));
        const inRange =
          iMajor === major && (major > 0 ? iMinor > minor || (iMinor === minor && iPatch >= patch) : iMinor === minor && iPatch >= patch);
        expect(inRange, `${name}@${installed} satisfies ${range}`).toBe(true);
      }
    });
  });

  describe('what npm pack ships', () => {
    let files: string[];
    beforeAll(() => {
      files = packedFiles(stage);
    }, 60_000);

    it('packing the repository itself ships nothing outside dist/write-back/, whatever lies in the work tree', () => {
      for (const file of packedFiles(ROOT)) expect(file).toMatch(/^(package\.json|README\.md|LICENSE(\.\w+)?|dist\/write-back\/.+\.(js|d\.ts))$/);
    });

    it('ships the compiled library, its typings and the README: no demo, tests, specs, sources or source maps', () => {
      expect(files).toContain('package.json');
      expect(files).toContain('README.md');
      for (const file of files) {
        expect(file, `${file} does not belong in the package`).toMatch(/^(package\.json|README\.md|LICENSE(\.\w+)?|dist\/write-back\/.+\.(js|d\.ts))$/);
        expect(file).not.toMatch(/(\.spec\.|\.test\.|\/test\/|\/bench\/|\.map$|^src\/)/);
      }
      // The demo (main.js, app.module.js, kv/, config/, embedded/) stays out.
      expect(files.filter((f) => f.startsWith('dist/') && !f.startsWith('dist/write-back/'))).toEqual([]);
    });

    it('ships every compiled file of the library (a .js and a .d.ts per source file)', () => {
      for (const source of filesUnder(LIBRARY_SRC, ['.ts'])) {
        const base = path.relative(ROOT, source).replace(/^src\//, 'dist/').replace(/\.ts$/, '');
        expect(files, `${base}.js`).toContain(`${base}.js`);
        expect(files, `${base}.d.ts`).toContain(`${base}.d.ts`);
      }
    });

    it('every relative import of a shipped file resolves to another shipped file', () => {
      for (const file of files.filter((f) => f.endsWith('.js') || f.endsWith('.d.ts'))) {
        for (const ref of importsOf(readFileSync(path.join(stage, file), 'utf8'), file)) {
          if (!isRelative(ref.specifier)) continue;
          const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), ref.specifier));
          const candidates = file.endsWith('.d.ts') ? [target.replace(/\.js$/, '.d.ts'), target] : [target];
          expect(candidates.some((c) => files.includes(c)), `${file} imports ${ref.specifier}`).toBe(true);
        }
      }
    });

    it('exports point at shipped files, with types before default, and main/types agree', () => {
      expect(manifest.type).toBe('module');
      const root = manifest.exports['.'] as Record<string, string>;
      expect(Object.keys(root)).toEqual(['types', 'default']);
      const targets = exportTargets(manifest.exports);
      expect(targets.length).toBeGreaterThan(0);
      for (const { target, conditions } of targets) {
        const file = target.replace(/^\.\//, '');
        expect(existsSync(path.join(stage, file)), `${target} exists after the build`).toBe(true);
        expect(files, `${target} is in the tarball`).toContain(file);
        if (conditions.at(-1) === 'types') expect(target).toMatch(/\.d\.ts$/);
      }
      expect(manifest.main).toBe(root.default.replace(/^\.\//, ''));
      expect(manifest.types).toBe(root.types.replace(/^\.\//, ''));
      expect(manifest.files).not.toContainEqual(expect.stringMatching(/^(src|test|bench|docker)\b/));
    });
  });
});
