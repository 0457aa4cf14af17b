// Deterministic CBOR (RFC 8949 §4.2.1), only what governance messages need: unsigned and
// negative integers, byte strings, text, arrays, maps (keys sorted by their encoding) and tags.
// The service accepts a signed message only in this form (a re-encoded one is a replay attempt).

export class Tagged {
  constructor(tag, value) {
    this.tag = tag;
    this.value = value;
  }
}

function head(major, n) {
  if (n < 24) return [(major << 5) | n];
  if (n < 0x100) return [(major << 5) | 24, n];
  if (n < 0x10000) return [(major << 5) | 25, n >> 8, n & 0xff];
  if (n < 0x100000000) return [(major << 5) | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  return head64(major, Math.floor(n / 0x100000000), n >>> 0);
}

function head64(major, hi, lo) {
  return [
    (major << 5) | 27,
    (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff,
    (lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff,
  ];
}

function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Encode `v`: a number (safe integer), Uint8Array, string, array, Map, or Tagged. */
export function encode(v) {
  const out = [];
  const put = (v) => {
    if (typeof v === 'number') {
      if (!Number.isSafeInteger(v)) throw new Error('only integers are encoded');
      if (v >= 0) out.push(...head(0, v));
      else out.push(...head(1, -1 - v));
    } else if (v instanceof Uint8Array) {
      out.push(...head(2, v.length));
      for (const b of v) out.push(b);
    } else if (typeof v === 'string') {
      const b = new TextEncoder().encode(v);
      out.push(...head(3, b.length));
      for (const x of b) out.push(x);
    } else if (Array.isArray(v)) {
      out.push(...head(4, v.length));
      v.forEach(put);
    } else if (v instanceof Map) {
      const entries = [...v.entries()].map(([k, val]) => [encode(k), val]);
      entries.sort((a, b) => compare(a[0], b[0]));
      out.push(...head(5, entries.length));
      for (const [k, val] of entries) {
        for (const b of k) out.push(b);
        put(val);
      }
    } else if (v instanceof Tagged) {
      out.push(...head(6, v.tag));
      put(v.value);
    } else {
      throw new Error(`cannot encode ${typeof v}`);
    }
  };
  put(v);
  return new Uint8Array(out);
}
