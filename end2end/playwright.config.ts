import { defineConfig } from '@playwright/test';
import * as path from 'path';

// The dashboards under test, release builds of `carrier serve`:
// - over examples/cluster (as scripts/serve runs it, `--anonymous-read`), with a fresh
//   database and cache in .local/e2e, for every spec but lab.spec.ts;
// - over a lab of examples/lab (end2end/serve-lab: real sshd hosts, real Nix), in
//   .local/e2e-lab, for lab.spec.ts: deploys there really build, copy and switch.
// The specs add their accounts to a server's database with `carrier user add`.
const port = Number(process.env.CARRIER_E2E_PORT ?? 3197);
const labPort = port + 1;
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
    { name: 'js', testIgnore: /lab\.spec\.ts/, use: { ...chromium, javaScriptEnabled: true } },
    { name: 'nojs', testIgnore: /lab\.spec\.ts/, use: { ...chromium, javaScriptEnabled: false } },
    {
      name: 'lab-js', testMatch: /lab\.spec\.ts/,
      use: { ...chromium, javaScriptEnabled: true, baseURL: `http://127.0.0.1:${labPort}` },
    },
    {
      name: 'lab-nojs', testMatch: /lab\.spec\.ts/,
      use: { ...chromium, javaScriptEnabled: false, baseURL: `http://127.0.0.1:${labPort}` },
    },
  ],
  webServer: [{
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
  }, {
    command: `${root}/end2end/serve-lab ${labPort}`,
    url: `http://127.0.0.1:${labPort}/healthz`,
    timeout: 300_000,
    reuseExistingServer: false,
    // serve-lab takes its lab down on SIGTERM
    gracefulShutdown: { signal: 'SIGTERM', timeout: 30_000 },
    stdout: 'pipe',
    stderr: 'pipe',
  }],
});
