// Adds (or updates) users of the reference app: one JSON object a line on
// stdin, {"username": "alice", "tenant_id": "<uuid>", "password": "..."},
// so that no password appears in a command line or a shell history.
// WEBAPP_ADMIN_DATABASE_URL: a connection that may write webapp.users (the
// database owner's; the app's own roles can only read it).
//
//   echo '{"username": "alice", "tenant_id": "aaaaaaaa-0000-4000-8000-000000000001", "password": "..."}' \
//     | WEBAPP_ADMIN_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres node add-user.mjs

import { createInterface } from 'node:readline';
import pg from 'pg';
import { hashPassword } from './passwords.mjs';

const url = process.env.WEBAPP_ADMIN_DATABASE_URL;
if (!url) throw new Error('WEBAPP_ADMIN_DATABASE_URL is not set');
const db = new pg.Client({ connectionString: url });
await db.connect();
try {
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line.trim() === '') continue;
    const { username, tenant_id: tenant, password } = JSON.parse(line);
    if (typeof password !== 'string' || password.length < 12) {
      throw new Error(`the password of ${username} is shorter than 12 characters`);
    }
    await db.query(`INSERT INTO webapp.users (username, tenant_id, password_hash) VALUES ($1, $2, $3)
                    ON CONFLICT (username) DO UPDATE SET tenant_id = excluded.tenant_id,
                                                         password_hash = excluded.password_hash`,
                   [username, tenant, await hashPassword(password)]);
    console.log(`user ${username} (tenant ${tenant}) stored`);
  }
} finally {
  await db.end();
}
