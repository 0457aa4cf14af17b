// Keys, signed governance messages and the checks the console makes itself, with WebCrypto only:
// Ed25519 signing and verification, SHA-256. The member's private key is imported non-extractable
// and never leaves the browser.

import { encode, Tagged } from './cbor.js';

const subtle = globalThis.crypto.subtle;
const te = new TextEncoder();

export const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
export function unhex(s) {
  if (typeof s !== 'string' || s.length % 2 || /[^0-9a-fA-F]/.test(s)) throw new Error('not hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}
export function b64(bytes) {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
export function unb64(s) {
  const bin = atob(String(s).replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
/** Standard base64 with padding only (what the ledger's notes and keys use). */
export function unb64Strict(s) {
  if (typeof s !== 'string' || s.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error('not standard base64');
  return unb64(s);
}
export const sha256 = async (bytes) => new Uint8Array(await subtle.digest('SHA-256', bytes));
export const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
};
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

/** A member's key, from the PKCS#8 PEM file `cgs keygen` and the sandbox write. */
export async function importMemberKey(pem) {
  const m = /-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/.exec(pem);
  if (!m) throw new Error('not a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----): choose the member\'s .key file');
  const der = unb64(m[1].replace(/\s+/g, ''));
  let jwk;
  try {
    // Extractable only for this one export of the public half (JWK `x`).
    const k = await subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
    jwk = await subtle.exportKey('jwk', k);
  } catch (e) {
    throw new Error(`not an Ed25519 private key (${e.message || e})`);
  }
  const privateKey = await subtle.importKey('pkcs8', der, { name: 'Ed25519' }, false, ['sign']);
  der.fill(0);
  const publicKey = unb64(jwk.x);
  const memberId = hex(await sha256(publicKey));
  return { privateKey, publicKey, memberId };
}

/**
 * A governance message (API.md, "Signed governance messages"): a tagged COSE_Sign1 in
 * deterministic CBOR, EdDSA, the JSON payload attached, a fresh 16-byte nonce.
 */
export async function signMessage(key, type, payload, proposalId) {
  const header = new Map([
    [1, -8],
    [4, te.encode(key.memberId)],
    ['cgs.msg.type', type],
    ['cgs.msg.created_at', Math.floor(Date.now() / 1000)],
    ['cgs.msg.nonce', crypto.getRandomValues(new Uint8Array(16))],
  ]);
  if (proposalId) header.set('cgs.msg.proposal_id', proposalId);
  const protectedBytes = encode(header);
  const body = te.encode(JSON.stringify(payload));
  const tbs = encode(['Signature1', protectedBytes, new Uint8Array(0), body]);
  const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key.privateKey, tbs));
  return encode(new Tagged(18, [protectedBytes, new Map(), body, sig]));
}

async function ed25519Verify(publicKey, signature, data) {
  const k = await subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
  return subtle.verify({ name: 'Ed25519' }, k, signature, data);
}

/** serde_json's compact form of a value with sorted keys: what the node signed. */
export function canonicalJson(v) {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const keys = Object.keys(v).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

/**
 * The checks of `cgs verify service` that need no AMD certificate chain: the node key signed the
 * plugin set it reports, and the evidence's report_data binds that key. Returns a list of
 * `{check, ok, detail}`.
 */
export async function checkAttestation(doc, identity) {
  const checks = [];
  const add = (check, ok, detail) => checks.push({ check, ok, detail });
  let pk;
  try {
    pk = unb64(doc.node_public_key);
    if (pk.length !== 32) throw new Error('not 32 bytes');
  } catch (e) {
    add('node key', false, `node_public_key is not a base64 Ed25519 key: ${e.message}`);
    return checks;
  }
  const signed = { ...doc };
  delete signed.signature;
  const data = concat(te.encode('cgs-node-attestation-v1\0'), te.encode(canonicalJson(signed)));
  let sigOk = false;
  try {
    sigOk = await ed25519Verify(pk, unb64(doc.signature), data);
  } catch (e) {
    sigOk = false;
  }
  add('node signature over the plugin set', sigOk, sigOk ? 'the node key signed the plugins, constitution and evidence shown' : 'the signature does not verify with the node key');
  const expected = concat(await sha256(pk), new Uint8Array(32));
  let reportData = null;
  const ev = doc.evidence || {};
  try {
    if (ev.kind === 'virtual') reportData = unhex(ev.report_data);
    else if (ev.kind === 'snp') reportData = unb64(ev.report).slice(0x50, 0x90);
  } catch (e) {
    reportData = null;
  }
  const bound = reportData !== null && equal(reportData, expected);
  add('report_data binds the node key', bound, bound ? 'report_data = SHA-256(node key) ‖ 0³²' : `report_data is not SHA-256(node key) ‖ 0³² (evidence kind ${ev.kind})`);
  if (identity) {
    let same = false;
    try {
      same = (await checkedVerifierKey(identity.verifier_key, pk)) !== null && identity.public_key === doc.node_public_key;
    } catch (_) {
      same = false;
    }
    add('checkpoint key is the attested key', same, same ? `receipts are checked with ${identity.verifier_key}` : 'the checkpoint key GET /node/identity names is not the attested node key');
  }
  if (ev.kind === 'virtual' || doc.insecure) {
    add('hardware evidence', false, 'virtual evidence: no hardware vouches for this node (sandbox only)');
  } else {
    add('hardware evidence', null, 'SEV-SNP: check the AMD certificate chain and TCB with `cgs verify service`');
  }
  return checks;
}

// ===== receipts: C2SP checkpoint + RFC 9162 inclusion =====

const validKeyName = (n) => typeof n === 'string' && n.length > 0 && !/[\s+\p{Cc}]/u.test(n);

export function parseVerifierKey(s) {
  // The key is base64, which may itself contain '+': split at the first two only.
  const [name, id, ...rest] = String(s).split('+');
  const key = rest.join('+');
  const raw = unb64Strict(key || '');
  if (!validKeyName(name) || !/^[0-9a-f]{8}$/.test(id || '') || raw.length !== 33 || raw[0] !== 1) throw new Error('the verifier key is not name+id+base64(0x01‖Ed25519)');
  return { name, id, publicKey: raw.slice(1) };
}

/**
 * The verifier key string, if it holds exactly `attestedKey` (raw Ed25519) and its key id is the
 * one recomputed from its name and key; otherwise null. Receipts are checked only with a key that
 * passed this, never with what /node/identity says alone.
 */
export async function checkedVerifierKey(verifierKey, attestedKey) {
  const k = parseVerifierKey(verifierKey);
  if (!equal(k.publicKey, attestedKey)) return null;
  if ((await keyId(k.name, k.publicKey)) !== k.id) return null;
  return verifierKey;
}

async function keyId(name, publicKey) {
  return hex((await sha256(concat(te.encode(name), new Uint8Array([0x0a, 0x01]), publicKey))).slice(0, 4));
}

/** Verify a C2SP signed note against one verifier key; returns the note's text. */
export async function verifyNote(note, verifierKey) {
  const key = parseVerifierKey(verifierKey);
  if ((await keyId(key.name, key.publicKey)) !== key.id) throw new Error('the verifier key id does not match its key');
  // As note.rs parses it: no control characters but newlines, a blank line before the
  // signatures, each "— <name> <base64(id ‖ signature)>", at most 100.
  if (typeof note !== 'string' || /[\p{Cc}]/u.test(note.replace(/\n/g, ''))) throw new Error('the note has control characters');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint is not a signed note (no blank line before the signatures)');
  const sigs = note.slice(split + 2);
  if (!sigs.endsWith('\n')) throw new Error('the note must end with a newline');
  const text = note.slice(0, split + 1);
  const lines = sigs.slice(0, -1).split('\n');
  if (lines.length > 100) throw new Error('too many signatures');
  let verified = false;
  for (const line of lines) {
    if (!line.startsWith('\u2014 ')) throw new Error('a signature line does not start with "— "');
    const rest = line.slice(2);
    const at = rest.indexOf(' ');
    if (at < 0) throw new Error('a signature line has no signature');
    const name = rest.slice(0, at);
    if (!validKeyName(name)) throw new Error('invalid key name in a signature line');
    const raw = unb64Strict(rest.slice(at + 1));
    if (raw.length < 5) throw new Error('a signature is too short');
    if (name !== key.name || hex(raw.slice(0, 4)) !== key.id) continue;
    if (!(await ed25519Verify(key.publicKey, raw.slice(4), te.encode(text)))) throw new Error(`the checkpoint signature of ${name} does not verify`);
    verified = true;
  }
  if (!verified) throw new Error('the checkpoint carries no signature by the node key');
  return text;
}

/** Verify a checkpoint (a signed note of origin, size, root) against the node's verifier key. */
export async function verifyCheckpoint(note, verifierKey) {
  return checkpointFields(await verifyNote(note, verifierKey));
}

/** Origin, size and root of a checkpoint's text (`origin\nsize\nbase64(root)\n[extensions]`). */
function checkpointFields(text) {
  const [origin, size, root, ...extensions] = text.slice(0, -1).split('\n');
  if (!origin) throw new Error('the checkpoint has no origin');
  if (!/^(0|[1-9][0-9]*)$/.test(size || '') || !Number.isSafeInteger(Number(size))) throw new Error('the checkpoint size is not a number');
  if (extensions.some((e) => !e)) throw new Error('the checkpoint has an empty extension line');
  const rootBytes = unb64Strict(root || '');
  if (rootBytes.length !== 32) throw new Error('the checkpoint root is not 32 bytes');
  return { origin, size: Number(size), root: rootBytes };
}

/**
 * A checkpoint's origin, size and root, read from its note without checking its signature
 * (`verifyCheckpointByAny` checks it against the service's node keys).
 */
export function parseCheckpoint(note) {
  if (typeof note !== 'string' || /[\p{Cc}]/u.test(note.replace(/\n/g, ''))) throw new Error('the checkpoint has control characters');
  const split = note.lastIndexOf('\n\n');
  if (split < 0) throw new Error('the checkpoint is not a signed note (no blank line before the signatures)');
  const cp = checkpointFields(note.slice(0, split + 1));
  if (!validKeyName(cp.origin)) throw new Error('the checkpoint has no origin');
  return cp;
}

const bitLen = (x) => (x === 0n ? 0 : x.toString(2).length);
const countOnes = (x) => [...x.toString(2)].filter((c) => c === '1').length;
function trailingOnes(x) {
  let n = 0;
  while (x & 1n) {
    x >>= 1n;
    n++;
  }
  return n;
}

/**
 * RFC 9162 §2.1.4.2: that the tree of `size2` with `root2` extends the tree of `size1` with
 * `root1`, given the consistency proof (hashes as bytes). Throws with the reason. The same
 * algorithm and length check as `cgs_core::merkle::verify_consistency`, on BigInt sizes.
 */
export async function verifyConsistency(size1, size2, proof, root1, root2) {
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 <= 0 || size1 > size2) throw new Error(`no consistency proof goes from ${size1} to ${size2} entries`);
  if (size1 === size2) {
    if (proof.length) throw new Error('the proof between equal sizes must be empty');
    if (!equal(root1, root2)) throw new Error('the roots differ at the same size');
    return;
  }
  if ([root1, root2, ...proof].some((h) => !(h instanceof Uint8Array) || h.length !== 32)) throw new Error('a hash is not 32 bytes');
  const [m, n] = [BigInt(size1) - 1n, BigInt(size2) - 1n];
  const inner = bitLen(m ^ n);
  const shift = trailingOnes(m);
  const border = countOnes(m >> BigInt(inner));
  const seedGiven = (BigInt(size1) & m) !== 0n;
  const want = inner - Math.min(shift, inner) + border + (seedGiven ? 1 : 0);
  if (proof.length !== want) throw new Error(`the proof has ${proof.length} hashes, not ${want}`);
  const hashes = seedGiven ? proof : [root1, ...proof];
  const node = (l, r) => sha256(concat(new Uint8Array([1]), l, r));
  let [fnum, snum] = [m, n];
  while (fnum & 1n) {
    fnum >>= 1n;
    snum >>= 1n;
  }
  let [fr, sr] = [hashes[0], hashes[0]];
  for (const c of hashes.slice(1)) {
    if (snum === 0n) throw new Error('the proof is too long');
    if (fnum & 1n || fnum === snum) {
      fr = await node(c, fr);
      sr = await node(c, sr);
      while ((fnum & 1n) === 0n && fnum !== 0n) {
        fnum >>= 1n;
        snum >>= 1n;
      }
    } else {
      sr = await node(sr, c);
    }
    fnum >>= 1n;
    snum >>= 1n;
  }
  if (snum !== 0n) throw new Error('the proof is too short');
  if (!equal(fr, root1) || !equal(sr, root2)) throw new Error('the proof does not lead to both roots');
}

/** The C2SP verifier key string of the raw Ed25519 key `publicKey` under `name`. */
export async function verifierKeyFor(name, publicKey) {
  return `${name}+${await keyId(name, publicKey)}+${b64(concat(new Uint8Array([1]), publicKey))}`;
}

/**
 * Verify a checkpoint signed by one of `publicKeys` (raw Ed25519: the service's nodes' keys),
 * under its own origin; throws the last reason when none signed it.
 */
export async function verifyCheckpointByAny(note, publicKeys) {
  const { origin } = parseCheckpoint(note);
  if (publicKeys.some((pk) => !(pk instanceof Uint8Array) || pk.length !== 32)) throw new Error('a node key is not 32 bytes of Ed25519');
  let why = new Error('no node key to check the checkpoint with');
  for (const pk of publicKeys) {
    try {
      return await verifyCheckpoint(note, await verifierKeyFor(origin, pk));
    } catch (e) {
      // A signature by a known key that does not verify says more than keys that signed nothing.
      if (!/does not verify/.test(why.message)) why = e;
    }
  }
  throw why;
}

/** RFC 9162 leaf hash: SHA-256(0x00 ‖ leaf input). */
export const leafHash = (input) => sha256(concat(new Uint8Array([0]), input));

/** RFC 9162 §2.1.3.2: the root an inclusion proof leads to from a leaf hash. */
export async function rootFromInclusion(leafHash, index, size, path) {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0 || index >= size) throw new Error('the leaf index is outside the tree');
  if (leafHash.length !== 32 || path.some((p) => p.length !== 32)) throw new Error('a hash in the proof is not 32 bytes');
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) throw new Error('the inclusion proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      r = await sha256(concat(new Uint8Array([1]), p, r));
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = await sha256(concat(new Uint8Array([1]), r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error('the inclusion proof is too short');
  return r;
}

/**
 * Verify a JSON receipt (`GET /node/receipt/{tx}?format=json`) for transaction `txId` against the
 * node's verifier key: the checkpoint's signature, its size, and the RFC 9162 inclusion of the
 * leaf under the signed root. Throws with the reason; returns what was proven.
 */
export async function verifyReceipt(receipt, txId, verifierKey) {
  const m = /^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$/.exec(String(txId));
  if (!m) throw new Error(`${txId} is not a transaction id (term.seqno)`);
  if (receipt.tx_id !== txId) throw new Error(`the receipt is for ${receipt.tx_id}, not ${txId}`);
  const [term, seqno] = [BigInt(m[1]), BigInt(m[2])];
  if (!Number.isSafeInteger(receipt.leaf_index) || seqno !== BigInt(receipt.leaf_index) + 1n) throw new Error('the transaction is not at the leaf index (seqno = leaf index + 1)');
  const leaf = unhex(receipt.leaf_input);
  if (leaf.length !== 32) throw new Error('leaf_input is not 32 bytes');
  // Without the entry a receipt proves only that some entry sits at that leaf. With it, the
  // entry hashes to the leaf and names the transaction's term and seqno (entry.rs: version 1,
  // term and seqno as 64-bit big-endian).
  let termProven = false;
  if (receipt.entry !== undefined) {
    const entry = unb64Strict(receipt.entry);
    if (!equal(await sha256(entry), leaf)) throw new Error('the entry does not hash to the leaf input');
    if (entry.length < 17 || entry[0] !== 1) throw new Error('the entry is not a version-1 ledger entry');
    const view = new DataView(entry.buffer, entry.byteOffset, entry.byteLength);
    if (view.getBigUint64(1) !== term || view.getBigUint64(9) !== seqno) throw new Error(`the entry is ${view.getBigUint64(1)}.${view.getBigUint64(9)}, not ${txId}`);
    termProven = true;
  }
  const cp = await verifyCheckpoint(receipt.checkpoint, verifierKey);
  if (cp.size !== receipt.tree_size) throw new Error(`the checkpoint is for size ${cp.size}, the receipt for ${receipt.tree_size}`);
  const path = receipt.inclusion_proof.map((h) => {
    const b = unhex(h);
    if (b.length !== 32) throw new Error('a proof hash is not 32 bytes');
    return b;
  });
  const root = await rootFromInclusion(await leafHash(leaf), receipt.leaf_index, receipt.tree_size, path);
  if (!equal(root, cp.root)) throw new Error('the inclusion proof does not lead to the signed root');
  return { leafIndex: receipt.leaf_index, treeSize: cp.size, root: hex(root), signer: cp.origin, termProven };
}
