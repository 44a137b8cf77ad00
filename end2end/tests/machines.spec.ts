import { test, expect, Page } from '@playwright/test';
import { hydrated } from './support';

// Runs twice: in the `js` project (the pages' islands hydrated by the WASM) and in the
// `nojs` project (plain server-rendered HTML and GET forms).

async function machineNames(page: Page): Promise<string[]> {
  return page.locator('tr[data-machine]').evaluateAll((rows) =>
    rows.map((r) => r.getAttribute('data-machine') ?? ''),
  );
}

test('the machines page lists every machine, carried ones included, in name order', async ({ page }) => {
  await page.goto('/machines');
  await expect(page.locator('h1')).toHaveText('Machines');
  const names = await machineNames(page);
  for (const n of ['backup', 'prg/web1', 'pxe-server', 'pxe-server#node1', 'pxe-server#rescue']) {
    expect(names).toContain(n);
  }
  expect(names).toEqual([...names].sort());
  await expect(page.getByTestId('machine-count')).toHaveText(`${names.length} of ${names.length} machines`);
  const carried = page.locator('tr[data-machine="pxe-server#node1"]');
  await expect(carried.locator('td').nth(1)).toHaveText('vpsadminos');
  await expect(carried.locator('td').nth(3)).toHaveText('pxe-server');
});

test('the pattern filter narrows the list on the server', async ({ page }) => {
  // a plain GET form, with JavaScript too (the page has no island)
  await page.goto('/machines');
  await page.fill('input[name=pattern]', 'pxe-server#*');
  await page.click('form[data-testid=filter] button[type=submit]');
  await expect(page).toHaveURL(/pattern=pxe-server%23\*/);
  await expect(page.locator('tr[data-machine]')).toHaveCount(2);
  expect(await machineNames(page)).toEqual(['pxe-server#node1', 'pxe-server#rescue']);
  await expect(page.locator('input[name=pattern]')).toHaveValue('pxe-server#*');
});

test('tags and attributes filter like the CLI', async ({ page }) => {
  await page.goto('/machines?tags=netboot+%5Erescue&managed=all');
  expect(await machineNames(page)).toEqual(['pxe-server#node1']);
  await page.goto('/machines?attrs=labels.dc%3Dbrq');
  expect(await machineNames(page)).toEqual(['backup']);
});

test('a bad filter shows an error naming the value', async ({ page }) => {
  await page.goto('/machines');
  await page.fill('input[name=attrs]', 'nonsense');
  await page.click('form[data-testid=filter] button[type=submit]');
  await expect(page.getByRole('alert')).toContainText("invalid --attr 'nonsense'");
  await expect(page.locator('tr[data-machine]')).toHaveCount(0);
});

test('a carried machine page names its carrier and lists every option', async ({ page }) => {
  await page.goto('/machines');
  await page.click('a[href="/machines/pxe-server%23node1"]');
  await expect(page.getByTestId('machine-name')).toHaveText('pxe-server#node1');
  await expect(page.getByTestId('carried-by')).toHaveText('pxe-server');
  await expect(page.locator('table[data-testid=options]')).toContainText('buildAttribute');
  await expect(page.locator('table[data-testid=options]')).toContainText('["system","build","dist"]');
  await expect(page.getByTestId('profile')).toHaveText('/nix/var/nix/profiles/confctl-node1');
  // the source machine lists where it is carried
  await page.click('dd >> a[href="/machines/prg%2Fnode1"]');
  await expect(page.getByTestId('machine-name')).toHaveText('prg/node1');
  await expect(page.locator('tr[data-carried="pxe-server#node1"]')).toContainText('/nix/var/nix/profiles/confctl-node1');
});

test('the carriers page shows carried machines with alias, build attribute and profile', async ({ page }) => {
  await page.goto('/carriers');
  const section = page.locator('section[data-carrier="pxe-server"]');
  await expect(section).toContainText('2 carried machines');
  const node1 = section.locator('tr[data-carried="pxe-server#node1"]');
  await expect(node1).toContainText('prg/node1');
  await expect(node1).toContainText('system.build.dist');
  await expect(node1).toContainText('/nix/var/nix/profiles/confctl-node1');
  await expect(section.locator('tr[data-carried="pxe-server#rescue"]')).toContainText('/nix/var/nix/profiles/confctl-rescue');
});

test('the islands hydrate under the Content-Security-Policy, without violations', async ({ page, javaScriptEnabled }) => {
  const errors: string[] = [];
  page.on('console', (m) => {
    // a panic while hydrating is logged as an error too
    if (m.type() === 'error' || /Content Security Policy|Refused to/i.test(m.text())) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(e.message));
  // an init script is injected by the browser's debugging protocol, outside the CSP
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      const w = window as any;
      w.__cspViolations = [...(w.__cspViolations ?? []), `${e.violatedDirective} ${e.blockedURI}`];
    });
  });
  // the status page's counts and tables are an island (it reads itself again)
  const response = await page.goto('/status');
  const csp = response!.headers()['content-security-policy'];
  expect(csp).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9_-]+' 'wasm-unsafe-eval'/);
  expect(csp).toContain("frame-ancestors 'none'");
  expect(response!.headers()['x-frame-options']).toBe('DENY');
  expect(response!.headers()['x-content-type-options']).toBe('nosniff');
  await expect(page.locator('leptos-island')).toHaveCount(1);
  if (javaScriptEnabled) {
    await hydrated(page);
    // the loader ran the WASM module (it defines this once the module is imported)
    expect(await page.evaluate(() => typeof (window as any).__hydrateIsland)).toBe('function');
    expect(await page.evaluate(() => (window as any).__cspViolations ?? [])).toEqual([]);
  }
  expect(errors).toEqual([]);
});
