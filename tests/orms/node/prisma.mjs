// Prisma 7 with @prisma/adapter-pg behind PgBouncer in transaction mode.
// Prepared statements: the adapter sends unnamed statements unless you give
// it a `statementNameGenerator`; leave it out on PgBouncer < 1.21. (The
// `?pgbouncer=true` URL flag was for the Rust engine, which is not used.)
import { PrismaPg } from "@prisma/adapter-pg";
import { PrismaClient } from "@prisma/client";

export function connect(url) {
  return new PrismaClient({ adapter: new PrismaPg({ connectionString: url, max: 2 }) });
}

// The recipe: an interactive transaction whose first statement binds the
// token; every query made through `tx` runs in it.
export function asTenant(prisma, token, work) {
  return prisma.$transaction(async (tx) => {
    await tx.$executeRaw`SELECT jwt_rls.authenticate(${token})`;
    return work(tx);
  });
}

export async function invoiceTenants(q) {
  return (await q.invoice.findMany({ select: { tenantId: true } })).map((i) => i.tenantId);
}

export async function probe(q) {
  const [row] = await q.$queryRaw`SELECT pg_backend_pid() AS pid, jwt_rls.jwt_claim('tenant_id') AS claim,
                                         to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US') AS at`;
  return row;
}

export const close = (prisma) => prisma.$disconnect();
