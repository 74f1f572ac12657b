// Runs one recipe's scenario for tests/test_orms.py:
//   node run.mjs <recipe>   with {"url", "tokens": {"a", "b"}, "rounds"} on stdin
// Every round starts, at once, a transaction of tenant a, one of tenant b
// and a request without a token; the pool's two connections and the
// pooler interleave them. Prints one JSON line: what each one saw. Tokens
// are read from stdin (not argv, which any user can list) and never printed.
import { readFileSync } from "node:fs";

const recipe = await import(`./${process.argv[2]}.mjs`);
const { url, tokens, rounds } = JSON.parse(readFileSync(0, "utf8"));

const observe = async (q) => ({ ...(await recipe.probe(q)), tenants: await recipe.invoiceTenants(q) });
const outcome = (who) => [
  (seen) => ({ who, ...seen, pid: Number(seen.pid) }),
  (e) => ({ who, error: { code: e.code ?? e.meta?.driverAdapterError?.cause?.originalCode ?? null,
                          message: String(e.message).slice(0, 300) } }),
];

const db = await recipe.connect(url);
const runs = [];
for (let i = 0; i < rounds; i++) {
  runs.push(recipe.asTenant(db, tokens.a, observe).then(...outcome("a")));
  runs.push(recipe.asTenant(db, tokens.b, observe).then(...outcome("b")));
  runs.push(observe(db).then(...outcome("none")));
}
const results = await Promise.all(runs);
await recipe.close(db);
console.log(JSON.stringify(results));
