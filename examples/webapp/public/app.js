// The page: log in, list and add the tenant's invoices, log out. Every
// API request carries `Authorization: DPoP <access token>` and a fresh
// proof; the refresh token is in an HttpOnly cookie this script never
// sees, sent by the browser to /auth/refresh only.

import { forgetKey, loadKey, newKey, proof } from './dpop.js';

// In this module's memory only: never in storage, a cookie, the DOM or a
// global, so a reload drops the access token (the refresh cookie and the
// stored key bring a new one).
let key; // the DPoP key pair
let accessToken;

const $ = (id) => document.getElementById(id);
const url = (path) => location.origin + path;

function show(page, message = '') {
  $('loading').hidden = true;
  $('login-page').hidden = page !== 'login';
  $('invoices-page').hidden = page !== 'invoices';
  $(page === 'login' ? 'login-message' : 'invoices-message').textContent = message;
}

// Gets a new access token with the refresh cookie and a proof by the key.
// Tabs take turns (a Web Lock across this origin's tabs): without a reuse
// grace, two tabs presenting the same refresh token at once would be
// refresh token reuse, and the database would end the session.
function refresh() {
  return navigator.locks.request('jwt_rls-webapp-refresh', async () => {
    if (!key) return false;
    const response = await fetch('/auth/refresh', {
      method: 'POST',
      headers: { DPoP: await proof(key, 'POST', url('/auth/refresh')) },
    });
    if (!response.ok) return false;
    accessToken = (await response.json()).access_token;
    return true;
  });
}

class SessionEnded extends Error {}

// One API request. A refused access token (expired, or its session ended)
// is refreshed once, silently, and the request made again with the new
// token and a new proof; when the refresh is refused too, the session has
// ended and the login page shows.
async function api(method, path, body) {
  for (let attempt = 0; ; attempt += 1) {
    if (accessToken) {
      const headers = {
        Authorization: `DPoP ${accessToken}`,
        DPoP: await proof(key, method, url(path), accessToken),
      };
      if (body !== undefined) headers['Content-Type'] = 'application/json';
      const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      if (response.status !== 401 || attempt > 0) return response;
    }
    if (!(await refresh())) throw new SessionEnded();
  }
}

function render({ user, tenant_id: tenant, invoices }) {
  $('user').textContent = user;
  $('tenant').textContent = tenant;
  // textContent only: a note is data, never markup.
  $('invoices').replaceChildren(...invoices.map(({ id, amount, note }) => {
    const row = document.createElement('tr');
    for (const value of [id, amount, note ?? '']) {
      const cell = document.createElement('td');
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  }));
}

async function showInvoices(message = '') {
  const response = await api('GET', '/api/invoices');
  if (!response.ok) throw new Error(`GET /api/invoices: ${response.status}`);
  render(await response.json());
  show('invoices', message);
}

// Runs a user action; a session that ended shows the login page. The page
// is aria-busy from the event to the action's end (set before the first
// await, so even a test clicking the button sees it at once).
async function guarded(action) {
  document.body.setAttribute('aria-busy', 'true');
  try {
    await action();
  } catch (e) {
    accessToken = undefined;
    if (e instanceof SessionEnded) {
      show('login', 'Your session has ended. Please log in again.');
    } else {
      show('invoices', `Something went wrong: ${e.message}`);
    }
  } finally {
    document.body.removeAttribute('aria-busy');
  }
}

$('login-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  guarded(async () => {
    // A new key for every login: the session is bound to it.
    key = await newKey();
    const response = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', DPoP: await proof(key, 'POST', url('/auth/login')) },
      body: JSON.stringify({ username: form.get('username'), password: form.get('password') }),
    });
    if (!response.ok) {
      show('login', response.status === 401 ? 'Wrong user name or password.' : `Login failed (${response.status}).`);
      return;
    }
    accessToken = (await response.json()).access_token;
    event.target.reset();
    await showInvoices();
  });
});

$('add-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  guarded(async () => {
    const response = await api('POST', '/api/invoices', { amount: Number(form.get('amount')), note: form.get('note') });
    if (response.status !== 201) throw new Error(`POST /api/invoices: ${response.status}`);
    event.target.reset();
    await showInvoices('Invoice added.');
  });
});

$('reload').addEventListener('click', () => guarded(() => showInvoices()));

for (const [button, path, message] of [['logout', '/auth/logout', 'You have logged out.'],
  ['logout-everywhere', '/auth/logout-everywhere', 'You have logged out on every device.']]) {
  $(button).addEventListener('click', () => guarded(async () => {
    const response = await api('POST', path);
    if (response.status !== 204) throw new Error(`POST ${path}: ${response.status}`);
    accessToken = undefined;
    key = undefined;
    await forgetKey();
    show('login', message);
  }));
}

// A reload: the stored key and the refresh cookie bring a new access
// token, or the login page shows.
guarded(async () => {
  key = await loadKey();
  if (key && (await refresh())) {
    await showInvoices();
  } else {
    show('login');
  }
});
