import { test, expect, Page } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';
import { account, carrierOn, hydrated, lab, signIn } from './support';

// The dashboard over a real lab (end2end/serve-lab: sshd hosts with their own /nix, real
// nix-build, a carrier whose on-change hook rebuilds its netboot trees), with and without
// JavaScript: a deployer deploys a carried machine and follows the job to its success; the
// carrier's page then shows the new generation as current, and the boot preview of the
// machine's MAC, asked of the carrier, names that generation; the status page shows it
// staged. A deploy from the command line (on the dashboard's database) joins the same
// history. The deployer removes the older generation from the carrier page, as a job.
// A deployer scoped to another machine is refused.

const MAC = '52:54:00:12:34:56';

/// Changes node1's configuration, so that its deploy makes a new generation.
function changeNode1(marker: string) {
  const file = path.join(lab.config, 'cluster', 'node1', 'config.nix');
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, text.replace(/confctl\.marker = "[^"]*"/, `confctl.marker = "${marker}"`));
}

/// node1's carried profile on pxe, as the carrier page's JSON says: its generations, newest
/// first (none before its first deploy or the first reading).
async function node1Generations(page: Page): Promise<{ number: number; current: boolean; store_path: string }[]> {
  const r = await page.request.get('/carriers/pxe', { headers: { accept: 'application/json' } });
  expect(r.status()).toBe(200);
  const carrier = await r.json();
  const profile = carrier.profiles.find((p: { machine: string }) => p.machine === 'pxe#node1');
  return profile ? profile.generations : [];
}

test('a deployer deploys a carried machine; the carrier page and the boot preview show its new generation', async ({ page, javaScriptEnabled }, info) => {
  test.setTimeout(300_000);
  await signIn(page, account('deployer', info.project.name, lab));
  await expect(page).toHaveURL(/\/machines$/);
  // first a deploy from the command line: a generation to remove later, and a CLI run in
  // the history (the carrier is read every 5 s)
  const newestNumber = async () => Math.max(0, ...(await node1Generations(page)).map((g) => g.number));
  const start = await newestNumber();
  changeNode1(`${info.project.name}-cli-${Date.now()}`);
  carrierOn(lab, 'deploy', '--ssh-config', `${lab.state}/lab/ssh_config`, '-y', 'pxe#node1');
  await expect(async () => expect(await newestNumber()).toBeGreaterThan(start)).toPass({ timeout: 60_000 });
  const before = await newestNumber();
  changeNode1(`${info.project.name}-${Date.now()}`);

  await page.goto('/deploy?pattern=' + encodeURIComponent('pxe#node1'));
  const row = page.getByTestId('deploy-preview').locator('tr[data-machine="pxe#node1"]');
  await expect(row.locator('td.would-get')).toContainText('a new build');
  if (javaScriptEnabled) await hydrated(page);
  await page.getByTestId('start-deploy').click();
  await expect(page).toHaveURL(/\/jobs\/\d+$/);
  if (javaScriptEnabled) {
    await hydrated(page);
    await expect(page.getByTestId('job-state')).toHaveText(/succeeded/, { timeout: 240_000 });
  } else {
    await expect(async () => {
      await page.reload();
      await expect(page.getByTestId('job-state')).toHaveText(/succeeded/, { timeout: 1000 });
    }).toPass({ timeout: 240_000 });
  }
  await expect(page.getByTestId('job-log')).toContainText('carried profile done');

  // the carrier is read again when a job ends: the new generation appears as current
  let newest = { number: 0, current: false, store_path: '' };
  await expect(async () => {
    newest = (await node1Generations(page))[0];
    expect(newest.number).toBe(before + 1);
    expect(newest.current).toBe(true);
  }).toPass({ timeout: 60_000 });
  await page.goto('/carriers/pxe');
  const current = page.locator(`table[data-profile="node1"] tr[data-generation="${newest.number}"]`);
  await expect(current).toContainText('current');
  await expect(current).toContainText(MAC);
  await expect(page.getByTestId('netboot-last-build')).toContainText('published');

  // the boot preview of its MAC, a plain GET form
  await page.fill('input[name=mac]', MAC);
  await page.click('form[data-testid=boot-preview-form] button[type=submit]');
  await expect(page).toHaveURL(/\?mac=/);
  const preview = page.getByTestId('boot-preview');
  await expect(preview).toContainText(`generation ${newest.number} by default: ${newest.store_path}`);
  await expect(preview).toContainText('pxelinux.cfg/01-52-54-00-12-34-56');

  // the status page shows it staged
  await page.goto('/status');
  await expect(page.locator('tr[data-machine="pxe#node1"]')).toContainText('staged');

  // the history: the job's run, linked to it, and the command line's run before it
  await page.goto('/history?machine=' + encodeURIComponent('pxe#node1'));
  const runs = page.getByTestId('history').locator('tbody tr');
  await expect(runs.first()).toContainText('job ');
  await expect(runs.nth(1)).not.toContainText('carrier serve');
  await expect(runs.nth(1)).toContainText('succeeded');

  // the generation before, removed from the carrier page as a job
  await page.goto('/carriers/pxe');
  const older = page.locator(`table[data-profile="node1"] tr[data-generation="${newest.number - 1}"]`);
  await older.getByRole('button', { name: 'Remove' }).click();
  await expect(page).toHaveURL(/\/jobs\/\d+$/);
  await expect(page.getByTestId('job-title')).toContainText('pxe#node1');
  await expect(async () => {
    await page.reload();
    await expect(page.getByTestId('job-state')).toHaveText(/succeeded/, { timeout: 1000 });
  }).toPass({ timeout: 120_000 });
  await expect(async () => {
    const numbers = (await node1Generations(page)).map((g) => g.number);
    expect(numbers).not.toContain(newest.number - 1);
    expect(numbers).toContain(newest.number);
  }).toPass({ timeout: 60_000 });
});

test('a deployer scoped to another machine cannot deploy this one', async ({ page }, info) => {
  await signIn(page, account('deployer', info.project.name, lab, 'os1'));
  await expect(page).toHaveURL(/\/machines$/);
  const r = await page.request.post('/api/start_deploy', {
    headers: { origin: new URL(page.url()).origin },
    form: { 'form[pattern]': 'pxe#node1', 'form[action]': 'switch' },
  });
  expect(r.status()).toBe(403);
  expect(await r.text()).toContain('pxe#node1');
});
