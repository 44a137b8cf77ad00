import { test, expect } from '@playwright/test';
import { account, carrier, hydrated, password, signIn } from './support';

// Accounts in the browser, with and without JavaScript (both projects): sign-in, the
// header, tokens shown once, an admin signing a user out, a viewer's direct POST to an
// admin server function. The accounts are added with the real CLI to the database the
// server under test uses (playwright.config.ts).

test('sign in and out', async ({ page }, info) => {
  const name = account('viewer', info.project.name);
  await signIn(page, name, 'not the password');
  await expect(page).toHaveURL(/\/sign-in\?failed=wrong/);
  await expect(page.getByTestId('sign-in-error')).toHaveText('Wrong name or password.');
  await signIn(page, 'nobody-' + name, password);
  await expect(page.getByTestId('sign-in-error')).toHaveText('Wrong name or password.');

  await signIn(page, name);
  await expect(page).toHaveURL(/\/machines$/);
  await expect(page.getByTestId('caller')).toHaveText(`${name} (viewer)`);
  const cookie = (await page.context().cookies()).find((c) => c.name === 'carrier_session');
  expect(cookie?.httpOnly).toBe(true);
  expect(cookie?.sameSite).toBe('Lax');

  await page.getByTestId('sign-out').click();
  await expect(page).toHaveURL(/\/sign-in$/);
  expect((await page.context().cookies()).find((c) => c.name === 'carrier_session')).toBeUndefined();
  await page.goto('/machines');
  await expect(page.getByTestId('caller')).toHaveCount(0);
});

test('a token is shown once', async ({ page, javaScriptEnabled }, info) => {
  // without JavaScript the form posts and the server redirects back: the answer (the
  // secret) has nowhere to go, so token creation needs JavaScript
  test.skip(!javaScriptEnabled, 'showing the new secret needs JavaScript');
  const name = account('deployer', info.project.name);
  await signIn(page, name);
  await page.goto('/account');
  await hydrated(page);
  await page.fill('form[data-testid=create-token] input[name=name]', 'ci');
  await page.selectOption('form[data-testid=create-token] select[name=rights]', 'viewer');
  await page.click('form[data-testid=create-token] button[type=submit]');
  const secret = page.getByTestId('new-token');
  await expect(secret).toHaveText(/^[0-9a-f]{64}$/);
  const value = await secret.textContent();
  await expect(page.locator('tr[data-token=ci]')).toContainText('viewer');
  // the token works as a bearer
  const answer = await page.request.post('/api/list_carriers', {
    headers: { authorization: `Bearer ${value}` },
  });
  expect(answer.status()).toBe(200);
  await page.reload();
  await expect(page.locator('tr[data-token=ci]')).toHaveCount(1);
  await expect(page.getByTestId('new-token')).toHaveCount(0);
  expect(await page.content()).not.toContain(value!);
});

test('an admin signs a user out; their next page load is signed out', async ({ browser }, info) => {
  const user = account('viewer', info.project.name);
  const admin = account('admin', info.project.name);
  const options = { baseURL: info.project.use.baseURL, javaScriptEnabled: info.project.use.javaScriptEnabled };
  const userPage = await (await browser.newContext(options)).newPage();
  await signIn(userPage, user);
  await expect(userPage.getByTestId('caller')).toHaveText(`${user} (viewer)`);

  const adminPage = await (await browser.newContext(options)).newPage();
  await signIn(adminPage, admin);
  await adminPage.goto('/admin/users');
  if (info.project.use.javaScriptEnabled) await hydrated(adminPage);
  await adminPage.locator(`tr[data-user="${user}"]`).getByTestId('revoke-sessions').click();
  await adminPage.waitForLoadState('networkidle');
  await expect.poll(() => carrier('audit', '--json', '--action', 'user.sign-out')).toContain(user);

  await userPage.reload();
  await expect(userPage.getByTestId('caller')).toHaveCount(0);
  await userPage.goto('/account');
  await expect(userPage).toHaveURL(/\/sign-in$/);
});

test("a viewer's direct POST to an admin server function is refused", async ({ page, javaScriptEnabled }, info) => {
  const name = account('viewer', info.project.name);
  await signIn(page, name);
  await page.goto('/machines');
  // from the dashboard's own page, with its session cookie: only the role is missing
  let status: number;
  if (javaScriptEnabled) {
    status = await page.evaluate(async () => {
      const r = await fetch('/api/set_user_role', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'name=admin&role=viewer&scope=',
      });
      return r.status;
    });
  } else {
    // without JavaScript there is no fetch: post as a form of the page would
    const r = await page.request.post('/api/set_user_role', {
      headers: { origin: new URL(page.url()).origin },
      form: { name: 'admin', role: 'viewer', scope: '' },
    });
    status = r.status();
  }
  expect(status).toBe(403);
  await page.goto('/admin/users');
  await expect(page.locator('body')).toContainText('forbidden');
});

test('a cross-site form post is refused', async ({ page }, info) => {
  const name = account('viewer', info.project.name);
  // a page of another site (served by the test itself) posts the sign-in form to the
  // dashboard: login CSRF
  const target = `${info.project.use.baseURL}/sign-in`;
  await page.route('http://evil.example/', (route) => route.fulfill({
    contentType: 'text/html',
    body: `<form method=post action="${target}"><input name=name value="${name}">` +
      `<input name=password value="${password}"><button>go</button></form>`,
  }));
  await page.goto('http://evil.example/');
  const answer = page.waitForResponse((r) => r.url() === target && r.request().method() === 'POST');
  await page.click('button');
  const response = await answer;
  expect((await response.request().allHeaders())['origin']).toBe('http://evil.example');
  expect(response.status()).toBe(403);
  expect((await page.context().cookies()).find((c) => c.name === 'carrier_session')).toBeUndefined();
});
