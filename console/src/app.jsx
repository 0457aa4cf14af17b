// The CGS console: what a collaborator does with the CLI, in a browser, verifying what it shows.
// It uses only the public API (no console-only routes); signing and verification happen here.

import { render } from 'preact';
import { useEffect, useState, useCallback } from 'preact/hooks';
import { call, all, ApiError } from './api.js';
import { blake3 } from '@noble/hashes/blake3.js';
import { importMemberKey, signMessage, checkAttestation, verifyReceipt, hex, unhex, unb64Strict, parseCheckpoint, verifyConsistency, verifyCheckpointByAny } from './crypto.js';

const short = (id) => (id ? `${String(id).slice(0, 12)}…` : '');
const fmtTime = (ms) => (ms ? new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + ' UTC' : '');
const pretty = (v) => JSON.stringify(v, null, 2);

function useRoute() {
  const get = () => (location.hash || '#/service').slice(1);
  const [route, setRoute] = useState(get());
  useEffect(() => {
    const on = () => setRoute(get());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

function ErrorBox({ error }) {
  if (!error) return null;
  const text = error instanceof ApiError ? error.toString() : String(error.message || error);
  return (
    <p class="error" role="alert">
      {text}
    </p>
  );
}

function Notice({ children }) {
  return children ? (
    <p class="notice" role="status">
      {children}
    </p>
  ) : null;
}

/** Load `fn()` on mount and whenever `deps` change; returns [value, error, reload]. */
function useLoad(fn, deps) {
  const [state, setState] = useState({ value: null, error: null });
  const [n, setN] = useState(0);
  useEffect(() => {
    let live = true;
    fn().then(
      (value) => live && setState({ value, error: null }),
      (error) => live && setState({ value: null, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, n]);
  return [state.value, state.error, () => setN((x) => x + 1)];
}

// ===== sign in =====

function SignIn({ onSignedIn }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const member = async (e) => {
    e.preventDefault();
    setError(null);
    const file = e.target.elements.keyfile.files[0];
    if (!file) return setError(new Error("choose the member's private key file (PKCS#8 PEM, e.g. sandbox/members/isv.key)"));
    setBusy(true);
    try {
      const key = await importMemberKey(await file.text());
      const msg = await signMessage(key, 'login', {});
      const { value } = await call('POST', '/gov/login', { cose: msg });
      let name = short(key.memberId);
      try {
        const m = await call('GET', `/gov/members/${key.memberId}`, { token: value.token });
        name = (m.value.member_data && m.value.member_data.name) || name;
      } catch (_) {
        /* the name is cosmetic */
      }
      onSignedIn({ kind: 'member', key, memberId: key.memberId, token: value.token, expiresAt: value.expires_at, name });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const user = async (e) => {
    e.preventDefault();
    setError(null);
    const token = e.target.elements.jwt.value.trim();
    if (!token) return setError(new Error('paste a JWT from an issuer the service trusts'));
    setBusy(true);
    try {
      await call('GET', '/app/contracts', { token });
      let name = 'user';
      try {
        const claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0))));
        name = `${claims.sub} (${claims.iss})`;
      } catch (_) {
        /* cosmetic */
      }
      onSignedIn({ kind: 'user', token, name });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <main id="main" class="signin">
      <h1>CGS console</h1>
      <p>Sign in to the clean room governance service. Your key stays in this browser: it signs here, and only signatures are sent.</p>
      <ErrorBox error={error} />
      <div class="cards">
        <form onSubmit={member} class="card" aria-labelledby="member-title">
          <h2 id="member-title">Member</h2>
          <label for="keyfile">Member private key (PKCS#8 PEM, Ed25519)</label>
          <input id="keyfile" name="keyfile" type="file" accept=".key,.pem" />
          <button type="submit" disabled={busy}>
            Sign in as member
          </button>
        </form>
        <form onSubmit={user} class="card" aria-labelledby="user-title">
          <h2 id="user-title">User</h2>
          <label for="jwt">JWT from a registered issuer</label>
          <textarea id="jwt" name="jwt" rows="4" />
          <button type="submit" disabled={busy}>
            Sign in as user
          </button>
        </form>
      </div>
    </main>
  );
}

// ===== service =====

function parseExpected(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Za-z0-9_.-]+)(?:\s+\S+)?\s+([0-9a-fA-F]{64})\s*$/.exec(line);
    if (m) out.set(m[1], m[2].toLowerCase());
  }
  return out;
}

function Check({ c }) {
  const mark = c.ok === true ? '✓' : c.ok === false ? '✗' : '–';
  const cls = c.ok === true ? 'ok' : c.ok === false ? 'bad' : 'info';
  return (
    <tr class={cls}>
      <td>
        <span aria-hidden="true">{mark}</span> {c.check}
      </td>
      <td>{c.ok === true ? 'verified' : c.ok === false ? 'FAILED' : 'not checked here'}</td>
      <td>{c.detail}</td>
    </tr>
  );
}

function ServicePage({ session, expected, setExpected }) {
  const [data, error] = useLoad(async () => {
    const [att, id, svc] = await Promise.all([call('GET', '/node/attestation'), call('GET', '/node/identity'), call('GET', '/gov/service')]);
    const checks = await checkAttestation(att.value, id.value);
    return { att: att.value, id: id.value, svc: svc.value, checks };
  }, []);
  const [text, setText] = useState([...expected.entries()].map(([n, h]) => `${n} ${h}`).join('\n'));
  if (error) return <ErrorBox error={error} />;
  if (!data) return <p>Loading…</p>;
  const { att, id, svc, checks } = data;
  const plugins = [att.constitution, ...att.plugins].filter(Boolean);
  const signed = checks.some((c) => c.check === 'node signature over the plugin set' && c.ok === true);
  return (
    <section aria-labelledby="svc-title">
      <h1 id="svc-title">Service</h1>
      <p>
        Status <strong>{svc.status}</strong>, {svc.active_member_count} active of {svc.member_count} members, node {id.node_id}.
        {svc.insecure_virtual_attestation ? ' This service accepts virtual (insecure) evidence: a sandbox.' : ''}
      </p>
      <h2>Checked in this browser</h2>
      <table class="checks" data-testid="attestation-checks">
        <thead>
          <tr>
            <th scope="col">check</th>
            <th scope="col">result</th>
            <th scope="col">detail</th>
          </tr>
        </thead>
        <tbody>
          {checks.map((c) => (
            <Check c={c} />
          ))}
        </tbody>
      </table>
      <h2>What runs</h2>
      <p>
        Evidence: {att.evidence.kind}, measurement <code>{att.evidence.measurement || '(in the SNP report)'}</code>, host_data{' '}
        <code>{att.evidence.host_data || '(in the SNP report)'}</code>. Checkpoint key <code>{id.verifier_key}</code>.
      </p>
      <table data-testid="plugins">
        <thead>
          <tr>
            <th scope="col">plugin</th>
            <th scope="col">version</th>
            <th scope="col">BLAKE3 (signed by the node)</th>
            <th scope="col">your build</th>
          </tr>
        </thead>
        <tbody>
          {plugins.map((p) => {
            const mine = expected.get(p.name);
            const verdict = !signed ? 'UNSIGNED: the node signature does not verify' : !mine ? 'no expected hash given' : mine === p.blake3 ? 'matches' : `DIFFERS: yours is ${mine}`;
            return (
              <tr class={!signed ? 'bad' : !mine ? '' : mine === p.blake3 ? 'ok' : 'bad'} data-plugin={p.name}>
                <td>{p.name}</td>
                <td>{p.version}</td>
                <td>
                  <code>{p.blake3}</code>
                </td>
                <td class="verdict">{verdict}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          setExpected(parseExpected(text));
        }}
      >
        <label for="expected">
          Expected hashes from your own rebuild, one per line: <code>name blake3</code> (the output of <code>cgs plugin measure</code>)
        </label>
        <textarea id="expected" rows="5" value={text} onInput={(e) => setText(e.target.value)} />
        <button type="submit">Compare</button>
      </form>
    </section>
  );
}

// ===== members =====

function MembersPage({ session }) {
  const [members, error] = useLoad(() => all('/gov/members', session.token), []);
  const [filter, setFilter] = useState('');
  if (error) return <ErrorBox error={error} />;
  if (!members) return <p>Loading…</p>;
  const f = filter.toLowerCase();
  const shown = members.filter((m) => !f || JSON.stringify(m).toLowerCase().includes(f));
  return (
    <section aria-labelledby="members-title">
      <h1 id="members-title">Members</h1>
      <label for="member-filter">Filter</label>
      <input id="member-filter" value={filter} onInput={(e) => setFilter(e.target.value)} />
      <table>
        <thead>
          <tr>
            <th scope="col">name</th>
            <th scope="col">tenant</th>
            <th scope="col">roles</th>
            <th scope="col">status</th>
            <th scope="col">member id</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((m) => (
            <tr>
              <td>{(m.member_data && m.member_data.name) || ''}</td>
              <td>{(m.member_data && m.member_data.tenant) || ''}</td>
              <td>{((m.member_data && m.member_data.roles) || []).join(', ')}</td>
              <td>{m.status}</td>
              <td>
                <code>{m.member_id}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}

// ===== proposals =====

const STATES = ['', 'Open', 'Accepted', 'Rejected', 'Withdrawn', 'Failed', 'Dropped'];

function NewProposal({ session, onProposed }) {
  const [rules] = useLoad(() => actionDescriptions().then((d) => [...d.keys()]), []);
  const [text, setText] = useState('');
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    try {
      let actions;
      try {
        actions = JSON.parse(text);
      } catch (err) {
        throw new Error(`the actions are not JSON: ${err.message}`);
      }
      if (!Array.isArray(actions)) actions = [actions];
      const p = await propose(session, actions);
      setDone(p);
      onProposed();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form onSubmit={submit} aria-labelledby="new-proposal">
      <h2 id="new-proposal">New proposal</h2>
      <label for="actions">Actions (JSON): [{'{"name": "…", "args": {…}}'}, …]</label>
      <textarea id="actions" rows="5" value={text} onInput={(e) => setText(e.target.value)} />
      {rules && <p class="rule">Actions the constitution and plugins know: {rules.join(', ')}</p>}
      <button type="submit">Sign and propose</button>
      {done && (
        <Notice>
          <span>
            proposal <a href={`#/proposals/${done.proposal_id}`}>{short(done.proposal_id)}</a> is {done.state}
          </span>
        </Notice>
      )}
      <ErrorBox error={error} />
    </form>
  );
}

/** Publish a plugin: upload the component, check the service stored what was measured here, propose it. */
function PublishPlugin({ session, onProposed }) {
  const [error, setError] = useState(null);
  const [done, setDone] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    setDone(null);
    const f = e.target.elements;
    try {
      const file = f.pluginfile.files[0];
      if (!file) throw new Error('choose the plugin component (.wasm), e.g. from `cgs plugin build`');
      const bytes = new Uint8Array(await file.arrayBuffer());
      const mine = hex(blake3(bytes));
      const { value } = await call('PUT', '/gov/blobs', { token: session.token, bytes });
      if (value.blake3 !== mine) throw new Error(`the service stored a blob with BLAKE3 ${value.blake3}, but the file measures ${mine}`);
      const args = { name: f.pluginname.value.trim(), version: f.pluginversion.value.trim(), blake3: mine };
      if (f.replacecore.checked) args.replace_core = true;
      const p = await propose(session, [{ name: 'set_plugin', args }]);
      setDone({ ...p, blake3: mine });
      onProposed();
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form onSubmit={submit} aria-labelledby="publish-plugin">
      <h2 id="publish-plugin">Publish a plugin</h2>
      <label for="pluginfile">Component (.wasm): measured here (BLAKE3), uploaded, then proposed with set_plugin</label>
      <input id="pluginfile" name="pluginfile" type="file" accept=".wasm" />
      <label for="pluginname">Name</label>
      <input id="pluginname" name="pluginname" required />
      <label for="pluginversion">Version</label>
      <input id="pluginversion" name="pluginversion" required />
      <label class="inline">
        <input type="checkbox" name="replacecore" /> replaces a core plugin (members see a replacement, not an upgrade)
      </label>
      <div>
        <button type="submit">Upload and propose</button>
      </div>
      {done && (
        <Notice>
          <span>
            uploaded (BLAKE3 <code>{done.blake3}</code>, as measured here); proposal <a href={`#/proposals/${done.proposal_id}`}>{short(done.proposal_id)}</a> is {done.state}
          </span>
        </Notice>
      )}
      <ErrorBox error={error} />
    </form>
  );
}

function ProposalsPage({ session, names }) {
  const [state, setState] = useState('');
  const [filter, setFilter] = useState('');
  const [list, error, reload] = useLoad(() => all(`/gov/proposals${state ? `?state=${state}` : ''}`, session.token), [state]);
  const f = filter.toLowerCase();
  const shown = (list || []).filter((p) => !f || JSON.stringify(p).toLowerCase().includes(f)).sort((a, b) => b.created_at_ms - a.created_at_ms);
  return (
    <section aria-labelledby="proposals-title">
      <h1 id="proposals-title">Proposals</h1>
      <div class="filters">
        <label for="proposal-state">State</label>
        <select id="proposal-state" value={state} onChange={(e) => setState(e.target.value)}>
          {STATES.map((s) => (
            <option value={s}>{s || 'all'}</option>
          ))}
        </select>
        <label for="proposal-filter">Filter</label>
        <input id="proposal-filter" value={filter} onInput={(e) => setFilter(e.target.value)} />
      </div>
      <ErrorBox error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">proposal</th>
            <th scope="col">actions</th>
            <th scope="col">proposer</th>
            <th scope="col">state</th>
            <th scope="col">ballots</th>
            <th scope="col">created</th>
          </tr>
        </thead>
        <tbody>
          {shown.map((p) => (
            <tr>
              <td>
                <a href={`#/proposals/${p.proposal_id}`}>{short(p.proposal_id)}</a>
              </td>
              <td>{p.actions.map((a) => a.name).join(', ')}</td>
              <td>{names[p.proposer_id] || short(p.proposer_id)}</td>
              <td>{p.state}</td>
              <td>{Object.keys(p.ballots || {}).length}</td>
              <td>{fmtTime(p.created_at_ms)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <NewProposal session={session} onProposed={reload} />
      <PublishPlugin session={session} onProposed={reload} />
    </section>
  );
}

function ActionView({ action, expected, session }) {
  const a = action.args || {};
  if (action.name === 'set_plugin' || action.name === 'set_constitution') {
    const mine = expected.get(a.name);
    const verdict = !mine ? 'no expected hash given (Service page)' : mine === a.blake3 ? 'matches your build' : `DIFFERS from your build (${mine})`;
    return (
      <div class="action">
        <h3>{action.name}</h3>
        <dl>
          <dt>plugin</dt>
          <dd>{a.name}</dd>
          <dt>version</dt>
          <dd>{a.version}</dd>
          <dt>BLAKE3</dt>
          <dd>
            <code>{a.blake3}</code>
          </dd>
          <dt>your build</dt>
          <dd class={!mine ? '' : mine === a.blake3 ? 'ok' : 'bad'} data-testid="plugin-verdict">
            {verdict}
          </dd>
        </dl>
      </div>
    );
  }
  if (action.name === 'contracts.set_cleanroom_policy') return <PolicyDiff action={action} session={session} />;
  if (action.name === 'contracts.set_contract') return <ContractAtVersion action={action} session={session} />;
  return (
    <div class="action">
      <h3>{action.name}</h3>
      <dl>
        {Object.entries(a).map(([k, v]) => [
          <dt>{k}</dt>,
          <dd>
            <code>{typeof v === 'string' ? v : JSON.stringify(v)}</code>
          </dd>,
        ])}
      </dl>
    </div>
  );
}

function ContractAtVersion({ action, session }) {
  const a = action.args || {};
  const [c] = useLoad(() => call('GET', `/app/contracts/${encodeURIComponent(a.contract_id)}`, { token: session.token }).then((r) => r.value), [a.contract_id]);
  return (
    <div class="action">
      <h3>{action.name}</h3>
      <p>
        Accept contract <a href={`#/contracts/${encodeURIComponent(a.contract_id)}`}>{a.contract_id}</a> at version <code>{a.version}</code>.
      </p>
      {c && (
        <div>
          {c.version !== a.version && <p class="bad">The draft is now at version {c.version}: this proposal is for an older one.</p>}
          <pre>{pretty(c.data)}</pre>
        </div>
      )}
    </div>
  );
}

/** The clean-room policy now, and as it would be if the proposal is accepted. */
function policyAfter(policy, a) {
  const next = JSON.parse(JSON.stringify(policy || {}));
  for (const [claim, values] of Object.entries(a.claims || {})) {
    const cur = new Set(next[claim] || []);
    for (const v of [].concat(values)) (a.type === 'remove' ? cur.delete(v) : cur.add(v));
    if (cur.size) next[claim] = [...cur];
    else delete next[claim];
  }
  return next;
}

function PolicyDiff({ action, session }) {
  const a = action.args || {};
  const [p, error] = useLoad(() => call('GET', `/app/contracts/${encodeURIComponent(a.contract_id)}/cleanroom-policy`, { token: session.token }).then((r) => r.value), [a.contract_id]);
  return (
    <div class="action">
      <h3>{action.name}</h3>
      <p>
        {a.type === 'remove' ? 'Remove' : 'Add'} claims for contract {a.contract_id}:
      </p>
      <ErrorBox error={error} />
      {p && <Diff before={p.policy} after={policyAfter(p.policy, a)} />}
    </div>
  );
}

function Diff({ before, after }) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])].sort();
  return (
    <table class="diff" data-testid="policy-diff">
      <thead>
        <tr>
          <th scope="col">claim</th>
          <th scope="col">now</th>
          <th scope="col">if accepted</th>
        </tr>
      </thead>
      <tbody>
        {keys.map((k) => {
          const b = JSON.stringify((before || {})[k] || null);
          const n = JSON.stringify((after || {})[k] || null);
          return (
            <tr class={b === n ? '' : 'changed'}>
              <td>{k}</td>
              <td>
                <code>{b}</code>
              </td>
              <td>
                <code>{n}</code>
              </td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

// ===== the checkpoint this browser keeps (as the CLI keeps one per service) =====

/** A vote refused because the service's history does not extend what this browser saw. */
class Refused extends Error {}

// Kept under the web address the console was loaded from (which the browser's TLS pins), never
// under anything the service says: a service that rewrote its history could name a new log.
const KEPT_KEY = 'cgs.kept-checkpoint';
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Storage that may be unavailable (blocked, private mode, full): `null` and why, then. */
function keptStorage(op, value) {
  try {
    if (op === 'get') return { value: localStorage.getItem(KEPT_KEY) };
    if (op === 'set') localStorage.setItem(KEPT_KEY, value);
    else localStorage.removeItem(KEPT_KEY);
    return {};
  } catch (e) {
    return { value: null, unavailable: e.message || String(e) };
  }
}

/** Run `fn` holding this browser's lock on the kept checkpoint (tabs take turns), where the Web Locks API exists. */
const underKeptLock = (fn) => (navigator.locks ? navigator.locks.request(KEPT_KEY, fn) : fn());

/**
 * Before a ballot: fetch the service's latest signed checkpoint and check that its ledger extends
 * the one this browser kept at earlier ballots (`localStorage`, per web address): the same log
 * (origin), an RFC 9162 consistency proof from it (`GET /node/consistency`), checked here. Then
 * keep the newer one. Throws `Refused` when the history the member saw was rewritten or forked
 * (or the log is another one), when the service shows no checkpoint though one was kept, and when
 * the node stays behind the kept one for 5 s (a rollback looks so). Returns what it found.
 */
const checkKeptCheckpoint = () =>
  underKeptLock(async () => {
    const stored = keptStorage('get');
    let kept = null;
    if (stored.value !== null && stored.value !== undefined) {
      try {
        kept = parseCheckpoint(stored.value);
      } catch (e) {
        throw new Refused(`the checkpoint this browser kept is damaged (${e.message}): "Forget the kept checkpoint" replaces it with the service's current one`);
      }
      if (kept.size === 0) kept = null;
    }
    const deadline = Date.now() + 5000;
    let note;
    let seen;
    for (;;) {
      seen = null;
      try {
        note = (await call('GET', '/node/checkpoint')).value;
        seen = parseCheckpoint(String(note));
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 503 && e.code === 'NotReady')) throw e;
      }
      if (!seen || seen.size === 0) {
        if (kept) throw new Refused(`the service shows no signed checkpoint, though this browser kept one of ${kept.size} entries: retry; if it persists, its history was rolled back or rewritten`);
        return 'the service has signed no checkpoint yet: nothing to check';
      }
      if (!kept || seen.size >= kept.size || Date.now() >= deadline) break;
      await sleep(250);
    }
    // Signed by a node governance trusts or retired, as the service lists them (over the same
    // connection: this refuses unsigned or damaged notes; it is no trust root of its own).
    const nodes = ((await call('GET', '/node/network/nodes')).value.nodes || []).filter((n) => n.status === 'Trusted' || n.status === 'Retired');
    try {
      await verifyCheckpointByAny(String(note), nodes.map((n) => unb64Strict(String(n.public_key))));
    } catch (e) {
      // Not `Refused`: forgetting the kept checkpoint would not help.
      throw new Error(`the service's checkpoint of ${seen.size} entries is not signed by any of its nodes' keys (${e.message}): do not vote; tell the other members`);
    }
    const rewritten = (why) =>
      new Refused(
        `the service's ledger does not extend the checkpoint this browser kept (${kept.size} entries): ${why}. Its history was rewritten or forked since you saw it: do not vote; tell the other members (if you all agree it changed, e.g. a recovery from a shorter copy, "Forget the kept checkpoint" keeps its current one)`,
      );
    if (kept) {
      if (seen.origin !== kept.origin) throw rewritten(`the log is another one (${seen.origin}, not ${kept.origin})`);
      if (seen.size < kept.size) {
        throw new Refused(`the node shows a checkpoint of ${seen.size} entries, older than the one this browser kept (${kept.size}), and did not catch up in 5 s: a node far behind, or a service rolled back; tell the other members`);
      }
      let proof = [];
      if (seen.size > kept.size) {
        const c = (await call('GET', `/node/consistency?from=${kept.size}&to=${seen.size}`)).value;
        if (c.from !== kept.size || c.to !== seen.size || !Array.isArray(c.proof)) throw new Error(`the consistency answer is for other sizes than ${kept.size} → ${seen.size}`);
        proof = c.proof.map((h) => unhex(h));
      }
      try {
        await verifyConsistency(kept.size, seen.size, proof, kept.root, seen.root);
      } catch (e) {
        throw rewritten(e.message);
      }
    }
    const found = kept ? `the ledger extends the checkpoint this browser kept (${kept.size} → ${seen.size} entries)` : `this browser now keeps the service's checkpoint (${seen.size} entries)`;
    if (stored.unavailable) return `${found}; but this browser's storage is unavailable (${stored.unavailable}): the checkpoint's signature was checked, nothing could be compared or kept`;
    if (kept && seen.size === kept.size) return found;
    const saved = keptStorage('set', String(note));
    return saved.unavailable ? `${found}; it could not be kept (${saved.unavailable})` : found;
  });

/** Forget the kept checkpoint (the members agreed the service's history changed). */
const forgetKeptCheckpoint = () => underKeptLock(async () => keptStorage('remove'));

// The constitution's verdict on `p` as it stands (`POST /gov/proposals/simulate`, nothing is
// written). A node runs one simulation at a time and answers others `503 ServiceBusy`: members
// who open the same proposal together retry a few times before the page gives up.
async function simulateVerdict(session, p) {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await call('POST', '/gov/proposals/simulate', { token: session.token, json: { actions: p.actions, ballots: p.ballots || {} } });
      return r.value;
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 503 || e.code !== 'ServiceBusy' || attempt >= 6) throw e;
      await new Promise((resolve) => setTimeout(resolve, 150 * attempt));
    }
  }
}

function ProposalPage({ session, id, names, expected }) {
  const [p, error, reload] = useLoad(() => call('GET', `/gov/proposals/${encodeURIComponent(id)}`, { token: session.token }).then((r) => r.value), [id]);
  const [described] = useLoad(actionDescriptions, []);
  const open = p && p.state === 'Open' && session.kind === 'member';
  // The constitution's verdict as it stands, and whose approvals would decide it: a dry run of the
  // same actions with the ballots so far (`POST /gov/proposals/simulate`, nothing is written).
  const [verdict, verdictError] = useLoad(
    () => (open ? simulateVerdict(session, p) : Promise.resolve(null)),
    [id, open, p && JSON.stringify(p.ballots)],
  );
  const [actionError, setActionError] = useState(null);
  const [note, setNote] = useState(null);
  const act = async (what) => {
    setActionError(null);
    setNote(null);
    try {
      if (what === 'withdraw') {
        await call('POST', `/gov/proposals/${encodeURIComponent(id)}/withdraw`, { cose: await signMessage(session.key, 'withdrawal', {}, id) });
        setNote('withdrawn');
      } else {
        const checked = await checkKeptCheckpoint();
        const { value } = await call('POST', `/gov/proposals/${encodeURIComponent(id)}/ballots`, { cose: await signMessage(session.key, 'ballot', { vote: what }, id) });
        setNote(`your ballot (${what}) is recorded; the proposal is ${value.state} (${checked})`);
      }
      reload();
    } catch (e) {
      setActionError(e);
    }
  };
  if (error) return <ErrorBox error={error} />;
  if (!p) return <p>Loading…</p>;
  const mine = session.kind === 'member';
  return (
    <section aria-labelledby="proposal-title">
      <h1 id="proposal-title">
        Proposal <code>{short(p.proposal_id)}</code>
      </h1>
      <p>
        State <strong data-testid="proposal-state">{p.state}</strong>, proposed by {names[p.proposer_id] || p.proposer_id} on {fmtTime(p.created_at_ms)}.
      </p>
      <h2>Actions</h2>
      {p.actions.map((a) => (
        <div>
          <ActionView action={a} expected={expected} session={session} />
          {described && described.get(a.name) && <p class="rule">What it does: {described.get(a.name)}</p>}
        </div>
      ))}
      {open && (
        <div data-testid="verdict">
          <h2>The constitution's rule</h2>
          {verdict && verdict.resolution && (
            <p>
              As it stands: <strong>{verdict.resolution.outcome}</strong>
              {verdict.resolution.reason ? ` — ${verdict.resolution.reason}` : ''}.
              {verdict.with_more_approvals && verdict.with_more_approvals.resolution && verdict.with_more_approvals.approvals_needed.length > 0 && (
                <span>
                  {' '}
                  It would be {verdict.with_more_approvals.resolution.outcome} with the approvals of{' '}
                  {verdict.with_more_approvals.approvals_needed.map((m) => names[m] || short(m)).join(', ')}
                  {verdict.with_more_approvals.resolution.reason ? ` (${verdict.with_more_approvals.resolution.reason})` : ''}.
                </span>
              )}
            </p>
          )}
          {verdict && !verdict.valid && (
            <p class="rule">
              The dry run could not evaluate the rule (the constitution's default: every voting member approves, unless governance set a
              threshold for the action). A fresh proposal of the same actions would be refused now:{' '}
              {(verdict.validation || [])
                .filter((v) => !v.ok)
                .map((v) => `${v.name}: ${v.code} ${v.message}`)
                .join('; ')}
            </p>
          )}
          {verdictError && <p class="rule">The rule could not be evaluated now: {String(verdictError)}</p>}
        </div>
      )}
      <h2>Ballots</h2>
      <table data-testid="ballots">
        <tbody>
          {Object.entries(p.ballots || {}).map(([m, v]) => (
            <tr>
              <td>{names[m] || m}</td>
              <td>{v}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>History</h2>
      <ul>
        {(p.history || []).map((h) => (
          <li>
            {fmtTime(h.at_ms)}: {h.state}
            {h.reason ? ` — ${h.reason}` : ''}
          </li>
        ))}
      </ul>
      {p.state === 'Open' && mine && (
        <div class="buttons">
          <button onClick={() => act('approve')}>Approve</button>
          <button onClick={() => act('reject')}>Reject</button>
          {p.proposer_id === session.memberId && <button onClick={() => act('withdraw')}>Withdraw</button>}
        </div>
      )}
      <Notice>{note}</Notice>
      <ErrorBox error={actionError} />
      {actionError instanceof Refused && (
        <div class="buttons">
          <button
            onClick={async () => {
              try {
                await forgetKeptCheckpoint();
                setActionError(null);
                setNote('the kept checkpoint is forgotten: the next ballot keeps the service\'s current one (its signature checked) without comparing it with the one kept before');
              } catch (e) {
                setActionError(e);
              }
            }}
          >
            Forget the kept checkpoint
          </button>
        </div>
      )}
    </section>
  );
}

/** What each action does, as the constitution and the plugins describe it. */
async function actionDescriptions() {
  const [c, p] = await Promise.all([call('GET', '/gov/constitution'), call('GET', '/gov/plugins')]);
  const out = new Map((c.value.actions || []).map((a) => [a.name, a.description]));
  for (const plugin of p.value.value || []) for (const a of plugin.actions || []) out.set(a.name, a.description);
  return out;
}

async function propose(session, actions) {
  const { value } = await call('POST', '/gov/proposals', { cose: await signMessage(session.key, 'proposal', { actions }) });
  return value;
}

// ===== contracts =====

/** Who a draft names: collaborators (members; none ticked = every member) and users. */
function Parties({ members, contract }) {
  const collab = new Set((contract && contract.collaborators) || []);
  return (
    <fieldset>
      <legend>Parties</legend>
      <p class="rule">Collaborators: the members who vote on this contract (none ticked: every member).</p>
      {members.map((m) => (
        <label class="inline">
          <input type="checkbox" name="collab" value={m.member_id} defaultChecked={collab.has(m.member_id)} /> {(m.member_data && m.member_data.name) || short(m.member_id)}
        </label>
      ))}
      <label for="users">Users who may read it, one per line: issuer|subject</label>
      <textarea id="users" name="users" rows="2" defaultValue={((contract && contract.users) || []).join('\n')} />
    </fieldset>
  );
}

function partiesOf(form) {
  const collab = [...form.querySelectorAll('input[name="collab"]:checked')].map((i) => i.value);
  const users = form.elements.users.value
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return { collaborators: collab.length ? collab : null, users };
}

function ContractsPage({ session, members }) {
  const [state, setState] = useState('');
  const [list, error, reload] = useLoad(() => all(`/app/contracts${state ? `?state=${state}` : ''}`, session.token), [state]);
  const [createError, setCreateError] = useState(null);
  const create = async (e) => {
    e.preventDefault();
    setCreateError(null);
    const f = e.target.elements;
    try {
      const data = JSON.parse(f.data.value || '{}');
      await call('PUT', `/app/contracts/${encodeURIComponent(f.id.value.trim())}`, { token: session.token, json: { data, ...partiesOf(e.target) } });
      location.hash = `#/contracts/${encodeURIComponent(f.id.value.trim())}`;
      reload();
    } catch (err) {
      setCreateError(err instanceof SyntaxError ? new Error(`the data is not JSON: ${err.message}`) : err);
    }
  };
  return (
    <section aria-labelledby="contracts-title">
      <h1 id="contracts-title">Contracts</h1>
      <div class="filters">
        <label for="contract-state">State</label>
        <select id="contract-state" value={state} onChange={(e) => setState(e.target.value)}>
          {['', 'Draft', 'Proposed', 'Accepted', 'Revoked'].map((s) => (
            <option value={s}>{s || 'all'}</option>
          ))}
        </select>
      </div>
      <ErrorBox error={error} />
      <table>
        <thead>
          <tr>
            <th scope="col">contract</th>
            <th scope="col">state</th>
            <th scope="col">version</th>
            <th scope="col">data</th>
          </tr>
        </thead>
        <tbody>
          {(list || []).map((c) => (
            <tr>
              <td>
                <a href={`#/contracts/${encodeURIComponent(c.id)}`}>{c.id}</a>
              </td>
              <td>{c.state}</td>
              <td>{c.version}</td>
              <td>
                <code>{JSON.stringify(c.data).slice(0, 80)}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {session.kind === 'member' && (
        <form onSubmit={create} aria-labelledby="new-contract">
          <h2 id="new-contract">New draft</h2>
          <label for="new-id">Contract id</label>
          <input id="new-id" name="id" required />
          <label for="new-data">Data (JSON)</label>
          <textarea id="new-data" name="data" rows="4" placeholder='{"purpose": "…"}' />
          <Parties members={members} />
          <button type="submit">Create draft</button>
          <ErrorBox error={createError} />
        </form>
      )}
    </section>
  );
}

function ContractPage({ session, id, names, members }) {
  const path = `/app/contracts/${encodeURIComponent(id)}`;
  const [c, error, reload] = useLoad(() => call('GET', path, { token: session.token }).then((r) => r.value), [id]);
  const [edit, setEdit] = useState(null);
  const [busy, setBusy] = useState(null);
  const [note, setNote] = useState(null);
  const member = session.kind === 'member';
  const run = useCallback(async (label, fn) => {
    setBusy({ label, error: null });
    setNote(null);
    try {
      const text = await fn();
      setBusy(null);
      setNote(text);
      reload();
    } catch (e) {
      setBusy({ label, error: e });
    }
  }, []);
  if (error) return <ErrorBox error={error} />;
  if (!c) return <p>Loading…</p>;
  const editing = edit && edit.id === id ? edit : null;
  const proposed = async (actions) => {
    const p = await propose(session, actions);
    return (
      <span>
        proposal <a href={`#/proposals/${p.proposal_id}`}>{short(p.proposal_id)}</a> is {p.state}
      </span>
    );
  };
  return (
    <section aria-labelledby="contract-title">
      <h1 id="contract-title">Contract {c.id}</h1>
      <p>
        State <strong data-testid="contract-state">{c.state}</strong>, version <code data-testid="contract-version">{c.version}</code>, created by {names[c.created_by] || short(c.created_by)}.
        {(c.open_proposal_ids || []).length > 0 && (
          <span>
            {' '}
            Open proposals:{' '}
            {c.open_proposal_ids.map((p) => (
              <a href={`#/proposals/${p}`}>{short(p)} </a>
            ))}
          </span>
        )}
      </p>
      <h2>Data</h2>
      {editing ? (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            const text = e.target.elements.data.value;
            const parties = partiesOf(e.target);
            run('save', async () => {
              let data;
              try {
                data = JSON.parse(text);
              } catch (err) {
                throw new Error(`the data is not JSON: ${err.message}`);
              }
              const r = await call('PUT', path, { token: session.token, json: { version: editing.version, data, ...parties } });
              setEdit(null);
              return `saved (version ${r.value && r.value.version ? r.value.version : r.txId})`;
            });
          }}
        >
          <label for="contract-data">Data (JSON), editing version {editing.version}</label>
          <textarea id="contract-data" name="data" rows="8" value={editing.text} onInput={(e) => setEdit({ ...editing, text: e.target.value })} />
          <Parties members={members} contract={c} />
          <button type="submit">Save draft</button>
          <button type="button" onClick={() => setEdit(null)}>
            Cancel
          </button>
        </form>
      ) : (
        <div>
          <pre data-testid="contract-data">{pretty(c.data)}</pre>
          <p data-testid="contract-parties">
            Collaborators: {c.collaborators ? c.collaborators.map((m) => names[m] || short(m)).join(', ') : 'every member'}. Users: {(c.users || []).join(', ') || 'none'}.
          </p>
        </div>
      )}
      {member && !editing && (c.state === 'Draft' || c.state === 'Proposed') && (
        <div class="buttons">
          <button onClick={() => setEdit({ id, version: c.version, text: pretty(c.data) })}>Edit draft</button>
          <button onClick={() => run('propose', () => proposed([{ name: 'contracts.set_contract', args: { contract_id: c.id, version: c.version } }]))}>Propose this version</button>
        </div>
      )}
      {c.final_votes && c.final_votes.length > 0 && (
        <p>
          Final votes: {c.final_votes.map((v) => `${names[v.member_id] || short(v.member_id)}: ${v.vote}`).join(', ')}
        </p>
      )}
      <Notice>{note}</Notice>
      {busy && busy.error && <ErrorBox error={busy.error} />}
      {c.state === 'Accepted' && <Consent session={session} path={path} id={c.id} run={run} proposed={proposed} />}
      <Spec session={session} path={path} id={c.id} run={run} proposed={proposed} member={member} />
      <Policy session={session} path={path} id={c.id} run={run} proposed={proposed} member={member} />
      {member && c.state === 'Accepted' && (
        <div>
          <h2>Revocation</h2>
          <button onClick={() => run('revoke', () => proposed([{ name: 'contracts.revoke_contract', args: { contract_id: c.id } }]))}>Propose revoking this contract</button>
        </div>
      )}
      {(c.state === 'Accepted' || c.state === 'Revoked') && <Events session={session} path={path} />}
    </section>
  );
}

function Consent({ session, path, id, run, proposed }) {
  const [s, error, reload] = useLoad(async () => {
    const kinds = ['execution', 'logging', 'telemetry'];
    const r = await Promise.all(kinds.map((k) => call('GET', `${path}/consent/${k}`, { token: session.token })));
    return Object.fromEntries(kinds.map((k, i) => [k, r[i].value]));
  }, [path]);
  const member = session.kind === 'member';
  const show = (k) =>
    s && (
      <tr data-consent={k}>
        <td>{k}</td>
        <td class={s[k].status === 'enabled' ? 'ok' : 'bad'}>{s[k].status}</td>
        <td>{s[k].reason ? `${s[k].reason.code}: ${s[k].reason.message}` : ''}</td>
      </tr>
    );
  const after = (fn) => async () => {
    const r = await fn();
    reload();
    return r;
  };
  return (
    <div>
      <h2>Consent</h2>
      <ErrorBox error={error} />
      <table data-testid="consent">
        <tbody>
          {show('execution')}
          {show('logging')}
          {show('telemetry')}
        </tbody>
      </table>
      {member && (
        <div class="buttons">
          <button onClick={() => run('kill', after(async () => (await call('POST', `${path}/consent/execution/disable`, { token: session.token, json: {} }), 'your kill switch is pulled: execution is disabled')))}>
            Disable execution (my kill switch)
          </button>
          <button onClick={() => run('unkill', after(async () => (await call('POST', `${path}/consent/execution/enable`, { token: session.token, json: {} }), 'your kill switch is released')))}>
            Enable execution (release my kill switch)
          </button>
          <button onClick={() => run('logging', () => proposed([{ name: 'consent.enable_logging', args: { contract_id: id } }]))}>Propose enabling logging</button>
          <button onClick={() => run('logging-off', () => proposed([{ name: 'consent.disable_logging', args: { contract_id: id } }]))}>Disable logging</button>
          <button onClick={() => run('telemetry', () => proposed([{ name: 'consent.enable_telemetry', args: { contract_id: id } }]))}>Propose enabling telemetry</button>
          <button onClick={() => run('telemetry-off', () => proposed([{ name: 'consent.disable_telemetry', args: { contract_id: id } }]))}>Disable telemetry</button>
        </div>
      )}
    </div>
  );
}

function Spec({ session, path, id, run, proposed, member }) {
  const [s, error] = useLoad(() => call('GET', `${path}/deployment-spec`, { token: session.token }).then((r) => r.value), [path]);
  const [text, setText] = useState('');
  return (
    <div>
      <h2>Deployment spec</h2>
      <ErrorBox error={error} />
      {s && <pre data-testid="deployment-spec">{pretty(s.data)}</pre>}
      {member && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            run('spec', () => {
              let data;
              try {
                data = JSON.parse(text);
              } catch (err) {
                throw new Error(`the spec is not JSON: ${err.message}`);
              }
              return proposed([{ name: 'contracts.set_deployment_spec', args: { contract_id: id, data } }]);
            });
          }}
        >
          <label for="spec-data">New deployment spec (JSON)</label>
          <textarea id="spec-data" rows="3" value={text} onInput={(e) => setText(e.target.value)} />
          <button type="submit">Propose deployment spec</button>
        </form>
      )}
    </div>
  );
}

function Policy({ session, path, id, run, proposed, member }) {
  const [p, error] = useLoad(() => call('GET', `${path}/cleanroom-policy`, { token: session.token }).then((r) => r.value), [path]);
  const [text, setText] = useState('');
  const [type, setType] = useState('add');
  let claims = null;
  try {
    claims = text ? JSON.parse(text) : null;
  } catch (_) {
    claims = null;
  }
  return (
    <div>
      <h2>Clean-room policy</h2>
      <ErrorBox error={error} />
      {p && <pre data-testid="cleanroom-policy">{pretty(p.policy)}</pre>}
      {member && p && (
        <form
          onSubmit={(e) => {
            e.preventDefault();
            run('policy', () => {
              if (!claims || typeof claims !== 'object') throw new Error('the claims are not a JSON object: {"<claim>": ["value", …]}');
              return proposed([{ name: 'contracts.set_cleanroom_policy', args: { contract_id: id, type, claims } }]);
            });
          }}
        >
          <label for="policy-type">Change</label>
          <select id="policy-type" value={type} onChange={(e) => setType(e.target.value)}>
            <option value="add">add claims</option>
            <option value="remove">remove claims</option>
          </select>
          <label for="policy-claims">Claims (JSON), e.g. {'{"x-ms-sevsnpvm-hostdata": ["…"]}'}</label>
          <textarea id="policy-claims" rows="3" value={text} onInput={(e) => setText(e.target.value)} />
          {claims && typeof claims === 'object' && <Diff before={p.policy} after={policyAfter(p.policy, { type, claims })} />}
          <button type="submit">Propose policy change</button>
        </form>
      )}
    </div>
  );
}

function Events({ session, path }) {
  const [filter, setFilter] = useState({ scope: '', id: '' });
  const [page, setPage] = useState({ link: null, prev: [] });
  const [verified, setVerified] = useState({});
  const [addError, setAddError] = useState(null);
  const base = () => {
    const q = new URLSearchParams({ limit: '10' });
    if (filter.scope) q.set('scope', filter.scope);
    if (filter.id) q.set('id', filter.id);
    return `${path}/events?${q}`;
  };
  const [list, error, reload] = useLoad(() => call('GET', page.link || base(), { token: session.token }).then((r) => r.value), [path, filter.scope, filter.id, page.link]);
  const verify = async (e) => {
    setVerified((v) => ({ ...v, [e.tx_id]: { pending: true } }));
    try {
      const verifierKey = await attestedVerifierKey();
      // A transaction is signed by the next checkpoint, moments after it commits: wait for it.
      let receipt;
      for (let attempt = 0; ; attempt++) {
        try {
          receipt = (await call('GET', `/node/receipt/${encodeURIComponent(e.tx_id)}?format=json&entry=true`, { token: session.token })).value;
          break;
        } catch (err) {
          if (!(err instanceof ApiError && err.status === 503 && attempt < 20)) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
      if (String(e.seqno) !== e.tx_id.split('.')[1]) throw new Error(`the event's seqno ${e.seqno} is not that of ${e.tx_id}`);
      const r = await verifyReceipt(receipt, e.tx_id, verifierKey);
      setVerified((v) => ({
        ...v,
        [e.tx_id]: {
          ok: true,
          text: `verified: ledger entry ${e.tx_id}${r.termProven ? '' : ' (term as claimed)'} is leaf ${r.leafIndex} of the tree of size ${r.treeSize} (root ${r.root.slice(0, 16)}…), signed by the attested node key (${r.signer}); the event's data is encrypted in the entry`,
        },
      }));
    } catch (err) {
      setVerified((v) => ({ ...v, [e.tx_id]: { ok: false, text: `does NOT verify: ${err instanceof ApiError ? err.toString() : err.message}` } }));
    }
  };
  const add = async (ev) => {
    ev.preventDefault();
    setAddError(null);
    const f = ev.target.elements;
    try {
      const data = JSON.parse(f.data.value || '{}');
      const q = new URLSearchParams();
      if (f.scope.value) q.set('scope', f.scope.value);
      if (f.eid.value) q.set('id', f.eid.value);
      await call('POST', `${path}/events?${q}`, { token: session.token, json: data });
      reload();
    } catch (err) {
      setAddError(err instanceof SyntaxError ? new Error(`the event is not JSON: ${err.message}`) : err);
    }
  };
  return (
    <div>
      <h2>Events</h2>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault();
          setPage({ link: null, prev: [] });
          setFilter({ scope: e.target.elements.fscope.value, id: e.target.elements.fid.value });
        }}
      >
        <label for="fscope">Scope</label>
        <input id="fscope" name="fscope" />
        <label for="fid">Id</label>
        <input id="fid" name="fid" />
        <button type="submit">Filter</button>
      </form>
      <ErrorBox error={error} />
      <table data-testid="events">
        <thead>
          <tr>
            <th scope="col">seqno</th>
            <th scope="col">scope / id</th>
            <th scope="col">time</th>
            <th scope="col">data</th>
            <th scope="col">receipt</th>
          </tr>
        </thead>
        <tbody>
          {((list && list.value) || []).map((e) => {
            const v = verified[e.tx_id];
            return (
              <tr data-tx={e.tx_id}>
                <td>{e.seqno}</td>
                <td>
                  {e.scope} / {e.id}
                </td>
                <td>{fmtTime(e.timestamp)}</td>
                <td>
                  <code>{JSON.stringify(e.data)}</code>
                </td>
                <td>
                  <button onClick={() => verify(e)} aria-label={`verify the receipt of ${e.tx_id}`}>
                    Verify
                  </button>{' '}
                  {v && !v.pending && (
                    <span class={v.ok ? 'ok verdict' : 'bad verdict'} role="status">
                      {v.ok ? '✓ ' : '✗ '}
                      {v.text}
                    </span>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <div class="buttons">
        <button disabled={!page.prev.length} onClick={() => setPage({ link: page.prev[page.prev.length - 1], prev: page.prev.slice(0, -1) })}>
          Previous page
        </button>
        <button disabled={!(list && list.next_link)} onClick={() => setPage({ link: list.next_link, prev: [...page.prev, page.link] })}>
          Next page
        </button>
      </div>
      {session.kind === 'member' && (
      <form onSubmit={add} aria-labelledby="add-event">
        <h3 id="add-event">Record an event</h3>
        <label for="escope">Scope</label>
        <input id="escope" name="scope" />
        <label for="eid">Id</label>
        <input id="eid" name="eid" />
        <label for="edata">Data (JSON)</label>
        <textarea id="edata" name="data" rows="2" />
        <button type="submit">Record event</button>
        <ErrorBox error={addError} />
      </form>
      )}
    </div>
  );
}

/**
 * The key receipts are checked with: the checkpoint key /node/identity names, accepted only if it
 * is the node key of an attestation document whose signature and report_data binding verify here.
 */
async function attestedVerifierKey() {
  const [att, id] = await Promise.all([call('GET', '/node/attestation'), call('GET', '/node/identity')]);
  const checks = await checkAttestation(att.value, id.value);
  const failed = checks.filter((c) => c.ok === false && c.check !== 'hardware evidence');
  if (failed.length) throw new Error(`the node's attestation does not verify here (${failed.map((c) => c.check).join(', ')})`);
  return id.value.verifier_key;
}

// ===== the shell =====

function App() {
  const [session, setSession] = useState(null);
  const [expected, setExpected] = useState(new Map());
  const [members, setMembers] = useState([]);
  const route = useRoute();
  useEffect(() => {
    if (!session) return;
    all('/gov/members', session.token).then(setMembers, () => {});
  }, [session]);
  const names = Object.fromEntries(members.map((m) => [m.member_id, (m.member_data && m.member_data.name) || short(m.member_id)]));
  if (!session) return <SignIn onSignedIn={setSession} />;
  const parts = route.split('/').filter(Boolean);
  let page;
  if (parts[0] === 'members') page = <MembersPage session={session} />;
  else if (parts[0] === 'proposals' && parts[1]) page = <ProposalPage session={session} id={parts[1]} names={names} expected={expected} />;
  else if (parts[0] === 'proposals') page = <ProposalsPage session={session} names={names} />;
  else if (parts[0] === 'contracts' && parts[1]) page = <ContractPage session={session} id={decodeURIComponent(parts[1])} names={names} members={members} />;
  else if (parts[0] === 'contracts') page = <ContractsPage session={session} members={members} />;
  else page = <ServicePage session={session} expected={expected} setExpected={setExpected} />;
  const link = (href, label) => (
    <a href={href} aria-current={`#/${parts[0] || 'service'}` === href ? 'page' : undefined}>
      {label}
    </a>
  );
  return (
    <div>
      <a class="skip" href="#main" onClick={(e) => (e.preventDefault(), document.getElementById('main').focus())}>
        Skip to content
      </a>
      <header>
        <nav aria-label="main">
          <strong>CGS</strong>
          {link('#/service', 'Service')}
          {link('#/members', 'Members')}
          {session.kind === 'member' && link('#/proposals', 'Proposals')}
          {link('#/contracts', 'Contracts')}
        </nav>
        <span data-testid="signed-in">
          Signed in as {session.name} ({session.kind})
        </span>
        <button onClick={() => setSession(null)}>Sign out</button>
      </header>
      <main id="main" tabindex="-1">
        {page}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app'));
