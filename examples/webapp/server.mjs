// The jwt_rls reference web application: a login page for two tenants'
// users and a page of the tenant's invoices, served on 127.0.0.1 by
// node:http (no framework: the routes fit on one screen). Every security
// decision about a token is the database's: the app hands jwt_rls the
// token, the request's DPoP proof, method and URL, and the row level
// security policy on `invoices` does the rest. README.md documents the
// HTTP endpoints.
//
// Configuration (environment; stack.py sets it):
//   WEBAPP_PORT                port on 127.0.0.1 (default 8080)
//   WEBAPP_ORIGIN              the origin browsers use, as in their Origin header and the
//                              proofs' htu (default http://127.0.0.1:<port>)
//   WEBAPP_APP_DATABASE_URL    PgBouncer (transaction mode) logging in as the API role `app`
//   WEBAPP_LOGIN_DATABASE_URL  PgBouncer (transaction mode) logging in as `webapp_login`
//   WEBAPP_AUDIENCE            the access tokens' aud (default invoices-api)

import { readFile } from 'node:fs/promises';
import http from 'node:http';
import pg from 'pg';
import { verifyPassword } from './passwords.mjs';

const port = Number(process.env.WEBAPP_PORT ?? 8080);
const origin = process.env.WEBAPP_ORIGIN ?? `http://127.0.0.1:${port}`;
const audience = process.env.WEBAPP_AUDIENCE ?? 'invoices-api';
for (const name of ['WEBAPP_APP_DATABASE_URL', 'WEBAPP_LOGIN_DATABASE_URL']) {
  if (!process.env[name]) throw new Error(`${name} is not set`);
}
// Browsers keep a Secure cookie only from a secure origin: https, or a
// loopback address over plain http (Chromium and Firefox treat
// 127.0.0.1, [::1] and localhost as secure contexts). Anywhere else the
// refresh cookie would silently be dropped, so refuse to start.
const { protocol, hostname } = new URL(origin);
if (protocol !== 'https:' && !['127.0.0.1', '[::1]', 'localhost'].includes(hostname)) {
  throw new Error(`WEBAPP_ORIGIN ${origin}: use https (plain http only on a loopback address)`);
}

// Behind PgBouncer in transaction mode a server connection is ours only
// from BEGIN to COMMIT (or for one statement): no session state, no named
// prepared statements (node-postgres uses the unnamed one unless told).
const apiDb = new pg.Pool({ connectionString: process.env.WEBAPP_APP_DATABASE_URL, max: 8 });
const loginDb = new pg.Pool({ connectionString: process.env.WEBAPP_LOGIN_DATABASE_URL, max: 4 });
// An idle pooled connection that breaks (PgBouncer restarted, say) is
// dropped by the pool; without a listener its error would end the process.
for (const pool of [apiDb, loginDb]) {
  pool.on('error', (e) => console.log(`idle database connection lost: ${e.code ?? ''} ${e.message}`));
}

// The refresh token lives only in this cookie: HttpOnly (no page script
// reads it), Secure (the __Secure- prefix makes browsers insist), SameSite
// Strict (no cross-site request carries it), sent only to the refresh
// endpoint. No Max-Age: it ends with the browser session.
const REFRESH_COOKIE = '__Secure-refresh_token';
const REFRESH_PATH = '/auth/refresh';
const cookieAttributes = `Path=${REFRESH_PATH}; HttpOnly; Secure; SameSite=Strict`;
const clearCookie = `${REFRESH_COOKIE}=; ${cookieAttributes}; Max-Age=0`;

const STATIC = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/dpop.js': ['dpop.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

const SECURITY_HEADERS = {
  // Only this origin's own scripts run, and nothing frames the pages.
  'Content-Security-Policy': "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    + "frame-ancestors 'none'; form-action 'self'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-store',
};

class HttpError extends Error {
  constructor(status, error, description, headers = {}) {
    super(description);
    Object.assign(this, { status, error, headers });
  }
}

function url(path) {
  return origin + path;
}

// --- reading a request ----------------------------------------------------

async function jsonBody(req) {
  if (!/^application\/json(;|$)/i.test(req.headers['content-type'] ?? '')) {
    // A cross-site HTML form can send only urlencoded, multipart or text/plain.
    throw new HttpError(415, 'invalid_request', 'the body must be application/json');
  }
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 16384) throw new HttpError(413, 'invalid_request', 'the body is too large');
  }
  try {
    const body = JSON.parse(text);
    if (body !== null && typeof body === 'object' && !Array.isArray(body)) return body;
  } catch { /* refused below */ }
  throw new HttpError(400, 'invalid_request', 'the body is not a JSON object');
}

// The request's DPoP header. Without one: 400 from the token endpoints,
// 401 from the API (RFC 9449 sections 5 and 7.1).
function dpopProof(req, status = 400) {
  const proof = req.headers.dpop;
  if (typeof proof !== 'string' || proof === '') {
    throw new HttpError(status, 'invalid_dpop_proof', 'the request has no DPoP header',
                        status === 401 ? { 'WWW-Authenticate': 'DPoP error="invalid_dpop_proof", algs="ES256"' } : {});
  }
  return proof;
}

// The access token of `Authorization: DPoP <token>` and the request's proof.
function credentials(req) {
  const match = /^DPoP ([A-Za-z0-9._~+/-]+=*)$/.exec(req.headers.authorization ?? '');
  if (!match) {
    throw new HttpError(401, 'invalid_token', 'the request needs Authorization: DPoP <access token>',
                        { 'WWW-Authenticate': 'DPoP algs="ES256"' });
  }
  return { token: match[1], proof: dpopProof(req, 401) };
}

function refreshCookie(req) {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...value] = part.trim().split('=');
    if (name === REFRESH_COOKIE) return value.join('=');
  }
  return undefined;
}

// CSRF: every POST must come from a page of this origin. Browsers send
// Origin with every POST, fetch and form alike, and Sec-Fetch-Site with
// every request; a client outside a browser sends the Origin it is
// configured for. SameSite=Strict already keeps the refresh cookie off
// cross-site requests; this check does not depend on it.
function checkOrigin(req) {
  const site = req.headers['sec-fetch-site'];
  if (req.headers.origin !== origin || (site !== undefined && site !== 'same-origin')) {
    throw new HttpError(403, 'cross_origin', 'cross-origin request refused');
  }
}

// --- the database -----------------------------------------------------------

// One transaction on `pool` with the access token bound to it by its
// proof for this request (authenticate(token, proof, method, url)), the
// row level security policies then see its claims. COMMIT unbinds it, so
// the pooled server connection carries nothing to its next client.
async function asTokenHolder(req, pool, method, path, work) {
  const { token, proof } = credentials(req);
  const client = await pool.connect();
  let broken;
  try {
    await client.query('BEGIN');
    const { rows } = await client.query('SELECT jwt_rls.authenticate($1, $2, $3, $4) AS claims',
                                        [token, proof, method, url(path)]);
    const result = await work(client, rows[0].claims);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK').catch((err) => { broken = err; });
    throw e;
  } finally {
    client.release(broken);
  }
}

// A token pair as the login and refresh endpoints answer it.
function issued({ access_token: access, refresh_token: refresh }) {
  // The payload of a token the database just signed: read, not verified.
  const { exp } = JSON.parse(Buffer.from(access.split('.')[1], 'base64url'));
  return {
    status: 200,
    headers: { 'Set-Cookie': `${REFRESH_COOKIE}=${refresh}; ${cookieAttributes}` },
    body: { access_token: access, token_type: 'DPoP', expires_in: exp - Math.floor(Date.now() / 1000) },
  };
}

// --- the endpoints ----------------------------------------------------------

async function login(req) {
  const { username, password } = await jsonBody(req);
  if (typeof username !== 'string' || typeof password !== 'string' || username.length > 64 || password.length > 1024) {
    throw new HttpError(400, 'invalid_request', 'username and password must be strings');
  }
  const proof = dpopProof(req);
  const { rows: [user] } = await loginDb.query(
    'SELECT tenant_id, password_hash FROM webapp.users WHERE username = $1', [username]);
  if (!(await verifyPassword(password, user?.password_hash)) || !user) {
    throw new HttpError(401, 'invalid_grant', 'wrong username or password');
  }
  // One statement: the login request's proof names the browser's key
  // (verify_dpop_proof checks it and returns its thumbprint), and the new
  // session is bound to that key: its access tokens carry cnf.jkt, its
  // refresh token refreshes only with a proof by the same key.
  const { rows: [session] } = await loginDb.query(
    `SELECT access_token, refresh_token
       FROM jwt_rls.start_session($1, $2::jsonb, jwt_rls.verify_dpop_proof($3, 'POST', $4))`,
    [username, JSON.stringify({ tenant_id: user.tenant_id, aud: audience }), proof, url('/auth/login')]);
  return issued(session);
}

async function refresh(req) {
  const token = refreshCookie(req);
  if (!token) throw new HttpError(401, 'invalid_grant', 'no refresh token cookie', { 'Set-Cookie': clearCookie });
  try {
    // A CALL of its own (never inside BEGIN): on reuse of a used refresh
    // token the procedure commits the revocation of the whole session
    // before it fails.
    const { rows: [pair] } = await loginDb.query("CALL jwt_rls.refresh_with_proof($1, $2, 'POST', $3)",
                                                 [token, dpopProof(req), url(REFRESH_PATH)]);
    return issued(pair);
  } catch (e) {
    if (e.code === '28000' || e.code === '22023') {
      throw new HttpError(401, 'invalid_grant', describe(e), { 'Set-Cookie': clearCookie });
    }
    throw e;
  }
}

async function logout(req) {
  await asTokenHolder(req, loginDb, 'POST', '/auth/logout',
                      (db, claims) => db.query('SELECT jwt_rls.end_session($1::uuid)', [claims.sid]));
  return { status: 204, headers: { 'Set-Cookie': clearCookie } };
}

// Every session of the user, in every browser: revoke_subject refuses
// every token of the subject issued until now and stops the refresh of
// every session started until now.
async function logoutEverywhere(req) {
  await asTokenHolder(req, loginDb, 'POST', '/auth/logout-everywhere', (db, claims) =>
    db.query("SELECT jwt_rls.revoke_subject($1, now(), 'log out everywhere')", [claims.sub]));
  return { status: 204, headers: { 'Set-Cookie': clearCookie } };
}

async function listInvoices(req) {
  return asTokenHolder(req, apiDb, 'GET', '/api/invoices', async (db, claims) => {
    const { rows } = await db.query('SELECT id, amount, note FROM invoices ORDER BY id');
    return { status: 200, body: { user: claims.sub, tenant_id: claims.tenant_id, invoices: rows } };
  });
}

async function addInvoice(req) {
  const { amount, note } = await jsonBody(req);
  if (!Number.isInteger(amount) || amount < 1 || amount > 1e9 || typeof note !== 'string' || note.length > 200) {
    throw new HttpError(400, 'invalid_request', 'amount must be an integer from 1 to 10^9, note a string');
  }
  return asTokenHolder(req, apiDb, 'POST', '/api/invoices', async (db) => {
    // The tenant is the token's: the policy's WITH CHECK refuses any other.
    const { rows: [invoice] } = await db.query(
      `INSERT INTO invoices (tenant_id, amount, note) VALUES (jwt_rls.jwt_claim('tenant_id')::uuid, $1, $2)
       RETURNING id, amount, note`, [amount, note]);
    return { status: 201, body: invoice };
  });
}

const ROUTES = {
  'POST /auth/login': login,
  'POST /auth/refresh': refresh,
  'POST /auth/logout': logout,
  'POST /auth/logout-everywhere': logoutEverywhere,
  'GET /api/invoices': listInvoices,
  'POST /api/invoices': addInvoice,
};

// --- answering ----------------------------------------------------------------

// What the database said, for the client: jwt_rls's messages and details
// never quote a token or a proof (docs/reference.md, Errors).
function describe(e) {
  return [e.message, e.detail].filter(Boolean).join(': ');
}

// A refusal by the database, as HTTP (RFC 6750 and RFC 9449 error codes).
function fromDatabase(e) {
  if (e.code === '28000' || e.code === '22023') {
    const error = /dpop proof/i.test(describe(e)) ? 'invalid_dpop_proof' : 'invalid_token';
    return new HttpError(401, error, describe(e), { 'WWW-Authenticate': `DPoP error="${error}", algs="ES256"` });
  }
  if (e.code === '53400') return new HttpError(503, 'temporarily_unavailable', 'try again with a new proof');
  return undefined;
}

async function handle(req) {
  const path = new URL(req.url, origin).pathname;
  if (req.method === 'GET' && STATIC[path]) {
    const [file, type] = STATIC[path];
    return { status: 200, type, raw: await readFile(new URL(`public/${file}`, import.meta.url)) };
  }
  const route = ROUTES[`${req.method} ${path}`];
  if (!route) throw new HttpError(404, 'not_found', 'no such endpoint');
  if (req.method === 'POST') checkOrigin(req);
  return route(req);
}

const server = http.createServer(async (req, res) => {
  const started = Date.now();
  let answer;
  let note = '';
  try {
    answer = await handle(req);
  } catch (e) {
    const refusal = e instanceof HttpError ? e : fromDatabase(e);
    if (refusal) {
      answer = { status: refusal.status, headers: refusal.headers,
                 body: { error: refusal.error, error_description: refusal.message } };
    } else {
      answer = { status: 500, body: { error: 'server_error' } };
    }
    // SQLSTATE and message only: never a header, a body or a parameter.
    note = e.code ? ` ${e.code} ${describe(e)}` : (refusal ? ` ${refusal.error}` : ` ${e.stack}`);
  }
  const body = answer.raw ?? (answer.body === undefined ? '' : JSON.stringify(answer.body));
  res.writeHead(answer.status, {
    ...SECURITY_HEADERS,
    ...(answer.body !== undefined ? { 'Content-Type': 'application/json' } : {}),
    ...(answer.type ? { 'Content-Type': answer.type } : {}),
    ...answer.headers,
  });
  res.end(body);
  const path = (req.url ?? '').split('?')[0];
  console.log(`${req.method} ${path} ${answer.status} ${Date.now() - started}ms${note}`);
});

server.listen(port, '127.0.0.1', () => console.log(`jwt_rls reference app listening on ${origin}`));

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => Promise.all([apiDb.end(), loginDb.end()]).then(() => process.exit(0))));
}
