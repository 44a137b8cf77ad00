import { defineConfig } from '@playwright/test';
import * as path from 'path';

// The dashboard under test: a release build of `carrier serve --anonymous-read` over
// examples/cluster (as scripts/serve runs it), with a fresh database and cache in
// .local/e2e; accounts.spec.ts adds its accounts to that database with `carrier user add`.
const port = Number(process.env.CARRIER_E2E_PORT ?? 3197);
const root = path.resolve(__dirname, '..');
const state = path.join(root, '.local', 'e2e');

const chromium = {
  browserName: 'chromium' as const,
  launchOptions: {
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
    ],
  },
};

export default defineConfig({
  testDir: './tests',
  timeout: 30_000,
  workers: 1,
  retries: 0,
  use: { baseURL: `http://127.0.0.1:${port}` },
  projects: [
    { name: 'js', use: { ...chromium, javaScriptEnabled: true } },
    { name: 'nojs', use: { ...chromium, javaScriptEnabled: false } },
  ],
  webServer: {
    command:
      `rm -rf ${state} && mkdir -p ${state} && ${root}/target/release/carrier --config ${root}/examples/cluster ` +
      `--cache-dir ${state}/cache serve --addr 127.0.0.1:${port} ` +
      `--database-url sqlite://${state}/carrier.db --site-root ${root}/target/site --anonymous-read ` +
      // the example's hosts do not exist: the status page does not read them
      `--status-interval 0`,
    url: `http://127.0.0.1:${port}/machines`,
    timeout: 120_000,
    reuseExistingServer: false,
    stdout: 'pipe',
    stderr: 'pipe',
  },
});
