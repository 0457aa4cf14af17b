// Unit tests of the console's own cryptography (src/crypto.js, src/cbor.js), in Node.js's
// WebCrypto: on trees and notes this test makes itself, and on the published vectors in
// ../shared/fixtures when that folder is there (skipped, saying so, when it is not).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode, Tagged } from '../src/cbor.js';
import { b64, unb64, hex, unhex, sha256, concat, leafHash, rootFromInclusion, verifyNote, verifyReceipt, canonicalJson, checkedVerifierKey, checkAttestation, verifyConsistency, parseCheckpoint, verifyCheckpointByAny } from '../src/crypto.js';

const te = new TextEncoder();
let checks = 0;
const ok = (c, msg) => {
  assert.ok(c, msg);
  checks++;
};
async function rejects(p, re, msg) {
  await assert.rejects(p, re, msg);
  checks++;
}

// ---- deterministic CBOR: the encodings the service's parser requires ----
ok(hex(encode(0)) === '00' && hex(encode(23)) === '17' && hex(encode(24)) === '1818' && hex(encode(-8)) === '27', 'small integers');
ok(hex(encode(1796434427)) === '1a6b1369fb', 'a 32-bit integer');
ok(hex(encode(2 ** 40)) === '1b0000010000000000', 'a 64-bit integer');
ok(hex(encode('a')) === '6161' && hex(encode(new Uint8Array([1, 2]))) === '420102', 'text and bytes');
// Map keys sorted by their encoding: 1 (0x01) < 4 (0x04) < "b" (0x6162) < "aa" (0x626161).
ok(hex(encode(new Map([['aa', 1], ['b', 2], [4, 3], [1, 4]]))) === 'a4010404036162026261610' + '1', 'map keys in deterministic order');
ok(hex(encode(new Tagged(18, []))) === 'd280', 'COSE_Sign1 tag');
ok(canonicalJson({ b: 1, a: [{ d: 'x', c: null }] }) === '{"a":[{"c":null,"d":"x"}],"b":1}', 'canonical JSON sorts keys');

// ---- RFC 9162 trees made here, with an independent root computation ----
async function mth(leaves) {
  if (leaves.length === 0) return sha256(new Uint8Array(0));
  if (leaves.length === 1) return leafHash(leaves[0]);
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return sha256(concat(new Uint8Array([1]), await mth(leaves.slice(0, k)), await mth(leaves.slice(k))));
}
async function path(leaves, m) {
  if (leaves.length <= 1) return [];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  if (m < k) return [...(await path(leaves.slice(0, k), m)), await mth(leaves.slice(k))];
  return [...(await path(leaves.slice(k), m - k)), await mth(leaves.slice(0, k))];
}
for (let size = 1; size <= 17; size++) {
  const leaves = Array.from({ length: size }, (_, i) => te.encode(`leaf ${i}`));
  const root = await mth(leaves);
  for (let i = 0; i < size; i++) {
    const p = await path(leaves, i);
    ok(hex(await rootFromInclusion(await leafHash(leaves[i]), i, size, p)) === hex(root), `inclusion ${i} of ${size}`);
    if (p.length) {
      const bad = p.map((x) => x.slice());
      bad[0][0] ^= 1;
      ok(hex(await rootFromInclusion(await leafHash(leaves[i]), i, size, bad)) !== hex(root), `a flipped bit in proof ${i}/${size} changes the root`);
      await rejects(rootFromInclusion(await leafHash(leaves[i]), i, size, p.slice(1)), /too short|outside/, `a shortened proof ${i}/${size}`);
    }
  }
  await rejects(rootFromInclusion(await leafHash(leaves[0]), size, size, []), /outside the tree/, 'an index past the tree');
}

// ---- RFC 9162 consistency proofs made here (SUBPROOF, §2.1.4.1), every pair up to 17 leaves ----
async function subproof(m, leaves, whole) {
  if (m === leaves.length) return whole ? [] : [await mth(leaves)];
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  if (m <= k) return [...(await subproof(m, leaves.slice(0, k), whole)), await mth(leaves.slice(k))];
  return [...(await subproof(m - k, leaves.slice(k), false)), await mth(leaves.slice(0, k))];
}
{
  const leaves = Array.from({ length: 17 }, (_, i) => te.encode(`leaf ${i}`));
  const roots = [null];
  for (let n = 1; n <= 17; n++) roots.push(await mth(leaves.slice(0, n)));
  for (let n = 1; n <= 17; n++) {
    for (let m = 1; m <= n; m++) {
      const proof = await subproof(m, leaves.slice(0, n), true);
      await verifyConsistency(m, n, proof, roots[m], roots[n]);
      checks++;
      if (m < n) {
        // Another first tree (a rewritten history), a flipped proof hash, a missing or an extra one.
        await rejects(verifyConsistency(m, n, proof, roots[m === 1 ? 2 : m - 1], roots[n]), /does not lead|not \d+|too/, `another root at ${m} → ${n}`);
        if (proof.length) {
          const bad = proof.map((x) => x.slice());
          bad[bad.length - 1][0] ^= 1;
          await rejects(verifyConsistency(m, n, bad, roots[m], roots[n]), /does not lead/, `a flipped hash in ${m} → ${n}`);
          await rejects(verifyConsistency(m, n, proof.slice(1), roots[m], roots[n]), /hashes, not/, `a shortened proof ${m} → ${n}`);
        }
        await rejects(verifyConsistency(m, n, [...proof, roots[1]], roots[m], roots[n]), /hashes, not/, `a longer proof ${m} → ${n}`);
      }
    }
  }
  await rejects(verifyConsistency(3, 3, [], roots[3], roots[2]), /roots differ/, 'another root at the same size');
  await rejects(verifyConsistency(4, 3, [], roots[4], roots[3]), /no consistency proof/, 'a smaller second tree');
  await rejects(verifyConsistency(0, 3, [], roots[1], roots[3]), /no consistency proof/, 'an empty first tree');
  // A checkpoint's fields, read without its signature; damaged notes are refused.
  const note = `cgs/x\n5\n${b64(roots[5])}\n\n\u2014 cgs/x AAAAAAAA\n`;
  const cp = parseCheckpoint(note);
  ok(cp.origin === 'cgs/x' && cp.size === 5 && hex(cp.root) === hex(roots[5]), 'a checkpoint is read');
  for (const [bad, why] of [
    [note.replace('\n5\n', '\n05\n'), 'a size with a leading zero'],
    [note.replace('\n\n', '\n'), 'no blank line'],
    [note.replace(b64(roots[5]), 'AAAA'), 'a short root'],
    [note.replace('cgs/x\n', 'cgs x\n'), 'an origin with a space'],
    ['garbage', 'not a note'],
  ]) {
    let threw = false;
    try {
      parseCheckpoint(bad);
    } catch (_) {
      threw = true;
    }
    ok(threw, `parseCheckpoint refuses ${why}`);
  }
}

// ---- receipts signed here, with a key whose base64 contains '+' (split at the first two only) ----
const subtle = globalThis.crypto.subtle;
let key;
let verifierKey;
const origin = 'cgs/unit-test';
for (;;) {
  key = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const pk = new Uint8Array(await subtle.exportKey('raw', key.publicKey));
  const id = hex((await sha256(concat(te.encode(origin), new Uint8Array([0x0a, 0x01]), pk))).slice(0, 4));
  verifierKey = `${origin}+${id}+${b64(concat(new Uint8Array([1]), pk))}`;
  if (verifierKey.split('+').length > 3) break;
}
async function signedCheckpoint(size, root, k = key) {
  const text = `${origin}\n${size}\n${b64(root)}\n`;
  const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, k.privateKey, te.encode(text)));
  const id = unhex(verifierKey.split('+')[1]);
  return `${text}\n\u2014 ${origin} ${b64(concat(id, sig))}\n`;
}
{
  // Ledger entries as entry.rs encodes them: version 1, term, seqno (big-endian), payload.
  const entryBytes = (term, seqno, payload) => {
    const e = new Uint8Array(17 + payload.length);
    const v = new DataView(e.buffer);
    e[0] = 1;
    v.setBigUint64(1, BigInt(term));
    v.setBigUint64(9, BigInt(seqno));
    e.set(payload, 17);
    return e;
  };
  const entries = Array.from({ length: 9 }, (_, i) => entryBytes(2, i + 1, te.encode(`payload ${i + 1}`)));
  const inputs = await Promise.all(entries.map((e) => sha256(e)));
  const root = await mth(inputs);
  const checkpoint = await signedCheckpoint(9, root);
  const receipt = async (i) => ({ tx_id: `2.${i + 1}`, leaf_index: i, leaf_input: hex(inputs[i]), tree_size: 9, inclusion_proof: (await path(inputs, i)).map(hex), checkpoint });
  for (let i = 0; i < 9; i++) {
    const r = await verifyReceipt(await receipt(i), `2.${i + 1}`, verifierKey);
    ok(r.leafIndex === i && r.treeSize === 9 && r.root === hex(root), `receipt ${i}`);
  }
  const r = await receipt(4);
  // With the entry, the term is proven; a receipt naming another term, or an entry that is not
  // the leaf's, fails.
  const withEntry = { ...r, entry: b64(entries[4]) };
  ok((await verifyReceipt(withEntry, '2.5', verifierKey)).termProven === true, 'the entry proves the term');
  ok((await verifyReceipt(r, '2.5', verifierKey)).termProven === false, 'without the entry the term is only claimed');
  await rejects(verifyReceipt({ ...withEntry, tx_id: '999.5' }, '999.5', verifierKey), /the entry is 2\.5, not 999\.5/, 'another term with the entry');
  await rejects(verifyReceipt({ ...withEntry, entry: b64(entries[3]) }, '2.5', verifierKey), /does not hash to the leaf/, 'another entry');
  for (const bad of ['junk.5', '2.05', '2.5e0', '2. 5', '2.5.1', '02.5', '2.0x5']) {
    await rejects(verifyReceipt({ ...r, tx_id: bad }, bad, verifierKey), /not a transaction id/, `tx id ${bad}`);
  }
  // The checkpoint key is accepted only when it holds the attested key, with its id.
  const attested = unb64(verifierKey.split('+').slice(2).join('+')).slice(1);
  ok((await checkedVerifierKey(verifierKey, attested)) === verifierKey, 'the attested verifier key');
  const other2 = new Uint8Array(await subtle.exportKey('raw', (await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])).publicKey));
  ok((await checkedVerifierKey(verifierKey, other2)) === null, 'a verifier key for another key than the attested one');
  const [n0, , k0] = verifierKey.split('+');
  ok((await checkedVerifierKey(`${n0}+00000000+${verifierKey.split('+').slice(2).join('+')}`, attested)) === null, 'a wrong key id');
  void k0;
  // Notes as note.rs parses them: trailing fields, unpadded base64, control characters refused.
  const sigLine = checkpoint.split('\n\n')[1];
  await rejects(verifyNote(checkpoint.replace(sigLine, sigLine.replace('\n', ' extra\n')), verifierKey), /base64/, 'a trailing field');
  await rejects(verifyNote(checkpoint.replace(/=+\n$/, '\n'), verifierKey), /base64/, 'unpadded base64');
  await rejects(verifyNote(checkpoint.replace('\n9\n', '\n9\t\n'), verifierKey), /control characters/, 'a control character');
  await rejects(verifyReceipt(r, '2.6', verifierKey), /not 2\.6/, 'a receipt for another transaction');
  await rejects(verifyReceipt({ ...r, tx_id: '2.6' }, '2.6', verifierKey), /seqno = leaf index \+ 1/, 'a tx id that is not at the leaf');
  await rejects(verifyReceipt({ ...r, leaf_input: hex(inputs[3]) }, '2.5', verifierKey), /does not lead to the signed root/, 'another leaf');
  const flipped = r.inclusion_proof.slice();
  flipped[1] = (flipped[1][0] === '0' ? '1' : '0') + flipped[1].slice(1);
  await rejects(verifyReceipt({ ...r, inclusion_proof: flipped }, '2.5', verifierKey), /does not lead to the signed root/, 'a tampered proof');
  await rejects(verifyReceipt({ ...r, tree_size: 10 }, '2.5', verifierKey), /checkpoint is for size 9/, 'a tree size the checkpoint does not sign');
  const other = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  await rejects(verifyReceipt({ ...r, checkpoint: await signedCheckpoint(9, root, other) }, '2.5', verifierKey), /does not verify/, 'a checkpoint signed by another key');
  // Kept checkpoints: signed by one of the service's node keys, whichever it is.
  const nodeKey = unb64(verifierKey.split('+').slice(2).join('+')).slice(1);
  const otherKey = new Uint8Array(await subtle.exportKey('raw', other.publicKey));
  ok((await verifyCheckpointByAny(checkpoint, [otherKey, nodeKey])).size === 9, 'a checkpoint signed by one of the node keys');
  await rejects(verifyCheckpointByAny(checkpoint, [otherKey]), /no signature by the node key/, 'a checkpoint signed by none of the node keys');
  await rejects(verifyCheckpointByAny(checkpoint, []), /no node key/, 'no node keys');
  for (const keys of [[otherKey, nodeKey], [nodeKey, otherKey]]) {
    await rejects(verifyCheckpointByAny(checkpoint.replace('\n9\n', '\n8\n'), keys), /does not verify/, 'an edited checkpoint, whatever the keys and their order');
  }
  await rejects(verifyCheckpointByAny(checkpoint, [nodeKey, nodeKey.slice(1)]), /not 32 bytes/, 'a malformed node key');
  const forged = checkpoint.replace(`\n9\n`, `\n8\n`);
  await rejects(verifyReceipt({ ...r, checkpoint: forged, tree_size: 8 }, '2.5', verifierKey), /does not verify/, 'an edited checkpoint');
}

// ---- an attestation document signed here: its checks, and an identity that lies about the key ----
{
  const node = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const pk = new Uint8Array(await subtle.exportKey('raw', node.publicKey));
  const reportData = hex(concat(await sha256(pk), new Uint8Array(32)));
  const doc = { node_public_key: b64(pk), plugins: [{ name: 'audit', version: '0.1.0', blake3: 'ab'.repeat(32) }], evidence: { kind: 'virtual', report_data: reportData, measurement: 'cd'.repeat(48) }, insecure: true };
  doc.signature = b64(new Uint8Array(await subtle.sign({ name: 'Ed25519' }, node.privateKey, concat(te.encode('cgs-node-attestation-v1\0'), te.encode(canonicalJson(doc))))));
  const id = hex((await sha256(concat(te.encode('cgs/x'), new Uint8Array([0x0a, 0x01]), pk))).slice(0, 4));
  const identity = { public_key: b64(pk), verifier_key: `cgs/x+${id}+${b64(concat(new Uint8Array([1]), pk))}` };
  const result = async (d, i) => Object.fromEntries((await checkAttestation(d, i)).map((c) => [c.check, c.ok]));
  const good = await result(doc, identity);
  ok(good['node signature over the plugin set'] && good['report_data binds the node key'] && good['checkpoint key is the attested key'], 'an honest document');
  ok(good['hardware evidence'] === false, 'virtual evidence is flagged');
  const tampered = await result({ ...doc, plugins: [{ ...doc.plugins[0], blake3: 'ef'.repeat(32) }] }, identity);
  ok(tampered['node signature over the plugin set'] === false, 'a plugin hash changed after signing');
  const unbound = await result({ ...doc, evidence: { ...doc.evidence, report_data: '00'.repeat(64) } }, identity);
  ok(unbound['report_data binds the node key'] === false, 'evidence not bound to the node key');
  const liar = await result(doc, { ...identity, verifier_key: verifierKey });
  ok(liar['checkpoint key is the attested key'] === false, "an identity whose checkpoint key is not the attested key (the review's finding 1)");
}

// ---- published vectors (../shared/fixtures), when present ----
const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../../shared/fixtures/vectors');
if (!existsSync(fixtures)) {
  console.log('SKIPPED: the published vectors (../shared/fixtures/vectors is absent); the same code was tested above on data made here');
} else {
  const notes = JSON.parse(readFileSync(join(fixtures, 'c2sp/signed-note-vectors.json'))).vectors;
  for (const v of notes) {
    const valid = String(v.expect).startsWith('valid');
    const result = await verifyNote(v.note, v.verifierKey).then(
      (t) => t,
      () => null,
    );
    ok(valid ? result === v.noteText : result === null, `C2SP vector "${v.name}"`);
  }
  const dir = join(fixtures, 'transparency-dev-merkle/testdata/inclusion');
  let n = 0;
  for (const f of readdirSync(dir, { recursive: true }).filter((f) => f.endsWith('.json')).sort()) {
    {
      const v = JSON.parse(readFileSync(join(dir, f)));
      const proof = (v.proof || []).map(unb64);
      const got = await rootFromInclusion(unb64(v.leafHash), v.leafIdx, v.treeSize, proof).then(
        (r) => hex(r),
        () => null,
      );
      const match = got !== null && got === hex(unb64(v.root));
      ok(v.wantErr ? !match : match, `transparency-dev inclusion ${f}`);
      n++;
    }
  }
  const cdir = join(fixtures, 'transparency-dev-merkle/testdata/consistency');
  let c = 0;
  for (const f of readdirSync(cdir, { recursive: true }).filter((f) => f.endsWith('.json')).sort()) {
    const v = JSON.parse(readFileSync(join(cdir, f)));
    let valid = true;
    try {
      await verifyConsistency(v.size1, v.size2, (v.proof || []).map(unb64), unb64(v.root1), unb64(v.root2));
    } catch (_) {
      valid = false;
    }
    ok(v.wantErr ? !valid : valid, `transparency-dev consistency ${f}`);
    c++;
  }
  console.log(`published vectors: ${notes.length} C2SP notes, ${n} transparency-dev inclusion proofs, ${c} consistency proofs`);
}
console.log(`console unit tests: ${checks} checks passed`);
