// A second, independent authorization server for the interoperability tests: the npm package
// oidc-provider, configured the way Frame.io's servers behave (authorization code with PKCE,
// a confidential and a public client, rotating refresh tokens with reuse detection, RFC 7009
// revocation, RFC 9207 iss), on loopback only.
//
// Usage: node server.mjs   (settings as JSON in FRAMEIO_INTEROP_CONFIG, see `settings` below)
// Prints "interop server ready on http://127.0.0.1:PORT" on stdout once it listens; logs go to
// stderr. Besides oidc-provider's own routes it serves the login and consent pages under
// /interaction/ and a test-only counter of what it did under /_interop/.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import http from 'node:http';

import Provider from 'oidc-provider';

const settings = {
  // username -> { password, sub, email }
  users: {},
  redirectUris: [],
  // { clientId, clientSecret }: client_secret_basic; { clientId } alone: a public client.
  clients: [],
  accessTokenTtl: 600,
  ...JSON.parse(process.env.FRAMEIO_INTEROP_CONFIG || '{}'),
};

const HOST = '127.0.0.1';
const SCOPES = ['openid', 'offline_access', 'email', 'profile'];
const DAY = 24 * 60 * 60;

function log(...parts) {
  process.stderr.write(`${new Date().toISOString()} ${parts.join(' ')}\n`);
}

// What the tests read back: token requests by grant type and outcome, revoked grants.
const stats = {};
function count(name) {
  stats[name] = (stats[name] || 0) + 1;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

function accountBySub(sub) {
  return Object.values(settings.users).find((user) => user.sub === sub);
}

function signingKeys() {
  // A fresh RSA key per run: the ID token's RS256 signature needs one, and nothing outlives
  // the process.
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' }] };
}

function configuration() {
  const client = ({ clientId, clientSecret }) => ({
    client_id: clientId,
    ...(clientSecret
      ? { client_secret: clientSecret, token_endpoint_auth_method: 'client_secret_basic' }
      : { token_endpoint_auth_method: 'none' }),
    redirect_uris: settings.redirectUris,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  });
  return {
    clients: settings.clients.map(client),
    scopes: SCOPES,
    // The authorization code flow and nothing else, each client authenticating one way.
    responseTypes: ['code'],
    clientAuthMethods: ['client_secret_basic', 'none'],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    async findAccount(_ctx, sub) {
      const user = accountBySub(sub);
      if (!user) return undefined;
      return {
        accountId: sub,
        async claims() {
          return { sub, email: user.email, email_verified: true, name: user.name || sub };
        },
      };
    },
    // PKCE (S256, the only method oidc-provider 9 offers) is required of public clients, as
    // Adobe IMS requires it of its Single-Page App and Native App credentials.
    pkce: { required: (_ctx, client) => client.clientAuthMethod === 'none' },
    // Every refresh answer carries a new refresh token, for every client, as Adobe IMS does.
    // A rotated (consumed) one presented again revokes the whole grant: oidc-provider does
    // that for any consumed refresh token, there is no setting for it.
    rotateRefreshToken: true,
    // A refresh token is issued only for offline_access (oidc-provider's default rule, made
    // explicit here because the tests depend on it).
    issueRefreshToken: async (_ctx, client, source) =>
      client.grantTypeAllowed('refresh_token') && source.scopes.has('offline_access'),
    ttl: {
      AccessToken: () => settings.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: DAY,
      Grant: 14 * DAY,
      RefreshToken: 14 * DAY,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      // Frame.io has no RP-initiated logout; nothing here needs it.
      rpInitiatedLogout: { enabled: false },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    jwks: signingKeys(),
    // oidc-provider's default error page would echo request details; a short one will do.
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><title>error</title><p id="error">${escapeHtml(out.error)}</p>`;
    },
  };
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escapeHtml(title)}</title>`
    + `</head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

// The login and consent pages: one form each, posted back to the page's own URL. The hidden
// "prompt" field says which page it is.
function promptPage(details, error) {
  const { prompt } = details;
  const hidden = `<input type="hidden" name="prompt" value="${escapeHtml(prompt.name)}">`;
  const problem = error ? `<p id="problem">${escapeHtml(error)}</p>` : '';
  if (prompt.name === 'login') {
    return page('Sign in', `${problem}<form id="login" method="post">${hidden}`
      + '<input name="username" autocomplete="username">'
      + '<input name="password" type="password" autocomplete="current-password">'
      + '<button type="submit">Sign in</button></form>');
  }
  const scopes = (prompt.details.missingOIDCScope || []).map((s) => `<li>${escapeHtml(s)}</li>`);
  return page('Authorize', `<p>${escapeHtml(details.params.client_id)} asks for:</p>`
    + `<ul id="scopes">${scopes.join('')}</ul><form id="consent" method="post">${hidden}`
    + '<button name="decision" value="allow">Allow</button>'
    + '<button name="decision" value="deny">Deny</button></form>');
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function grantConsent(provider, details) {
  const { prompt, params, session } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(resource, scopes.join(' '));
  }
  return grant.save();
}

async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const send = (status, html) => {
    res.writeHead(status, {
      'Content-Type': 'text/html; charset=utf-8',
      'Cache-Control': 'no-store',
    });
    res.end(html);
  };
  if (req.method === 'GET') {
    send(200, promptPage(details));
    return;
  }
  const form = await readForm(req);
  if (form.get('prompt') !== details.prompt.name) {
    send(400, promptPage(details, 'This page is out of date.'));
    return;
  }
  if (details.prompt.name === 'login') {
    const username = form.get('username') || '';
    const user = Object.hasOwn(settings.users, username) ? settings.users[username] : undefined;
    if (!user || user.password !== form.get('password')) {
      send(401, promptPage(details, 'Wrong username or password.'));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  if (form.get('decision') !== 'allow') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied',
      error_description: 'the user declined',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const grantId = await grantConsent(provider, details);
  await provider.interactionFinished(req, res, { consent: { grantId } }, {
    mergeWithLastSubmission: true,
  });
}

function statsRoute(req, res) {
  if (req.method === 'POST') {
    for (const key of Object.keys(stats)) delete stats[key];
  }
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(stats));
}

function detail(err) {
  return err.error_detail || err.error_description || '';
}

function observe(provider) {
  // Names, error codes and scopes only: never a token, a code or a secret.
  const refreshScope = (ctx) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') {
      // What the client asked a refresh for; "" when it asked for the grant as it stands.
      count(`refresh_scope:${ctx.oidc.params.scope || ''}`);
    }
  };
  provider.on('grant.success', (ctx) => {
    count(`token:${ctx.oidc.params.grant_type}`);
    refreshScope(ctx);
    log('token', ctx.oidc.params.grant_type, 'ok', ctx.oidc.client?.clientId);
  });
  provider.on('grant.error', (ctx, err) => {
    count(`token:${ctx.oidc.params?.grant_type}:${err.error}`);
    refreshScope(ctx);
    log('token', ctx.oidc.params?.grant_type, err.error, detail(err));
  });
  provider.on('grant.revoked', (_ctx, grantId) => {
    count('grant_revoked');
    log('grant revoked', grantId);
  });
  provider.on('revocation.error', (_ctx, err) => {
    count(`revocation:${err.error}`);
    log('revocation', err.error, detail(err));
  });
  provider.on('authorization.error', (_ctx, err) => {
    count(`authorization:${err.error}`);
    log('authorization', err.error, detail(err));
  });
  provider.on('server_error', (_ctx, err) => log('server error', err.stack));
}

const server = http.createServer();
server.listen(0, HOST, () => {
  const issuer = `http://${HOST}:${server.address().port}`;
  const provider = new Provider(issuer, configuration());
  observe(provider);
  const oidc = provider.callback();
  server.on('request', (req, res) => {
    const path = new URL(req.url, issuer).pathname;
    if (path.startsWith('/interaction/')) {
      interaction(provider, req, res).catch((err) => {
        log('interaction failed', err.message);
        if (!res.headersSent) {
          res.writeHead(400, { 'Content-Type': 'text/plain' });
        }
        res.end('interaction failed');
      });
    } else if (path === '/_interop/stats') {
      statsRoute(req, res);
    } else {
      oidc(req, res);
    }
  });
  process.stdout.write(`interop server ready on ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    // Keep-alive connections from the tests' connection pools would hold close() open.
    server.closeAllConnections();
  });
}
