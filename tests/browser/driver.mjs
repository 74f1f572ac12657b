// Drives Debian's headless Chromium for tests/test_webapp.py, with
// playwright-core (no browser download: executablePath). One JSON command
// a line on stdin, one JSON answer a line on stdout:
//
//   {"cmd": "page", "args": {"context": "alice", "page": "a1"}}
//   -> {"ok": true, "result": ...}  or  {"ok": false, "error": "..."}
//
// Contexts are separate browsers as far as the app can tell (own cookies,
// own IndexedDB); pages of one context are its tabs. Each context records
// the responses its pages got: method, path, status, and the request's
// Authorization, DPoP, Cookie and Origin headers, which the tests read
// back with "requests". The scenarios themselves, and every assertion,
// are in tests/test_webapp.py. Ends when stdin closes.

import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  // As root Chromium needs --no-sandbox; the rest keeps it from reaching
  // out (updates, sync, field trials) and from needing a GPU.
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-default-apps', '--metrics-recording-only'],
});

const contexts = new Map(); // name -> {context, log}
const pages = new Map(); // name -> page

function context(name) {
  const entry = contexts.get(name);
  if (!entry) throw new Error(`no context ${name}`);
  return entry;
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

const WANTED = ['authorization', 'dpop', 'cookie', 'origin', 'sec-fetch-site', 'content-type'];

// One response as the tests see it (`n`: its place in the order they came).
async function record(response, n) {
  const request = response.request();
  const url = new URL(request.url());
  let from = null;
  try {
    from = [...pages].find(([, p]) => p === request.frame().page())?.[0] ?? null;
  } catch { /* not a page's request */ }
  const all = await request.allHeaders();
  const headers = Object.fromEntries(WANTED.filter((h) => all[h] !== undefined).map((h) => [h, all[h]]));
  return { n, page: from, method: request.method(), origin: url.origin, path: url.pathname,
           status: response.status(), headers };
}

const commands = {
  async context({ context: name }) {
    const ctx = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    const log = [];
    const pending = new Set();
    let seq = 0;
    ctx.on('response', (response) => {
      const n = seq++;
      const done = record(response, n).then((entry) => log.push(entry)).finally(() => pending.delete(done));
      pending.add(done);
    });
    contexts.set(name, { context: ctx, log, pending });
  },
  async page({ context: ctx, page: name }) {
    const p = await context(ctx).context.newPage();
    p.on('pageerror', (e) => process.stderr.write(`page ${name}: ${e.message}\n`));
    pages.set(name, p);
  },
  async goto({ page: name, url }) {
    await page(name).goto(url);
  },
  async reload({ page: name }) {
    await page(name).reload();
  },
  async fill({ page: name, selector, value }) {
    await page(name).fill(selector, value);
  },
  async click({ page: name, selector }) {
    await page(name).click(selector);
  },
  async wait({ page: name, selector, state = 'visible', timeout = 15000 }) {
    await page(name).waitForSelector(selector, { state, timeout });
  },
  async waitForUrl({ page: name, url, timeout = 15000 }) {
    await page(name).waitForURL(url, { timeout });
  },
  async visible({ page: name, selector }) {
    return page(name).isVisible(selector);
  },
  async text({ page: name, selector }) {
    return page(name).textContent(selector);
  },
  // The text of each cell of each row under `selector`.
  async rows({ page: name, selector }) {
    return page(name).$$eval(`${selector} tr`, (trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  },
  // Runs `script`, the source of a function, in the page with `arg`, as
  // an injected script would (through the DevTools protocol: the page's
  // Content-Security-Policy does not apply to it).
  async evaluate({ page: name, script, arg = null }) {
    return page(name).evaluate(`(${script})(${JSON.stringify(arg)})`);
  },
  async initScript({ context: name, script }) {
    await context(name).context.addInitScript(`(${script})()`);
  },
  async cookies({ context: name }) {
    return context(name).context.cookies();
  },
  async screenshot({ page: name, path }) {
    await page(name).screenshot({ path, fullPage: true });
  },
  // What the context's pages got since the last call, and forgets it.
  async requests({ context: name }) {
    const { log, pending } = context(name);
    await Promise.all(pending);
    return log.splice(0, log.length).sort((a, b) => a.n - b.n);
  },
  async close({ context: name }) {
    await context(name).context.close();
    for (const [key, p] of pages) if (p.context() === context(name).context) pages.delete(key);
    contexts.delete(name);
  },
};

process.stdout.write(JSON.stringify({ ok: true, result: { version: browser.version() } }) + '\n');
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === '') continue;
  let answer;
  try {
    const { cmd, args } = JSON.parse(line);
    if (!Object.hasOwn(commands, cmd)) throw new Error(`unknown command ${cmd}`);
    answer = { ok: true, result: (await commands[cmd](args ?? {})) ?? null };
  } catch (e) {
    answer = { ok: false, error: String(e.message ?? e) };
  }
  process.stdout.write(JSON.stringify(answer) + '\n');
}
await browser.close();
