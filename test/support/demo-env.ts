/** The variables the demo reads; cleared before each boot so the outer environment cannot leak in. */
export const DEMO_ENV = /^(WRITE_BACK_|DATABASE_URL$|PORT$|HOST$|API_TOKEN$)/;

/** The demo's variables in `env`, for checking a spec left process.env as it found it. */
export const demoEnvOf = (env: NodeJS.ProcessEnv) => Object.entries(env).filter(([name]) => DEMO_ENV.test(name));

/** Runs `work` with exactly `env` as the demo's variables, then restores process.env as it was. */
export async function withDemoEnv<T>(env: Record<string, string>, work: () => Promise<T>): Promise<T> {
  const saved = { ...process.env };
  for (const name of Object.keys(process.env)) if (DEMO_ENV.test(name)) delete process.env[name];
  Object.assign(process.env, env);
  try {
    return await work();
  } finally {
    for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
    Object.assign(process.env, saved);
  }
}
