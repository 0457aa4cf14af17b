// The public API, as the CLI uses it: same origin, JSON, the error envelope turned into an Error
// that carries the service's status, code and message.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() {
    return `${this.code} (${this.status}): ${this.message}`;
  }
}

export async function call(method, path, { token, json, cose, bytes } = {}) {
  const headers = {};
  let body;
  if (token) headers.authorization = `Bearer ${token}`;
  if (bytes) {
    headers['content-type'] = 'application/octet-stream';
    body = bytes;
  } else if (cose) {
    headers['content-type'] = 'application/cose';
    body = cose;
  } else if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body, credentials: 'omit', cache: 'no-store' });
  } catch (e) {
    throw new ApiError(0, 'NetworkError', `the service did not answer (${e.message})`);
  }
  const text = await r.text();
  let value = null;
  try {
    value = text ? JSON.parse(text) : null;
  } catch (e) {
    value = text;
  }
  if (!r.ok) {
    const err = value && value.error;
    throw new ApiError(r.status, (err && err.code) || `HTTP${r.status}`, (err && err.message) || String(text).slice(0, 200));
  }
  return { status: r.status, value, txId: r.headers.get('x-cgs-tx-id') };
}

/** All pages of a list (`{"value":[…],"next_link"}`), up to `max` items. */
export async function all(path, token, max = 1000) {
  let out = [];
  let next = path;
  while (next && out.length < max) {
    const { value } = await call('GET', next, { token });
    out = out.concat(value.value || []);
    next = value.next_link;
  }
  return out;
}
