// Drives one pinned version of the real @composio/core SDK and prints ONE JSON
// line per call on stdout, for sdk_test.go to read.
//
//   node sdk.mjs <0.8.0|0.8.1|0.21.0> '<JSON array of calls>'
//
// Environment: SDK_BASE_URL (the proxy), SDK_API_KEY (a test key).
//
// A call is {"call": NAME, ...}:
//   link        composio.connectedAccounts.link(user_id, auth_config_id, {allowMultiple})
//   initiate    composio.connectedAccounts.initiate(user_id, auth_config_id, {allowMultiple})
//   raw_link    composio.getClient().link.create(...): past the SDK's own guard
//   raw_create  composio.getClient().connectedAccounts.create(...): past the SDK's own guard
//   list        composio.connectedAccounts.list({userIds, authConfigIds})
//   get         composio.connectedAccounts.get(id)
//   session_create      composio.create(user_id, {workbench: {sandboxSize}}); no config when
//                       sandbox_size and multi_account are absent, {workbench: {}} when
//                       sandbox_size is ""; multi_account {enable, max_accounts_per_toolkit}
//                       becomes {multiAccount: {enable, maxAccountsPerToolkit}}
//   session_authorize   session.authorize(toolkit): on composio.use(id) when "id" is set,
//                       else on the session the last session_create of this run made
//                       (read again with composio.use(its id) when "reopen" is true)
//   session_update      composio.use(id).update({workbench: {sandboxSize}}), or
//                       {workbench: null} with "clear": true (0.21.0 only)
//   raw_session_create  composio.getClient().toolRouter.session.create(...): past the
//                       SDK's own tier check, to send a tier that is not one
// Options on any call: "opt_in": true sends the x-composio-allow-multiple
// header through defaultHeaders; "allow_multiple": true passes the SDK flag;
// "pause": true waits, after this call's line, for a line on stdin before the
// next call (the test changes the fake in between; one node start per case).
//
// Each line holds what the caller can read: ok, the ids and redirect_url on
// success; on failure the error's name, its cause's name, the HTTP status, the
// parsed body and a few headers. "sent" lists the HTTP requests the SDK made
// for that call, so retries show, "sent_bodies" their bodies as sent and
// "guard_headers" the X-Composio-Guard header of each answer (null when absent
// or when no answer came; "replayed" on a pending link's replay). A last line {"call":"done"} lists any
// request the script refused to send off the machine ("blocked_egress").

import { createInterface } from 'node:readline';

// Our lines are the only thing on stdout: SDK logging goes to stderr.
for (const level of ['log', 'info', 'warn', 'debug', 'trace']) console[level] = console.error;

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Nothing may leave the machine (telemetry, npm version check): refuse at
// once anything that is not loopback, so a test never hangs on the network.
const blocked = [];
let sent = [];
let sentBodies = [];
let guardHeaders = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url);
  const method = (init?.method ?? input?.method ?? 'GET').toUpperCase();
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    blocked.push(`${method} ${url.host}${url.pathname}`);
    throw new TypeError(`sdk.mjs: blocked request to ${url.host}`);
  }
  sent.push(`${method} ${url.pathname}`);
  sentBodies.push(typeof init?.body === 'string' ? init.body : null);
  const guard = guardHeaders;
  const i = guard.push(null) - 1;
  const res = await realFetch(input, init);
  guard[i] = res.headers.get('x-composio-guard');
  return res;
};

const packages = { '0.8.0': 'core080', '0.8.1': 'core081', '0.21.0': 'core0210' };
const [version, callsJSON] = process.argv.slice(2);
if (!packages[version] || !callsJSON) {
  process.stderr.write('usage: node sdk.mjs <0.8.0|0.8.1|0.21.0> \'[{"call":"link",...}]\'\n');
  process.exit(2);
}
const { Composio } = await import(packages[version]);

function client(c) {
  return new Composio({
    apiKey: process.env.SDK_API_KEY,
    baseURL: process.env.SDK_BASE_URL,
    allowTracking: false,
    disableVersionCheck: true,
    ...(c.opt_in && { defaultHeaders: { 'x-composio-allow-multiple': 'true' } }),
  });
}

// resume waits for the test's go-ahead: one line on stdin.
let stdinLines;
async function resume() {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const { done } = await stdinLines.next();
  if (done) {
    process.stderr.write('sdk.mjs: stdin closed while paused\n');
    process.exit(3);
  }
}

// The session the last session_create made, for session_authorize without an id.
let lastSession;

const calls = {
  async link(composio, c) {
    const r = await composio.connectedAccounts.link(c.user_id, c.auth_config_id, {
      callbackUrl: 'https://app.example/cb',
      ...(c.allow_multiple && { allowMultiple: true }),
    });
    return { connected_account_id: r.id, redirect_url: r.redirectUrl };
  },
  async initiate(composio, c) {
    const r = await composio.connectedAccounts.initiate(c.user_id, c.auth_config_id, {
      callbackUrl: 'https://app.example/cb',
      ...(c.allow_multiple && { allowMultiple: true }),
    });
    return { connected_account_id: r.id, redirect_url: r.redirectUrl };
  },
  async raw_link(composio, c) {
    const r = await composio.getClient().link.create({ auth_config_id: c.auth_config_id, user_id: c.user_id });
    return { connected_account_id: r.connected_account_id, redirect_url: r.redirect_url };
  },
  async raw_create(composio, c) {
    const r = await composio.getClient().connectedAccounts.create({
      auth_config: { id: c.auth_config_id },
      connection: { user_id: c.user_id },
    });
    return { connected_account_id: r.id };
  },
  async list(composio, c) {
    const r = await composio.connectedAccounts.list({ userIds: [c.user_id], authConfigIds: [c.auth_config_id] });
    return { items: r.items.map((a) => ({ id: a.id, status: a.status, auth_config_id: a.authConfig?.id })) };
  },
  async get(composio, c) {
    const a = await composio.connectedAccounts.get(c.id);
    return { account: { id: a.id, status: a.status, auth_config_id: a.authConfig?.id } };
  },
  async session_create(composio, c) {
    const config = {};
    if (c.sandbox_size !== undefined) config.workbench = c.sandbox_size === '' ? {} : { sandboxSize: c.sandbox_size };
    if (c.multi_account) {
      config.multiAccount = {
        enable: c.multi_account.enable,
        ...(c.multi_account.max_accounts_per_toolkit && { maxAccountsPerToolkit: c.multi_account.max_accounts_per_toolkit }),
      };
    }
    const s = await composio.create(c.user_id, Object.keys(config).length ? config : undefined);
    lastSession = s;
    return { session_id: s.sessionId };
  },
  async session_authorize(composio, c) {
    if (!c.id && !lastSession) throw new Error('sdk.mjs: session_authorize without an id needs a session_create before it');
    const s = c.id ? await composio.use(c.id)
      : c.reopen ? await composio.use(lastSession.sessionId)
      : lastSession;
    const r = await s.authorize(c.toolkit);
    return { session_id: s.sessionId, connected_account_id: r.id, redirect_url: r.redirectUrl };
  },
  async session_update(composio, c) {
    const s = await composio.use(c.id);
    await s.update({ workbench: c.clear ? null : { sandboxSize: c.sandbox_size } });
    return { session_id: s.sessionId, sandbox_size: s.sandbox?.sandbox_size };
  },
  async raw_session_create(composio, c) {
    const r = await composio.getClient().toolRouter.session.create({
      user_id: c.user_id,
      workbench: { sandbox_size: c.sandbox_size },
    });
    return { session_id: r.session_id };
  },
};

// Class names say what a caller would catch; the SDK's classes leave .name as "Error".
const nameOf = (e) => (e ? (e.constructor?.name && e.constructor.name !== 'Error' ? e.constructor.name : e.name) : undefined);

// The HTTP error the SDK wraps (err itself, or err.cause for link()).
function httpError(err) {
  for (let e = err; e; e = e.cause) if (typeof e.status === 'number') return e;
  return undefined;
}

function header(headers, name) {
  if (!headers) return undefined;
  if (typeof headers.get === 'function') return headers.get(name) ?? undefined;
  return headers[name];
}

for (const c of JSON.parse(callsJSON)) {
  sent = [];
  sentBodies = [];
  guardHeaders = [];
  const line = { call: c.call, version };
  try {
    Object.assign(line, { ok: true }, await calls[c.call](client(c), c));
  } catch (err) {
    const h = httpError(err);
    Object.assign(line, {
      ok: false,
      error_name: nameOf(err) ?? String(err),
      cause_name: nameOf(err?.cause),
      message: err?.message,
      status: h?.status,
      body: h?.error,
      headers: h && {
        'x-should-retry': header(h.headers, 'x-should-retry'),
        'retry-after': header(h.headers, 'retry-after'),
        'x-request-id': header(h.headers, 'x-request-id'),
      },
    });
  }
  line.sent = sent;
  line.sent_bodies = sentBodies;
  line.guard_headers = guardHeaders;
  out(line);
  if (c.pause) await resume();
}
out({ call: 'done', version, blocked_egress: blocked });
process.exit(0);
