// PostGraphile v4 in front of jwt_rls: the database verifies the bearer
// token, PostGraphile verifies nothing (no jwtSecret, no jwtPublicKey).
// Used by tests/test_postgraphile.py; docs/guides/postgraphile.md explains it.
//
//   DATABASE_URL=postgres://app@127.0.0.1:6432/app PORT=5000 node server.js
//
// Environment: DATABASE_URL (through PgBouncer in transaction mode), PORT
// (0: any free port), POOL_SIZE (the pg pool's size, default 2), SCHEMA
// (default public); WATCH=1 for PostGraphile's watch mode, with
// OWNER_DATABASE_URL, a superuser's, to install its event triggers. Once
// listening it prints one JSON line, {"port": N}.
'use strict';

// PostGraphile keeps up to 100 named prepared statements per connection.
// PgBouncer before 1.21 (Debian 12 ships 1.18) cannot follow named prepared
// statements in transaction mode: the next transaction may run on another
// server connection, where the name is unknown or already taken. 0 turns
// the cache off. It is read once, when graphile-build-pg is loaded, so it
// must be set before the require below.
process.env.POSTGRAPHILE_PREPARED_STATEMENT_CACHE_SIZE ??= '0';

const http = require('node:http');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_SIZE || 2),
});

// An error PostGraphile answers with this HTTP status instead of running the
// request (it reads error.statusCode).
function refuse(status, message) {
  return Object.assign(new Error(message), { statusCode: status });
}

// Every request's transaction begins with
//   select set_config('jwt_rls.token', $1, true)
// (PostGraphile sends the value as a bind parameter, so the token is never in
// the statement text). jwt_rls verifies it there, and the claims it binds end
// at COMMIT: nothing is left on the pooled server connection.
function pgSettings(req) {
  const header = req.headers.authorization;
  if (header === undefined) {
    // No token: an empty one, so that this request also runs in a
    // transaction that unbinds whatever a session-level SET of another
    // client of the pool may have left on its server connection. The
    // policies then see no claims and match no row.
    return { 'jwt_rls.token': '' };
  }
  const [scheme, token, ...rest] = header.split(' ');
  if (scheme.toLowerCase() !== 'bearer' || !token || rest.length > 0) {
    throw refuse(401, 'the Authorization header must be "Bearer <token>"');
  }
  return { 'jwt_rls.token': token };
}

// A refused token fails the set_config above, before the GraphQL execution:
// PostGraphile then answers with that database error unwrapped (no
// originalError) and status 500. Say 401 for it, as RFC 6750 does for an
// invalid token, and give every error from the database its SQLSTATE. The
// message is jwt_rls's, which never contains the token.
function handleErrors(errors, req, res) {
  return errors.map((error) => {
    const cause = error.originalError ?? error;
    const formatted = { message: error.message, locations: error.locations, path: error.path };
    if (typeof cause.code === 'string' && /^[0-9A-Z]{5}$/.test(cause.code)) {
      formatted.extensions = { sqlstate: cause.code };
      const refusedToken = error.originalError === undefined && (cause.code === '28000' || cause.code === '22023');
      if (refusedToken) {
        res.statusCode = 401;
        res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
      }
    }
    return formatted;
  });
}

const server = http.createServer(
  postgraphile(pool, process.env.SCHEMA || 'public', {
    pgSettings,
    handleErrors,
    ignoreRBAC: false, // expose only what the role is granted
    watchPg: process.env.WATCH === '1',
    // Watch mode installs event triggers, which only a superuser may do.
    ownerConnectionString: process.env.OWNER_DATABASE_URL,
    retryOnInitFail: false,
  }),
);

server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

function stop() {
  server.close();
  pool.end();
  // pool.end() waits for every checked-out connection, and watch mode keeps
  // one for its LISTEN: do not wait for it for more than a second.
  setTimeout(() => process.exit(0), 1000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
