// End-to-end test of the console in a real browser (Debian's Chromium, driven by playwright-core)
// against a real sandbox: three members in three browser sessions. Run by tests/e2e/console.rs,
// which starts the sandbox and passes:
//   CGS_URL          the sandbox's URL
//   CGS_MEMBERS      the sandbox's members/ directory (isv.key, data-provider.key, code-provider.key)
//   CGS_EXPECTED     "name blake3" lines measured from the local plugin build
//   CGS_PLUGIN       a plugin component to publish, and CGS_PLUGIN_MEASURED its "name version blake3"
//   CGS_SCREENSHOTS  where to write one screenshot per page (optional)
//   CHROMIUM         the browser (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';

const url = process.env.CGS_URL;
const members = process.env.CGS_MEMBERS;
const expected = process.env.CGS_EXPECTED || '';
const shots = process.env.CGS_SCREENSHOTS;
if (!url || !members) throw new Error('CGS_URL and CGS_MEMBERS are required');
if (shots) mkdirSync(shots, { recursive: true });

const step = (s) => console.log(`console test: ${s}`);
const consoleErrors = [];
function fail(msg) {
  throw new Error(consoleErrors.length ? `${msg}; the pages logged: ${consoleErrors.join(' | ')}` : msg);
}

/** Wait until `locator`'s text matches `re` (the page updates asynchronously). */
async function expectText(locator, re, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let last = '';
  while (Date.now() < deadline) {
    try {
      last = (await locator.first().textContent({ timeout: 1000 })) || '';
      if (re.test(last)) return last;
    } catch (_) {
      /* not there yet */
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const alerts = await locator.page().getByRole('alert').allTextContents().catch(() => []);
  fail(`${what}: expected ${re}, the page shows ${JSON.stringify(last.slice(0, 400))}${alerts.length ? `; errors on the page: ${alerts.join(' | ')}` : ''}`);
}

async function shot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

async function session(name) {
  // The sandbox's certificate is self-signed: the test trusts it like a member who imported it.
  const ctx = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(`${name}: ${m.text()}`));
  page.on('pageerror', (e) => consoleErrors.push(`${name}: ${e.message}`));
  await page.goto(`${url}/console/`);
  return page;
}

async function signIn(page, name) {
  await page.setInputFiles('#keyfile', join(members, `${name}.key`));
  await page.getByRole('button', { name: 'Sign in as member' }).click();
  await expectText(page.getByTestId('signed-in'), new RegExp(`Signed in as ${name} \\(member\\)`), `${name} signs in`);
}

try {
  // ---- sign in: a bad key file and a bad JWT get the error, then the key file works ----
  const isv = await session('isv');
  await shot(isv, 'signin');
  await isv.setInputFiles('#keyfile', { name: 'bad.key', mimeType: 'text/plain', buffer: Buffer.from('not a key') });
  await isv.getByRole('button', { name: 'Sign in as member' }).click();
  await expectText(isv.getByRole('alert'), /not a PKCS#8 PEM private key/, 'a bad key file is refused');
  await isv.fill('#jwt', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.');
  await isv.getByRole('button', { name: 'Sign in as user' }).click();
  await expectText(isv.getByRole('alert'), /\(401\)/, "a JWT the service does not trust is refused with the service's message");
  step('bad key file and bad JWT refused');
  await signIn(isv, 'isv');

  // ---- service page: checks done in the browser; the expected hashes from our own build ----
  await expectText(isv.getByTestId('attestation-checks'), /node signature over the plugin set\s*verified/, 'the node signature verifies');
  await expectText(isv.getByTestId('attestation-checks'), /report_data binds the node key\s*verified/, 'report_data binds the node key');
  await expectText(isv.getByTestId('attestation-checks'), /checkpoint key is the attested key\s*verified/, 'the checkpoint key is the attested key');
  const wrong = 'contracts 0000000000000000000000000000000000000000000000000000000000000000';
  const mine = expected
    .split('\n')
    .filter((l) => !l.startsWith('contracts '))
    .concat([wrong])
    .join('\n');
  await isv.fill('#expected', mine);
  await isv.getByRole('button', { name: 'Compare' }).click();
  await expectText(isv.locator('tr[data-plugin="audit"] .verdict'), /^matches$/, 'the audit plugin matches our build');
  await expectText(isv.locator('tr[data-plugin="contracts"] .verdict'), /^DIFFERS/, 'a wrong expected hash is shown as differing');
  await isv.fill('#expected', expected);
  await isv.getByRole('button', { name: 'Compare' }).click();
  await expectText(isv.locator('tr[data-plugin="contracts"] .verdict'), /^matches$/, 'the contracts plugin matches our build');
  await shot(isv, 'service');
  step('service page: signature, report_data, checkpoint key and plugin hashes checked in the browser');

  await isv.getByRole('link', { name: 'Members' }).click();
  await expectText(isv.locator('table'), /data-provider[\s\S]*Active/, 'the members are listed');
  await shot(isv, 'members');

  // ---- a draft: created, then a stale edit is refused (412) ----
  await isv.getByRole('link', { name: 'Contracts' }).click();
  await isv.fill('#new-id', 'browser-demo');
  await isv.fill('#new-data', '{"purpose": "analytics on shared sales", "parties": ["Fabrikam", "Northwind"]}');
  await isv.fill('#users', 'https://idp.example|analyst');
  await isv.getByRole('button', { name: 'Create draft' }).click();
  await expectText(isv.getByTestId('contract-state'), /Draft/, 'the draft is created');
  await isv.getByRole('button', { name: 'Edit draft' }).click();
  // Meanwhile data-provider edits the same draft in their own session.
  const dp = await session('data-provider');
  await signIn(dp, 'data-provider');
  await dp.goto(`${url}/console/#/contracts/browser-demo`);
  await dp.getByRole('button', { name: 'Edit draft' }).click();
  await dp.fill('#contract-data', '{"purpose": "analytics on shared sales", "parties": ["Fabrikam", "Northwind"], "retention_days": 30}');
  await dp.getByRole('button', { name: 'Save draft' }).click();
  await expectText(dp.getByRole('status'), /saved/, "data-provider's edit is saved");
  await isv.fill('#contract-data', '{"purpose": "stale edit"}');
  await isv.getByRole('button', { name: 'Save draft' }).click();
  await expectText(isv.getByRole('alert'), /PreconditionFailed \(412\)/, 'the stale edit is refused with the version conflict');
  await shot(isv, 'contract-conflict');
  step('version conflict (412) shown');
  await isv.getByRole('button', { name: 'Cancel' }).click();
  await isv.reload();
  await signIn(isv, 'isv');
  await isv.goto(`${url}/console/#/contracts/browser-demo`);
  await expectText(isv.getByTestId('contract-data'), /retention_days/, "the other member's edit is shown after reload");
  await expectText(isv.getByTestId('contract-parties'), /Users: https:\/\/idp\.example\|analyst/, 'the edit kept the users the draft names');

  // ---- propose; all three approve in their own sessions ----
  await isv.getByRole('button', { name: 'Propose this version' }).click();
  await expectText(isv.getByRole('status'), /proposal .* is Open/, 'the proposal is open');
  await isv.getByRole('status').getByRole('link').click();
  await expectText(isv.getByTestId('proposal-state'), /Open/, 'the proposal page opens');
  await isv.getByRole('button', { name: 'Approve' }).click();
  await expectText(isv.getByRole('status'), /your ballot \(approve\) is recorded; the proposal is Open/, "isv's ballot");
  const proposalUrl = isv.url();
  await shot(isv, 'proposal');

  await dp.goto(`${url}/console/#/proposals`);
  await dp.selectOption('#proposal-state', 'Open');
  await expectText(dp.locator('table'), /contracts\.set_contract/, 'data-provider sees the open proposal');
  await shot(dp, 'proposals');
  await dp.goto(proposalUrl);
  await expectText(dp.locator('.action'), /Accept contract browser-demo/, 'the action is shown readably');
  await dp.getByRole('button', { name: 'Approve' }).click();
  await expectText(dp.getByRole('status'), /your ballot \(approve\) is recorded; the proposal is Open/, "data-provider's ballot");

  const cp = await session('code-provider');
  await signIn(cp, 'code-provider');
  await cp.goto(proposalUrl);
  await cp.getByRole('button', { name: 'Approve' }).click();
  await expectText(cp.getByRole('status'), /the proposal is Accepted/, 'the third approval accepts the contract');
  await expectText(cp.getByTestId('ballots'), /^(?=.*isvapprove)(?=.*data-providerapprove)(?=.*code-providerapprove)/, 'three ballots are shown');
  step('contract proposed and approved by three members in three sessions');

  // ---- the kill switch: pulled by data-provider, seen by the others ----
  await dp.goto(`${url}/console/#/contracts/browser-demo`);
  await expectText(dp.getByTestId('contract-state'), /Accepted/, 'accepted');
  await expectText(dp.locator('tr[data-consent="execution"]'), /enabled/, 'execution is enabled before the kill switch');
  await dp.getByRole('button', { name: 'Disable execution (my kill switch)' }).click();
  await expectText(dp.getByRole('status'), /kill switch is pulled/, 'the kill switch is pulled');
  await cp.goto(`${url}/console/#/contracts/browser-demo`);
  await expectText(cp.locator('tr[data-consent="execution"]'), /disabled/, 'code-provider sees execution disabled');
  await isv.goto(`${url}/console/#/contracts/browser-demo`);
  await expectText(isv.locator('tr[data-consent="execution"]'), /disabled/, 'isv sees execution disabled');
  step('kill switch pulled by data-provider and shown to the others');

  // ---- a plugin proposal, read against the member's own build; withdrawn by its proposer ----
  // The ISV publishes a plugin from the browser; its own rebuild's hashes are on the Service page.
  const [pluginName, pluginVersion, pluginHash] = process.env.CGS_PLUGIN_MEASURED.split(' ');
  await isv.getByRole('link', { name: 'Service' }).click();
  await isv.fill('#expected', `${expected}\n${pluginName} ${pluginHash}`);
  await isv.getByRole('button', { name: 'Compare' }).click();
  await isv.getByRole('link', { name: 'Proposals' }).click();
  await isv.setInputFiles('#pluginfile', process.env.CGS_PLUGIN);
  await isv.fill('#pluginname', pluginName);
  await isv.fill('#pluginversion', pluginVersion);
  await isv.getByRole('button', { name: 'Upload and propose' }).click();
  await expectText(isv.getByRole('status'), new RegExp(`uploaded \\(BLAKE3 ${pluginHash}, as measured here\\); proposal .* is Open`), 'the plugin is uploaded, measured in the page and proposed');
  await isv.getByRole('status').getByRole('link').click();
  await expectText(isv.getByTestId('plugin-verdict'), /^matches your build$/, "the plugin's hash is compared with the member's build");
  await shot(isv, 'proposal-plugin');
  await dp.goto(isv.url());
  await expectText(dp.getByTestId('plugin-verdict'), /no expected hash given/, 'a member who gave no hash is told so');
  if (await dp.getByRole('button', { name: 'Withdraw' }).count()) fail('only the proposer is offered Withdraw');
  await isv.getByRole('button', { name: 'Withdraw' }).click();
  await expectText(isv.getByTestId('proposal-state'), /Withdrawn/, 'the proposer withdraws it');
  step('a set_plugin proposal shows name, version, hash and the match with the member build; withdrawn');

  // ---- a clean-room policy change: the diff before proposing and before voting; one reject ----
  await isv.goto(`${url}/console/#/contracts/browser-demo`);
  await isv.fill('#policy-claims', '{"x-ms-sevsnpvm-hostdata": ["aa11"]}');
  await expectText(isv.getByTestId('policy-diff'), /x-ms-sevsnpvm-hostdata\s*null\s*\["aa11"\]/, 'the diff before proposing');
  await isv.getByRole('button', { name: 'Propose policy change' }).click();
  await expectText(isv.getByRole('status'), /proposal .* is Open/, 'the policy proposal is open');
  await isv.getByRole('status').getByRole('link').click();
  await dp.goto(isv.url());
  await expectText(dp.getByTestId('policy-diff'), /x-ms-sevsnpvm-hostdata\s*null\s*\["aa11"\]/, 'the voter sees the diff');
  await expectText(dp.getByTestId('verdict'), /As it stands: Open.*It would be Accepted with the approvals of (isv|data-provider|code-provider)/, "the constitution's rule and the approvals still needed");
  await shot(dp, 'proposal-policy');
  await dp.getByRole('button', { name: 'Reject' }).click();
  await expectText(dp.getByTestId('proposal-state'), /Rejected/, "data-provider's reject rejects it");
  step('policy diff shown before proposing and before voting; a reject is recorded');

  // ---- an event and its receipt, verified in the page; then a tampered receipt ----
  await isv.goto(`${url}/console/#/contracts/browser-demo`);
  await isv.fill('#escope', 'runs');
  await isv.fill('#eid', 'run-1');
  await isv.fill('#edata', '{"rows": 1204}');
  await isv.getByRole('button', { name: 'Record event' }).click();
  const row = isv.locator('[data-testid="events"] tbody tr').first();
  await expectText(row, /runs \/ run-1/, 'the event is listed');
  await row.getByRole('button', { name: /verify the receipt/ }).click();
  await expectText(row.locator('.verdict'), /^✓ verified: ledger entry \d+\.\d+ is leaf \d+ of the tree of size \d+ .*signed by the attested node key/, 'the receipt verifies in the page');
  await shot(isv, 'contract');
  await isv.route('**/node/receipt/**', async (route) => {
    const r = await route.fetch();
    const receipt = await r.json();
    const p = receipt.inclusion_proof;
    if (p.length) p[0] = (p[0][0] === '0' ? '1' : '0') + p[0].slice(1);
    else receipt.leaf_input = (receipt.leaf_input[0] === '0' ? '1' : '0') + receipt.leaf_input.slice(1);
    await route.fulfill({ response: r, json: receipt });
  });
  await row.getByRole('button', { name: /verify the receipt/ }).click();
  await expectText(row.locator('.verdict'), /^✗ does NOT verify: the inclusion proof does not lead to the signed root/, 'a tampered receipt fails');
  await shot(isv, 'events-tampered');
  await isv.unroute('**/node/receipt/**');
  // A node (or proxy) naming another checkpoint key than the attested one: receipts it signs
  // with that key are not believed.
  const rogue = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const rogueRaw = new Uint8Array(await crypto.subtle.exportKey('raw', rogue.publicKey));
  await isv.route('**/node/identity', async (route) => {
    const r = await route.fetch();
    const id = await r.json();
    const [name, keyId] = id.verifier_key.split('+');
    id.verifier_key = `${name}+${keyId}+${Buffer.concat([Buffer.from([1]), Buffer.from(rogueRaw)]).toString('base64')}`;
    await route.fulfill({ response: r, json: id });
  });
  await row.getByRole('button', { name: /verify the receipt/ }).click();
  await expectText(row.locator('.verdict'), /^✗ does NOT verify: the node's attestation does not verify here \(checkpoint key is the attested key\)/, 'a checkpoint key that is not the attested one');
  await isv.unroute('**/node/identity');
  step('receipt verified in the page; a tampered one and one under a key that is not attested fail');

  // ---- hostile content: an event (written by whoever holds a clean-room session) carrying markup
  // is shown as text; nothing it carries runs in a member's console ----
  const payload = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
  await isv.fill('#escope', 'runs');
  await isv.fill('#eid', '<b>bold</b>');
  await isv.fill('#edata', JSON.stringify({ note: payload }));
  await isv.getByRole('button', { name: 'Record event' }).click();
  await expectText(isv.locator('[data-testid="events"] tbody tr', { hasText: 'onerror' }), /<b>bold<\/b>[\s\S]*onerror/, 'the hostile event is listed as text');
  const injected = await isv.evaluate(() => ({ xss: window.__xss, imgs: document.querySelectorAll('main img').length, bold: document.querySelectorAll('main b').length }));
  if (injected.xss !== undefined || injected.imgs || injected.bold) fail(`markup from an event was interpreted: ${JSON.stringify(injected)}`);
  step('markup in an event is shown as text, not run');

  // ---- a user of a trusted issuer: registered by a proposal made in the console, then signed in
  // with a JWT; users read the contracts naming them, and see no member actions ----
  const idp = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const x = (await crypto.subtle.exportKey('jwk', idp.publicKey)).x;
  const actions = [
    { name: 'set_jwt_issuer', args: { issuer: 'https://idp.example', audience: 'cgs', jwks: { keys: [{ kty: 'OKP', crv: 'Ed25519', kid: 'k1', x }] } } },
    { name: 'set_user_identity', args: { issuer: 'https://idp.example', subject: 'analyst' } },
  ];
  await isv.getByRole('link', { name: 'Proposals' }).click();
  await isv.fill('#actions', JSON.stringify(actions, null, 2));
  await isv.getByRole('button', { name: 'Sign and propose' }).click();
  await expectText(isv.getByRole('status'), /proposal .* is Open/, 'the issuer proposal is open');
  await isv.getByRole('status').getByRole('link').click();
  await expectText(isv.locator('.action').first(), /set_jwt_issuer[\s\S]*https:\/\/idp\.example/, 'the issuer action is shown');
  // The checkpoint isv's browser kept at its earlier ballots: a service whose ledger no longer
  // extends it (another root at that size: a rewritten history) gets no ballot, nor one showing
  // an older checkpoint (rolled back); forgetting it (the members agree) lets the ballot go.
  const keptKey = 'cgs.kept-checkpoint';
  const kept = await isv.evaluate((k) => localStorage.getItem(k), keptKey);
  if (!kept) fail("isv's earlier ballots kept no checkpoint in the browser");
  const [keptOrigin, keptSize, keptRoot] = kept.split('\n');
  const otherRoot = Buffer.from(keptRoot, 'base64');
  otherRoot[0] ^= 1;
  await isv.evaluate(([k, v]) => localStorage.setItem(k, v), [keptKey, kept.replace(`\n${keptRoot}\n`, `\n${otherRoot.toString('base64')}\n`)]);
  await isv.getByRole('button', { name: 'Approve' }).click();
  await expectText(isv.getByRole('alert'), new RegExp(`does not extend the checkpoint this browser kept \\(${keptSize} entries\\).*rewritten or forked`), 'a rewritten history gets no ballot');
  await shot(isv, 'checkpoint-refused');
  // A service that names a new log (what a rewritten ledger could do) is refused too: the kept
  // checkpoint is found by the console's web address, not by anything the service says.
  await isv.evaluate(([k, v]) => localStorage.setItem(k, v), [keptKey, kept.replace(`${keptOrigin}\n`, 'cgs/0000000000000000\n')]);
  await isv.getByRole('button', { name: 'Approve' }).click();
  await expectText(isv.getByRole('alert'), new RegExp(`the log is another one \\(${keptOrigin}, not cgs/0000000000000000\\)`), 'another log gets no ballot');
  await isv.evaluate(([k, v]) => localStorage.setItem(k, v), [keptKey, kept.replace(`\n${keptSize}\n`, '\n99999999\n')]);
  await isv.getByRole('button', { name: 'Approve' }).click();
  await expectText(isv.getByRole('alert'), /older than the one this browser kept \(99999999\), and did not catch up in 5 s/, 'a rolled-back service gets no ballot');
  // None of the refused ballots was recorded: another member's page shows the proposal's ballots.
  await dp.goto(isv.url());
  await expectText(dp.getByTestId('proposal-state'), /Open/, 'the issuer proposal seen by data-provider');
  if ((await dp.getByTestId('ballots').textContent()).includes('isv')) fail('a refused ballot was recorded');
  await isv.getByRole('button', { name: 'Forget the kept checkpoint' }).click();
  await expectText(isv.getByRole('status'), /kept checkpoint is forgotten/, 'the kept checkpoint is forgotten');
  await isv.getByRole('button', { name: 'Approve' }).click();
  await expectText(isv.getByRole('status'), /recorded.*this browser now keeps the service's checkpoint \(\d+ entries\)/, "isv's ballot on the issuer");
  step('a ballot is refused when the ledger does not extend the checkpoint the browser kept (another root; another log; rolled back), and goes after the member forgets it');
  for (const page of [dp, cp]) {
    await page.goto(isv.url());
    await page.getByRole('button', { name: 'Approve' }).click();
    const said = await expectText(page.getByRole('status'), /recorded.*the ledger extends the checkpoint this browser kept \((\d+) → (\d+) entries\)/, 'a ballot on the issuer');
    const [, from, to] = said.match(/\((\d+) → (\d+) entries\)/);
    if (!(Number(to) > Number(from))) fail(`the checkpoint kept at the earlier ballot (${from}) is not older than the service's now (${to})`);
  }
  await expectText(cp.getByTestId('proposal-state'), /Accepted/, 'the issuer is trusted');
  const jwtPart = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${jwtPart({ alg: 'EdDSA', typ: 'JWT', kid: 'k1' })}.${jwtPart({ iss: 'https://idp.example', sub: 'analyst', aud: 'cgs', exp: Math.floor(Date.now() / 1000) + 600 })}`;
  const jwt = `${input}.${Buffer.from(await crypto.subtle.sign({ name: 'Ed25519' }, idp.privateKey, Buffer.from(input))).toString('base64url')}`;
  const analyst = await session('analyst');
  await analyst.fill('#jwt', jwt);
  await analyst.getByRole('button', { name: 'Sign in as user' }).click();
  await expectText(analyst.getByTestId('signed-in'), /Signed in as analyst \(https:\/\/idp\.example\) \(user\)/, 'the user signs in with a JWT');
  if (await analyst.getByRole('link', { name: 'Proposals' }).count()) fail('a user is offered the proposals page (members only)');
  await analyst.getByRole('link', { name: 'Contracts' }).click();
  await analyst.getByRole('link', { name: 'browser-demo' }).click();
  await expectText(analyst.locator('tr[data-consent="execution"]'), /disabled/, 'the user sees the kill switch');
  if (await analyst.getByRole('button', { name: /kill switch|Propose|Record event/ }).count()) fail('a user is offered member actions');
  await shot(analyst, 'user-contract');
  step('a user registered through a console proposal signs in with a JWT and reads the contract naming them');

  // ---- keyboard: the navigation is reachable and usable without a mouse ----
  await isv.locator('header nav strong').click();
  await isv.keyboard.press('Tab');
  await isv.keyboard.press('Tab');
  const focused = await isv.evaluate(() => document.activeElement && document.activeElement.textContent);
  if (focused !== 'Members') fail(`two Tabs from the brand reach the Members link (focused: ${JSON.stringify(focused)})`);
  await isv.keyboard.press('Enter');
  await expectText(isv.locator('h1'), /^Members$/, 'Enter on the focused link opens the Members page');
  step('keyboard: Tab reaches the navigation, Enter follows it');

  const errors = consoleErrors.filter((e) => !/Failed to load resource/.test(e));
  if (errors.length) fail(`the pages logged errors: ${errors.join('; ')}`);
  console.log('console test: PASSED');
} finally {
  await browser.close();
}
