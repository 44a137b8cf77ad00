import { Page } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

// What the specs share: the real CLI on the database of the server under test
// (playwright.config.ts), fresh accounts, sign-in, and waiting for hydration.

const root = path.resolve(__dirname, '..', '..');
export const password = 'correct horse battery';

/// A dashboard under test (playwright.config.ts): its configuration directory and state.
export type Served = { config: string; state: string };
export const example: Served = {
  config: path.join(root, 'examples', 'cluster'),
  state: path.join(root, '.local', 'e2e'),
};
export const lab: Served = {
  config: path.join(root, '.local', 'e2e-lab', 'conf'),
  state: path.join(root, '.local', 'e2e-lab'),
};

export function carrierOn(served: Served, ...args: string[]): string {
  return execFileSync(
    path.join(root, 'target', 'release', 'carrier'),
    ['--config', served.config, '--cache-dir', path.join(served.state, 'cache'),
      '--database-url', `sqlite://${served.state}/carrier.db`, ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  ).toString();
}

export function carrier(...args: string[]): string {
  return carrierOn(example, ...args);
}

/// A fresh account per test and project: names never collide across runs of the suite.
export function account(role: string, project: string, served = example, scope?: string): string {
  const name = `${role}-${project}-${Math.random().toString(36).slice(2, 8)}`;
  const file = path.join(served.state, `${name}.password`);
  fs.writeFileSync(file, password + '\n', { mode: 0o600 });
  const extra = scope ? ['--scope', scope] : [];
  carrierOn(served, 'user', 'add', name, '--role', role, ...extra, '--password-file', file);
  return name;
}

// Hydration starts on an idle callback after the load event: wait until the WASM was
// fetched, the network is quiet and the main thread has been idle once more.
export async function hydrated(page: Page) {
  await page.waitForFunction(() =>
    performance.getEntriesByType('resource').some((e) => e.name.endsWith('.wasm')));
  await page.waitForLoadState('networkidle');
  await page.evaluate(() => new Promise((r) => requestIdleCallback(() => r(null), { timeout: 3000 })));
}

export async function signIn(page: Page, name: string, pass = password) {
  await page.goto('/sign-in');
  await page.fill('input[name=name]', name);
  await page.fill('input[name=password]', pass);
  await page.click('form[data-testid=sign-in] button[type=submit]');
}

