import { RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, copyFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Secret, Service } from 'kubernetes-models/v1';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { AppModule } from '../../src/app.module.js';
import {
  resolveWriteBackOptions,
  WRITE_BACK_DEFAULTS,
  WRITE_BACK_OPTION_NAMES,
  writeBackEnvName,
  writeBackOptionsFromEnv,
} from '../../src/write-back/write-back.options.js';
import { connectSql, databaseUrl, freshSchema, tableRows } from '../support/database.js';
import { buildDemo, demoMain } from '../support/demo-process.js';
import { freePort } from '../support/ports.js';
import { tempDir } from '../support/temp-dir.js';
import { until } from '../support/wait.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const DOCKER = path.join(ROOT, 'docker');
const DUMMY_URL = 'postgres://user:password@db.invalid:5432/app';
/** Where buildDemo() compiled the demo for this worker (what the image's build stage puts in dist/). */
const buildDir = (): string => path.dirname(demoMain());

/** Environment variables of the demo that are not write-back options. */
const OTHER_DEMO_VARIABLES = ['DATABASE_URL', 'PORT', 'HOST', 'API_TOKEN', 'WRITE_BACK_DEMO_DATA_DIR'];
/** Variables Node itself reads. */
const NODE_VARIABLES = ['NODE_ENV', 'NODE_OPTIONS'];
const OPTION_VARIABLES = new Set(WRITE_BACK_OPTION_NAMES.map((name) => writeBackEnvName(name)));

// ---------------------------------------------------------------------------------------------------------
// Reading the files

type Json = any;

interface YamlFile {
  file: string;
  documents: Json[];
}

function yamlFiles(): YamlFile[] {
  const files = readdirSync(DOCKER, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && /\.ya?ml$/.test(entry.name))
    .map((entry) => path.join(entry.parentPath, entry.name))
    .sort();
  return files.map((file) => {
    const documents = parseAllDocuments(readFileSync(file, 'utf8'));
    for (const doc of documents) {
      expect(doc.errors.map(String), `${path.relative(ROOT, file)} parses`).toEqual([]);
      expect(doc.warnings.map(String), `${path.relative(ROOT, file)} parses without warnings`).toEqual([]);
    }
    return { file: path.relative(ROOT, file), documents: documents.map((doc) => doc.toJS()).filter((doc) => doc !== null) };
  });
}

interface DockerInstruction {
  instruction: string;
  args: string;
}

/** Dockerfile instructions by stage (split at FROM), with line continuations joined and comments dropped. */
function dockerStages(text: string): { from: string; instructions: DockerInstruction[] }[] {
  const logical: string[] = [];
  let current = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && current === '') continue;
    if (/^\s*#/.test(line)) continue;
    const continued = /\\\s*$/.test(line);
    current += (current ? ' ' : '') + line.replace(/\\\s*$/, '').trim();
    if (!continued) {
      if (current.trim()) logical.push(current.trim());
      current = '';
    }
  }
  const stages: { from: string; instructions: DockerInstruction[] }[] = [];
  for (const line of logical) {
    const [, instruction, args] = /^(\w+)\s+([\s\S]*)$/.exec(line) ?? [];
    if (!instruction) continue;
    const upper = instruction.toUpperCase();
    if (upper === 'FROM') stages.push({ from: args, instructions: [] });
    else if (stages.length > 0) stages.at(-1)!.instructions.push({ instruction: upper, args });
  }
  return stages;
}

/** `ENV A=1 B="two"` (and the legacy `ENV A 1`) as a record. */
function envOf(instructions: DockerInstruction[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { instruction, args } of instructions) {
    if (instruction !== 'ENV') continue;
    if (!args.includes('=')) {
      const [name, ...value] = args.split(/\s+/);
      env[name] = value.join(' ');
      continue;
    }
    for (const m of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|'([^']*)'|(\S*))/g)) env[m[1]] = m[3] ?? m[4] ?? m[5] ?? '';
  }
  return env;
}

/** .dockerignore patterns as predicates on context-relative paths (a matching directory excludes its contents). */
function dockerIgnore(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const negated = line.startsWith('!');
      const pattern = (negated ? line.slice(1) : line).replace(/^\/+|\/+$/g, '');
      const source = pattern
        .split('/')
        .map((part) => (part === '**' ? '.*' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')))
        .join('/')
        .replace(/\.\*\//g, '(?:.*/)?');
      return { negated, regex: new RegExp(`^${source}$`) };
    });
  return (file) => {
    const parts = file.split('/');
    let excluded = false;
    for (const rule of rules) {
      for (let i = 1; i <= parts.length; i++) {
        if (rule.regex.test(parts.slice(0, i).join('/'))) {
          excluded = !rule.negated;
          break;
        }
      }
    }
    return excluded;
  };
}

/** The GET/PUT/... routes of the demo's controllers, from their decorators: `GET /health/live`. */
function demoRoutes(): Set<string> {
  const routes = new Set<string>();
  const controllers = Reflect.getMetadata('controllers', AppModule) as Function[];
  for (const controller of controllers) {
    const base = String(Reflect.getMetadata(PATH_METADATA, controller) ?? '');
    for (const name of Object.getOwnPropertyNames(controller.prototype)) {
      const handler = controller.prototype[name];
      if (typeof handler !== 'function') continue;
      const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
      if (method === undefined) continue;
      const sub = String(Reflect.getMetadata(PATH_METADATA, handler) ?? '');
      const full = `/${[base, sub].map((p) => p.replace(/^\/+|\/+$/g, '')).filter(Boolean).join('/')}`;
      routes.add(`${RequestMethod[method]} ${full}`);
    }
  }
  return routes;
}

/** `250m` -> 0.25 cores, `1` -> 1; `512Mi` -> bytes. */
function quantity(value: string | number): number {
  const text = String(value);
  const m = /^(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi|Ti)?$/.exec(text);
  if (!m) throw new Error(`unparsable quantity ${text}`);
  const factor: Record<string, number> = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? factor[m[2]] : 1);
}

/** Compose durations: `30s`, `1m30s`, `500ms`. */
function seconds(value: string): number {
  let total = 0;
  for (const m of value.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) {
    total += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return total;
}

/** Seconds a preStop hook pauses: `sleep: { seconds }` or `exec: ["sleep", "N"]` / `sh -c "sleep N"`. */
function preStopSeconds(preStop: Json): number {
  if (preStop?.sleep?.seconds !== undefined) return Number(preStop.sleep.seconds);
  const command = (preStop?.exec?.command ?? []).join(' ');
  const m = /\bsleep\s+(\d+)/.exec(command);
  return m ? Number(m[1]) : 0;
}

/** The options the demo would start with from `env` (validated like the module does at start). */
function optionsFromEnv(env: Record<string, string>) {
  return resolveWriteBackOptions(writeBackOptionsFromEnv({ DATABASE_URL: DUMMY_URL, ...env }));
}

/** Asserts every variable is a real option (or one the demo or Node reads). */
function expectKnownVariables(names: string[], where: string): void {
  for (const name of names) {
    if (name.startsWith('WRITE_BACK_')) {
      expect(OPTION_VARIABLES.has(name) || OTHER_DEMO_VARIABLES.includes(name), `${where}: ${name} is not a write-back option`).toBe(true);
    } else {
      expect([...OTHER_DEMO_VARIABLES, ...NODE_VARIABLES], `${where}: ${name} is read by nothing`).toContain(name);
    }
  }
}

/** The port of an HTTP probe or a targetPort: a number, or the name of a container port. */
function portNumber(port: string | number, container: Json): number {
  if (typeof port === 'number') return port;
  const named = (container.ports ?? []).find((p: Json) => p.name === port);
  expect(named, `container port named "${port}"`).toBeDefined();
  return named.containerPort;
}

// ---------------------------------------------------------------------------------------------------------

describe('deployment files (docker/) cross-checked against the code', () => {
  const files = yamlFiles();
  const all = files.flatMap(({ file, documents }) => documents.map((doc) => ({ file, doc })));
  const k8s = all.filter(({ doc }) => doc.apiVersion && doc.kind && doc.kind !== 'Kustomization');
  const one = (kind: string, name?: string) => {
    const found = k8s.filter(({ doc }) => doc.kind === kind && (name === undefined || doc.metadata.name === name));
    expect(found.length, `one ${kind}${name ? ` ${name}` : ''}`).toBe(1);
    return found[0].doc;
  };
  const statefulSet = one('StatefulSet');
  const pod = statefulSet.spec.template.spec;
  const container = pod.containers[0];
  const configMap = one('ConfigMap', container.envFrom.find((e: Json) => e.configMapRef).configMapRef.name);
  const compose = all.find(({ file }) => /compose\.ya?ml$/.test(file))!.doc;
  const app = compose.services.app;
  const dockerfile = readFileSync(path.join(DOCKER, 'Dockerfile'), 'utf8');
  const stages = dockerStages(dockerfile);
  const runtime = stages.at(-1)!;
  const imageEnv = envOf(runtime.instructions);
  const routes = demoRoutes();
  const shutdownSeconds = (env: Record<string, string>) => optionsFromEnv(env).shutdownTimeoutMs / 1000;

  it('every YAML file under docker/ parses, and the Kubernetes objects are valid for their API schemas', () => {
    expect(files.map((f) => f.file)).toEqual(
      expect.arrayContaining(['docker/compose.yaml', 'docker/k8s/statefulset.yaml', 'docker/k8s/configmap.yaml', 'docker/k8s/pdb.yaml']),
    );
    const models: Record<string, new (data: Json) => { validate(): void }> = {
      'apps/v1/StatefulSet': StatefulSet,
      'apps/v1/Deployment': Deployment,
      'v1/Service': Service,
      'v1/ConfigMap': ConfigMap,
      'v1/Secret': Secret,
      'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
      'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
    };
    for (const { file, doc } of k8s) {
      const Model = models[`${doc.apiVersion}/${doc.kind}`];
      expect(Model, `${file}: ${doc.apiVersion} ${doc.kind} is an expected kind`).toBeDefined();
      expect(() => new Model(doc).validate(), `${file}: ${doc.kind} ${doc.metadata?.name}`).not.toThrow();
    }
  });

  it('kustomization.yaml lists every manifest except the example Secret', () => {
    const kustomization = all.find(({ doc }) => doc.kind === 'Kustomization');
    expect(kustomization).toBeDefined();
    const listed = (kustomization!.doc.resources as string[]).map((r) => `docker/k8s/${r}`).sort();
    const manifests = files.map((f) => f.file).filter((f) => f.startsWith('docker/k8s/') && !/kustomization|\.example\./.test(f));
    expect(listed).toEqual(manifests.sort());
    const example = k8s.filter(({ doc }) => doc.kind === 'Secret');
    for (const { file } of example) expect(file).toMatch(/\.example\.ya?ml$/);
  });

  it('the PgBouncer examples: the app talks to PgBouncer in transaction mode, its LISTEN connection to Postgres', () => {
    // Kubernetes: the Secret's DATABASE_URL names the example PgBouncer Service and port, WRITE_BACK_LISTEN_URL another
    // host; the StatefulSet reads the second key optionally; PgBouncer pools by transaction on that port.
    const listenEnv = container.env.find((e: Json) => e.name === 'WRITE_BACK_LISTEN_URL');
    expect(listenEnv.valueFrom.secretKeyRef).toMatchObject({ name: 'write-back-demo-db', key: 'WRITE_BACK_LISTEN_URL', optional: true });
    const secret = one('Secret', 'write-back-demo-db').stringData;
    const viaPooler = new URL(secret.DATABASE_URL);
    const direct = new URL(secret.WRITE_BACK_LISTEN_URL);
    const pgbouncerService = one('Service', viaPooler.hostname);
    expect(pgbouncerService.spec.ports.map((p: Json) => p.port)).toContain(Number(viaPooler.port));
    expect(direct.host).not.toBe(viaPooler.host);
    const ini = one('ConfigMap', 'write-back-pgbouncer').data['pgbouncer.ini'] as string;
    expect(ini).toMatch(/^pool_mode = transaction$/m);
    expect(ini).toMatch(new RegExp(`^listen_port = ${viaPooler.port}$`, 'm'));
    expect(ini).toMatch(new RegExp(`^${viaPooler.pathname.slice(1)} = host=${direct.hostname} port=${direct.port}`, 'm'));
    const deployment = one('Deployment', 'write-back-pgbouncer');
    expect(deployment.spec.template.metadata.labels).toMatchObject(pgbouncerService.spec.selector);
    expect(optionsFromEnv({ DATABASE_URL: secret.DATABASE_URL, WRITE_BACK_LISTEN_URL: secret.WRITE_BACK_LISTEN_URL }).listenUrl).toBe(
      secret.WRITE_BACK_LISTEN_URL,
    );

    // Compose: the override file points the app at the pgbouncer service and its LISTEN connection at postgres.
    const override = all.find(({ file }) => file === 'docker/compose.pgbouncer.yaml')!.doc;
    const env = { ...app.environment, ...override.services.app.environment };
    expectKnownVariables(Object.keys(env), 'compose.pgbouncer.yaml app environment');
    const options = optionsFromEnv(env);
    const appUrl = new URL(env.DATABASE_URL);
    expect(appUrl.hostname).toBe('pgbouncer');
    expect(override.services.pgbouncer.environment.POOL_MODE).toBe('transaction');
    expect(appUrl.port).toBe(override.services.pgbouncer.environment.LISTEN_PORT);
    expect(new URL(options.listenUrl!).hostname).toBe('postgres');
    expect(Object.keys(compose.services)).toContain('postgres');
    expect(override.services.app.depends_on.pgbouncer).toBeDefined();
  });

  it('the probes hit real GET routes of the demo, on the port the app listens on', () => {
    expect(routes).toContain('GET /health/live');
    expect(routes).toContain('GET /health/ready');
    expect(container.readinessProbe.httpGet.path).toBe('/health/ready');
    expect(container.livenessProbe.httpGet.path).toBe('/health/live');
    expect(container.startupProbe, 'a startupProbe covers migrations and WAL replay').toBeDefined();
    const port = Number(configMap.data.PORT ?? imageEnv.PORT);
    expect(port).toBeGreaterThan(0);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const { path: probePath, port: probePort } = container[probe].httpGet;
      expect(routes, `${probe} ${probePath}`).toContain(`GET ${probePath}`);
      expect(portNumber(probePort, container), `${probe} port`).toBe(port);
    }
    // Start-up may replay a large WAL: the startup probe gives it minutes, far more than liveness would.
    const startupBudget = container.startupProbe.periodSeconds * container.startupProbe.failureThreshold;
    expect(startupBudget).toBeGreaterThanOrEqual(120);
    expect(startupBudget).toBeGreaterThan(container.livenessProbe.periodSeconds * container.livenessProbe.failureThreshold);
    // Liveness must not fire before the app itself would call the flush loop stalled.
    const options = optionsFromEnv(configMap.data);
    const stallSeconds = (options.flushIntervalMs * options.livenessStallIntervals) / 1000;
    expect(container.livenessProbe.periodSeconds * container.livenessProbe.failureThreshold).toBeGreaterThan(stallSeconds);
    // The readiness check counts dead letters with a 1 s timeout: the probe waits longer than that.
    expect(container.readinessProbe.timeoutSeconds).toBeGreaterThan(1);

    for (const { doc } of k8s.filter(({ file, doc }) => doc.kind === 'Service' && !/\.example\./.test(file))) {
      for (const servicePort of doc.spec.ports) expect(portNumber(servicePort.targetPort, container), doc.metadata.name).toBe(port);
    }
    expect(imageEnv.PORT).toBe(String(port));
    expect(runtime.instructions.filter((i) => i.instruction === 'EXPOSE').map((i) => Number(i.args))).toEqual([port]);
    expect(app.ports.map((p: string | Json) => Number(String(typeof p === 'string' ? p : p.target).split(':').at(-1)))).toEqual([Number(app.environment.PORT)]);
    const healthcheck = (app.healthcheck.test as string[]).join(' ');
    const [, checkPort, checkPath] = /127\.0\.0\.1:(\d+)(\/[\w/-]+)/.exec(healthcheck) ?? [];
    expect(Number(checkPort)).toBe(Number(app.environment.PORT));
    expect(routes).toContain(`GET ${checkPath}`);
  });

  it('the grace periods outlast the drain (shutdownTimeoutMs) plus the preStop pause', () => {
    const drain = shutdownSeconds(configMap.data);
    const preStop = preStopSeconds(container.lifecycle?.preStop);
    expect(preStop, 'a preStop pause lets the endpoints update before SIGTERM').toBeGreaterThanOrEqual(5);
    // At least 5 s beyond the drain: closing HTTP, the pool and the WAL after it.
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(drain + preStop + 5);
    const composeDrain = shutdownSeconds(app.environment);
    expect(seconds(app.stop_grace_period)).toBeGreaterThanOrEqual(composeDrain + 5);
    // The library's default applies when the image runs without the variable.
    expect(WRITE_BACK_DEFAULTS.shutdownTimeoutMs / 1000).toBeLessThan(pod.terminationGracePeriodSeconds);
  });

  it('every WRITE_BACK_* variable in the manifests, compose and Dockerfile is a real option with a valid value', () => {
    const sources: [string, Record<string, string>][] = [
      ['ConfigMap', configMap.data],
      ['compose app environment', app.environment],
      ['Dockerfile ENV', imageEnv],
      ['StatefulSet env', Object.fromEntries((container.env ?? []).filter((e: Json) => 'value' in e).map((e: Json) => [e.name, String(e.value)]))],
    ];
    for (const [where, env] of sources) {
      expectKnownVariables(Object.keys(env), where);
      expect(() => optionsFromEnv(env), where).not.toThrow();
      if (env.PORT !== undefined) expect(env.PORT, `${where} PORT`).toMatch(/^\d{1,5}$/);
    }
    expectKnownVariables((container.env ?? []).map((e: Json) => e.name), 'StatefulSet env');
    // The image, compose and the cluster all run with the durability the WAL volume is there for.
    expect(optionsFromEnv(configMap.data).durability).toBe('wal-sync');
    expect(optionsFromEnv(app.environment).durability).toBe('wal-sync');
    // The names the test accepts really are the ones the parser reads.
    expect(writeBackOptionsFromEnv({ WRITE_BACK_FLUSH_INTERVAL_MS: '5' })).toEqual({ flushIntervalMs: 5 });
  });

  it('the WAL directory is on a persistent volume (StatefulSet claim template, compose named volume)', () => {
    const walDir = optionsFromEnv(configMap.data).walDir;
    const claims = statefulSet.spec.volumeClaimTemplates.map((c: Json) => c.metadata.name);
    const mount = container.volumeMounts.find((m: Json) => walDir === m.mountPath || walDir.startsWith(`${m.mountPath}/`));
    expect(mount, `a volume mounted over ${walDir}`).toBeDefined();
    expect(claims, 'the WAL mount comes from volumeClaimTemplates').toContain(mount.name);
    expect(statefulSet.spec.persistentVolumeClaimRetentionPolicy).toEqual({ whenDeleted: 'Retain', whenScaled: 'Retain' });

    const composeWal = optionsFromEnv(app.environment).walDir;
    const composeMount = (app.volumes as string[]).map((v) => v.split(':')).find(([, target]) => composeWal.startsWith(target));
    expect(composeMount, `a compose volume over ${composeWal}`).toBeDefined();
    expect(Object.keys(compose.volumes ?? {}), 'a named volume').toContain(composeMount![0]);
    expect(imageEnv.WRITE_BACK_WAL_DIR.startsWith(composeMount![1])).toBe(true);
  });

  it('wires the Secret, the Services, the PDB and the resources to the pods', () => {
    const labels = statefulSet.spec.template.metadata.labels;
    const matches = (selector: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);
    expect(matches(statefulSet.spec.selector.matchLabels)).toBe(true);
    // The demo's Services (the PgBouncer example's selects its own pods).
    const services = k8s.filter(({ file, doc }) => doc.kind === 'Service' && !/\.example\./.test(file)).map(({ doc }) => doc);
    for (const service of services) expect(matches(service.spec.selector), service.metadata.name).toBe(true);
    const governing = services.find((s) => s.metadata.name === statefulSet.spec.serviceName);
    expect(governing?.spec.clusterIP, 'serviceName names a headless Service').toBe('None');
    expect(matches(one('PodDisruptionBudget').spec.selector.matchLabels)).toBe(true);

    const databaseUrl = container.env.find((e: Json) => e.name === 'DATABASE_URL');
    expect(databaseUrl.value, 'DATABASE_URL never inline').toBeUndefined();
    const ref = databaseUrl.valueFrom.secretKeyRef;
    const example = one('Secret', ref.name);
    expect(Object.keys(example.stringData ?? example.data)).toContain(ref.key);
    expect(configMap.data.DATABASE_URL).toBeUndefined();

    const { requests, limits } = container.resources;
    for (const resource of ['cpu', 'memory']) {
      expect(quantity(requests[resource]), `${resource} request`).toBeGreaterThan(0);
      expect(quantity(limits[resource]), `${resource} limit >= request`).toBeGreaterThanOrEqual(quantity(requests[resource]));
    }
    const heap = /--max-old-space-size=(\d+)/.exec(container.env.find((e: Json) => e.name === 'NODE_OPTIONS')?.value ?? '');
    if (heap) expect(Number(heap[1]) * 2 ** 20, 'heap limit under the memory limit').toBeLessThan(quantity(limits.memory));

    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false);
    expect(app.depends_on.postgres.condition).toBe('service_healthy');
    expect(compose.services.postgres.image).toMatch(/^postgres:15/);
    expect(compose.services.postgres.healthcheck.test.join(' ')).toContain('pg_isready');
  });

  it('the API token comes from a Secret, and a NetworkPolicy admits only clients and Prometheus to the http port', () => {
    const apiToken = container.env.find((e: Json) => e.name === 'API_TOKEN');
    expect(apiToken, 'the StatefulSet sets API_TOKEN').toBeDefined();
    expect(apiToken.value, 'API_TOKEN never inline').toBeUndefined();
    const ref = apiToken.valueFrom.secretKeyRef;
    expect(ref.optional, 'a pod without the token does not start').not.toBe(true);
    const example = one('Secret', ref.name);
    const token = (example.stringData ?? {})[ref.key];
    expect(token, `the example Secret ${ref.name} holds ${ref.key}`).toEqual(expect.any(String));
    expect(configMap.data.API_TOKEN, 'the token is not in the ConfigMap').toBeUndefined();
    expect(app.environment.API_TOKEN, 'nor in compose').toBeUndefined();

    const policy = one('NetworkPolicy');
    const labels = statefulSet.spec.template.metadata.labels;
    expect(Object.entries(policy.spec.podSelector.matchLabels).every(([k, v]) => labels[k] === v), 'selects the demo pods').toBe(true);
    expect(policy.spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
    const port = Number(configMap.data.PORT ?? imageEnv.PORT);
    for (const rule of policy.spec.ingress) {
      expect(rule.from?.length, 'every ingress rule names its sources (none would mean everyone)').toBeGreaterThan(0);
      for (const source of rule.from) expect(source.ipBlock?.cidr, 'no ingress from any address').not.toBe('0.0.0.0/0');
      expect(rule.ports.map((p: Json) => portNumber(p.port, container))).toEqual([port]);
    }
    // Egress: the ports of the Secret's database URLs (DATABASE_URL, and WRITE_BACK_LISTEN_URL when the StatefulSet
    // reads it), and DNS; nothing else.
    const databasePorts = ['DATABASE_URL', 'WRITE_BACK_LISTEN_URL'].flatMap((name) => {
      const ref = container.env.find((e: Json) => e.name === name)?.valueFrom.secretKeyRef;
      const url = ref === undefined ? undefined : one('Secret', ref.name).stringData[ref.key];
      return url === undefined ? [] : [`TCP/${new URL(url).port || 5432}`];
    });
    const egressPorts = policy.spec.egress.flatMap((rule: Json) => rule.ports.map((p: Json) => `${p.protocol}/${p.port}`)).sort();
    expect(egressPorts).toEqual([...new Set(databasePorts), 'TCP/53', 'UDP/53'].sort());
    expect(readFileSync(path.join(DOCKER, 'k8s/kustomization.yaml'), 'utf8')).toContain('networkpolicy.yaml');
  });

  it('the Dockerfile is multi-stage, runs as a non-root user and starts node itself as PID 1', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0];
    const runs = (stage: typeof build) => stage.instructions.filter((i) => i.instruction === 'RUN').map((i) => i.args).join('\n');
    expect(runs(build)).toMatch(/\bnpm ci\b/);
    expect(runs(build)).toMatch(/\bnpm run build\b/);
    expect(runs(runtime)).toMatch(/\bnpm ci\b[^\n]*--omit=dev/);
    const copies = runtime.instructions.filter((i) => i.instruction === 'COPY').map((i) => i.args);
    expect(copies.some((c) => /^--from=\S+\s+\S*dist\s/.test(c)), 'dist comes from the build stage').toBe(true);

    const cmds = runtime.instructions.filter((i) => i.instruction === 'CMD');
    expect(cmds).toHaveLength(1);
    expect(JSON.parse(cmds[0].args), 'exec form, node as PID 1 (npm start would not forward SIGTERM)').toEqual(['node', 'dist/main.js']);
    expect(runtime.instructions.some((i) => i.instruction === 'ENTRYPOINT')).toBe(false);
    const users = runtime.instructions.filter((i) => i.instruction === 'USER').map((i) => i.args.split(':')[0]);
    expect(users.length).toBeGreaterThan(0);
    expect(['root', '0']).not.toContain(users.at(-1));
    expect(runtime.instructions.some((i) => i.instruction === 'WORKDIR')).toBe(true);
    // The user the manifests run as is the image's user.
    expect(users.at(-1)).toBe('node');
    expect(pod.securityContext.runAsUser).toBe(1000);
  });

  it('every file the Dockerfile copies exists and passes .dockerignore; bulky and local files do not', () => {
    const ignored = dockerIgnore(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8'));
    const sources = stages
      .flatMap((stage) => stage.instructions)
      .filter((i) => i.instruction === 'COPY' && !i.args.startsWith('--from'))
      .flatMap((i) => i.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1));
    expect(sources.length).toBeGreaterThan(3);
    for (const source of sources) {
      expect(existsSync(path.join(ROOT, source)), `${source} exists`).toBe(true);
      expect(ignored(source), `${source} is not excluded by .dockerignore`).toBe(false);
    }
    for (const local of ['node_modules', 'node_modules/pg/package.json', 'dist/main.js', '.test-build/1/main.js', '.git', '.data/pglite', 'test/e2e/x.spec.ts']) {
      expect(ignored(local), `${local} stays out of the build context`).toBe(true);
    }
    expect(ignored('src/main.ts')).toBe(false);
  });

  it('the image installs every package the compiled demo imports, at the versions the repository tests', async () => {
    buildDemo();
    const runtimeManifest = JSON.parse(readFileSync(path.join(DOCKER, 'runtime/package.json'), 'utf8'));
    const runtimeLock = JSON.parse(readFileSync(path.join(DOCKER, 'runtime/package-lock.json'), 'utf8'));
    const rootLock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
    expect(runtimeManifest.type).toBe('module');

    const compiled = (await readdir(buildDir(), { recursive: true })).filter((f) => f.endsWith('.js'));
    const imported = new Set<string>();
    for (const file of compiled) {
      const code = readFileSync(path.join(buildDir(), file), 'utf8');
      for (const m of code.matchAll(/(?:from\s*|import\s*\(?\s*)['"]([^'"./][^'"]*)['"]/g)) {
        if (m[1].startsWith('node:')) continue;
        imported.add(m[1].startsWith('@') ? m[1].split('/').slice(0, 2).join('/') : m[1].split('/')[0]);
      }
    }
    expect(imported.size).toBeGreaterThan(5);
    const dependencies = runtimeManifest.dependencies as Record<string, string>;
    for (const name of imported) {
      expect(dependencies, `${name} (imported by the compiled demo) is in docker/runtime/package.json`).toHaveProperty([name]);
    }
    for (const [name, version] of Object.entries(dependencies)) {
      expect(version, `${name}: exact version`).toMatch(/^\d+\.\d+\.\d+$/);
      expect(rootLock.packages[`node_modules/${name}`]?.version, `${name} matches the root lockfile`).toBe(version);
    }
    // The lockfile belongs to this package.json (npm ci refuses otherwise) and agrees with the root lockfile.
    expect(runtimeLock.packages[''].dependencies).toEqual(dependencies);
    for (const [key, entry] of Object.entries<Json>(runtimeLock.packages)) {
      if (key === '' || !rootLock.packages[key]) continue;
      expect(entry.version, `${key} in docker/runtime/package-lock.json`).toBe(rootLock.packages[key].version);
    }
  }, 180_000);
});

describe("the image's start command as a plain process", () => {
  let stage: string;
  let how: string;

  beforeAll(async () => {
    buildDemo();
    // Laid out like the runtime stage: docker/runtime's package.json and lockfile, `npm ci --omit=dev`, and
    // dist/ without maps or typings. Falls back to the repository (all dev dependencies) without a registry.
    stage = await tempDir('write-back-image-');
    await copyFile(path.join(DOCKER, 'runtime/package.json'), path.join(stage, 'package.json'));
    await copyFile(path.join(DOCKER, 'runtime/package-lock.json'), path.join(stage, 'package-lock.json'));
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)));
    const failures: string[] = [];
    for (const mode of ['--offline', '--prefer-offline']) {
      try {
        await run('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', mode], { cwd: stage, env, timeout: 150_000 });
        how = `runtime stage laid out in ${stage} (npm ci --omit=dev ${mode})`;
        break;
      } catch (error) {
        failures.push(`${mode}: ${String((error as Error).message).split('\n')[0]}`);
      }
    }
    if (how === undefined) {
      console.warn(`[deploy-files] npm ci of docker/runtime failed (${failures.join('; ')}); running from the repository instead`);
      stage = ROOT;
      how = 'repository checkout (npm ci of docker/runtime was not possible)';
      return;
    }
    await cp(buildDir(), path.join(stage, 'dist'), {
      recursive: true,
      filter: (source) => !source.endsWith('.map') && !source.endsWith('.d.ts'),
    });
  }, 240_000);

  it('starts with the ConfigMap settings (wal-sync) and answers the probes with 200, then drains on SIGTERM', async () => {
    const runtime = dockerStages(readFileSync(path.join(DOCKER, 'Dockerfile'), 'utf8')).at(-1)!;
    const [command, ...args] = JSON.parse(runtime.instructions.find((i) => i.instruction === 'CMD')!.args) as string[];
    expect(command).toBe('node');
    const { documents } = yamlFiles().find((f) => f.file === 'docker/k8s/configmap.yaml')!;
    const statefulSet = yamlFiles().find((f) => f.file === 'docker/k8s/statefulset.yaml')!.documents[0];
    const container = statefulSet.spec.template.spec.containers[0];
    const containerEnv = Object.fromEntries(container.env.filter((e: Json) => 'value' in e).map((e: Json) => [e.name, e.value]));

    const scratch = await tempDir('write-back-volume-');
    const schema = freshSchema();
    const port = await freePort();
    const base = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^(WRITE_BACK_|DATABASE_URL$|PORT$|HOST$|API_TOKEN$|NODE_OPTIONS$|NODE_ENV$)/.test(name)));
    // The API token the StatefulSet reads from its Secret (the example's value stands in for the real one).
    const tokenRef = container.env.find((e: Json) => e.name === 'API_TOKEN').valueFrom.secretKeyRef;
    const secrets = yamlFiles().find((f) => f.file === 'docker/k8s/secret.example.yaml')!.documents;
    const apiToken = secrets.find((doc) => doc.metadata.name === tokenRef.name).stringData[tokenRef.key] as string;
    const env = {
      ...base,
      ...envOf(runtime.instructions),
      ...documents[0].data,
      ...containerEnv,
      // What the cluster provides differently here: the Secret's URL, a free port, the volume in a temp dir.
      DATABASE_URL: databaseUrl(),
      API_TOKEN: apiToken,
      WRITE_BACK_SCHEMA: schema,
      PORT: String(port),
      WRITE_BACK_WAL_DIR: path.join(scratch, 'wal'),
      WRITE_BACK_DEMO_DATA_DIR: path.join(scratch, 'pglite'),
    };
    expect(env.WRITE_BACK_DURABILITY).toBe('wal-sync');

    // In the fallback (no runtime stage) the compiled demo is this worker's build, not dist/.
    const entry = stage === ROOT ? [demoMain()] : args;
    const child = spawn(process.execPath, entry, { cwd: stage, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout!.on('data', (chunk) => (output += chunk));
    child.stderr!.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
    const url = `http://127.0.0.1:${port}`;
    try {
      // What the startup probe does: poll its path until 200.
      const startup = container.startupProbe.httpGet.path;
      const started = async () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode} before serving (${how}):\n${output}`);
        return fetch(url + startup).then((r) => r.status === 200, () => false);
      };
      await until(started, 60_000, () => `${startup} to answer 200 (${how}):\n${output}`);
      console.log(`[deploy-files] ${command} ${args.join(' ')} from the ${how}`);
      for (const probe of ['readinessProbe', 'livenessProbe']) {
        const response = await fetch(url + container[probe].httpGet.path);
        expect(response.status, `${probe} ${container[probe].httpGet.path}`).toBe(200);
        expect(((await response.json()) as { status: string }).status).toBe('ok');
      }
      // The runtime packages cover the whole demo: the API, OpenAPI and metrics.
      const unauthorized = await fetch(`${url}/kv/image-check`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '"no"' });
      expect(unauthorized.status, 'writes need the token from the Secret').toBe(401);
      const put = await fetch(`${url}/kv/image-check`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${apiToken}` },
        body: '{"ok":true}',
      });
      expect(put.status).toBe(204);
      expect((await readdir(path.join(scratch, 'wal'))).some((f) => f.endsWith('.log')), 'wal-sync wrote a WAL segment').toBe(true);
      expect((await fetch(`${url}/docs-json`)).status).toBe(200);
      expect(await (await fetch(`${url}/metrics`)).text()).toContain('write_back_writes_total');

      child.kill('SIGTERM');
      expect(await exited, output).toBe(0);
      expect(output).toMatch(/Shutdown drain flushed 1 entries/);
      const sql = await connectSql(schema);
      try {
        expect((await tableRows(sql)).get('image-check')?.value).toEqual({ ok: true });
      } finally {
        await sql.end();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  }, 120_000);
});
