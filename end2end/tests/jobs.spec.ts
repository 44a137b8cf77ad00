import { test, expect, Page } from '@playwright/test';
import { account, hydrated, signIn } from './support';

// Deploys as jobs in the browser, with and without JavaScript: a deployer picks machines,
// starts a deploy, lands on the job's page and sees it to its end (live with JavaScript,
// by reloading without); a viewer's direct POST to the deploy server function is refused.
// The dashboard serves examples/cluster, whose machines cannot be built here (no nixpkgs):
// the job fails in its build, which is what the page must then show. Deploys that succeed
// against real hosts are proven in server/tests/jobs.rs.

async function signInAs(page: Page, name: string) {
  await signIn(page, name);
  await expect(page).toHaveURL(/\/machines$/);
}

test('a deployer starts a deploy and follows its job to the end', async ({ page, javaScriptEnabled }, info) => {
  test.setTimeout(120_000);
  await signInAs(page, account('deployer', info.project.name));
  await expect(page.getByTestId('nav-deploy')).toBeVisible();
  await page.goto('/deploy?pattern=backup');
  await expect(page.getByTestId('deploy-preview').locator('tr[data-machine="backup"]')).toBeVisible();
  if (javaScriptEnabled) await hydrated(page);
  await page.getByTestId('start-deploy').click();
  await expect(page).toHaveURL(/\/jobs\/\d+$/);
  await expect(page.getByTestId('job-title')).toContainText('switch backup');
  if (javaScriptEnabled) {
    // no reload: the log and the final state arrive over the event stream
    await hydrated(page);
    await expect(page.getByTestId('job-state')).toHaveText(/failed/, { timeout: 90_000 });
  } else {
    await expect(async () => {
      await page.reload();
      await expect(page.getByTestId('job-state')).toHaveText(/failed/, { timeout: 1000 });
    }).toPass({ timeout: 90_000 });
  }
  await expect(page.getByTestId('job-log')).toContainText('build');
  await expect(page.getByTestId('job-error')).not.toBeEmpty();
  // the history lists it
  const id = page.url().split('/').pop();
  await page.goto('/jobs?machine=backup');
  await expect(page.locator(`tr[data-job="${id}"]`)).toContainText('failed');
});

test("a viewer sees no deploy control, and its direct POST to the deploy server function is refused", async ({ page }, info) => {
  await signInAs(page, account('viewer', info.project.name));
  await expect(page.getByTestId('caller')).toContainText('(viewer)');
  await expect(page.getByTestId('nav-deploy')).toHaveCount(0);
  await page.goto('/deploy?pattern=backup');
  await expect(page.getByTestId('deploy-preview').locator('tr[data-machine="backup"]')).toBeVisible();
  await expect(page.getByTestId('deploy-needs-role')).toBeVisible();
  await expect(page.getByTestId('start-deploy')).toHaveCount(0);
  const r = await page.request.post('/api/start_deploy', {
    headers: { origin: new URL(page.url()).origin },
    form: { 'form[pattern]': 'backup', 'form[action]': 'switch' },
  });
  expect(r.status()).toBe(403);
  await page.goto('/jobs?machine=backup');
  await expect(page.getByTestId('jobs')).not.toContainText('viewer-');
});
