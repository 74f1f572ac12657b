// node-postgres (pg) behind PgBouncer in transaction mode.
// Prepared statements: pg sends every query as an unnamed statement unless
// you give it a `name`, so nothing outlives the transaction; do not name
// statements on PgBouncer < 1.21 (the next transaction may run on another
// server connection, where that name does not exist).
import pg from "pg";

export function connect(url) {
  return new pg.Pool({ connectionString: url, max: 2 });
}

// The recipe: the token is bound by the first statement of the
// transaction, and its claims end with COMMIT or ROLLBACK.
export async function asTenant(pool, token, work) {
  const client = await pool.connect();
  let broken;
  try {
    await client.query("BEGIN");
    await client.query("SELECT jwt_rls.authenticate($1)", [token]);
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (e) {
    // A connection whose ROLLBACK failed is thrown away, not reused.
    await client.query("ROLLBACK").catch((rollbackError) => { broken = rollbackError; });
    throw e;
  } finally {
    client.release(broken);
  }
}

export async function invoiceTenants(q) {
  return (await q.query("SELECT tenant_id FROM invoices")).rows.map((r) => r.tenant_id);
}

export async function probe(q) {
  return (await q.query(PROBE)).rows[0];
}

export const close = (pool) => pool.end();

const PROBE = `SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim,
                      to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') AS at`;
