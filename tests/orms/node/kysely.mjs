// Kysely (PostgresDialect over a pg Pool) behind PgBouncer in transaction
// mode. Prepared statements: Kysely's pg driver sends unnamed statements,
// so there is nothing to switch off.
import { Kysely, PostgresDialect, sql } from "kysely";
import pg from "pg";

export function connect(url) {
  return new Kysely({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: url, max: 2 }) }) });
}

// The recipe: the first statement of the transaction binds the token.
export function asTenant(db, token, work) {
  return db.transaction().execute(async (trx) => {
    await sql`SELECT jwt_rls.authenticate(${token})`.execute(trx);
    return work(trx);
  });
}

export async function invoiceTenants(q) {
  return (await q.selectFrom("invoices").select("tenant_id").execute()).map((r) => r.tenant_id);
}

export async function probe(q) {
  const { rows } = await sql`SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim,
                                    to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') AS at`.execute(q);
  return rows[0];
}

export const close = (db) => db.destroy();
