// TypeORM (postgres driver, node-postgres underneath) behind PgBouncer in
// transaction mode. Prepared statements: TypeORM sends unnamed statements
// through pg, so there is nothing to switch off.
import { DataSource, EntitySchema } from "typeorm";

const Invoice = new EntitySchema({
  name: "Invoice",
  tableName: "invoices",
  columns: {
    id: { type: "bigint", primary: true, generated: "identity" },
    tenantId: { name: "tenant_id", type: "uuid" },
    amount: { type: "int" },
    note: { type: "text", nullable: true },
  },
});

export async function connect(url) {
  const dataSource = new DataSource({ type: "postgres", url, entities: [Invoice], extra: { max: 2 } });
  return dataSource.initialize();
}

// The recipe: the first statement of the transaction binds the token; use
// `manager` (not the DataSource) for every query of the request.
export function asTenant(dataSource, token, work) {
  return dataSource.transaction(async (manager) => {
    await manager.query("SELECT jwt_rls.authenticate($1)", [token]);
    return work(manager);
  });
}

export async function invoiceTenants(q) {
  return (await q.getRepository(Invoice).find({ select: { tenantId: true } })).map((i) => i.tenantId);
}

export async function probe(q) {
  const [row] = await q.query(`SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim,
                                      to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') AS at`);
  return row;
}

export const close = (dataSource) => dataSource.destroy();
