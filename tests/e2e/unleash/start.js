// Starts Unleash (7.4.1 from this directory, or 8.2.0 from ../unleash8) for remediator's
// end-to-end tests (launched by ../peers, with the Node that version needs).
// Everything comes from the environment so that no secret is written to the repository:
//   E2E_UNLEASH_DIR (default: this directory): the npm package dir whose unleash-server to run
//   E2E_PG_HOST, E2E_PG_PORT, E2E_PG_USER, E2E_PG_PASSWORD, E2E_PG_DATABASE
//   E2E_UNLEASH_PORT (default 4242)
//   E2E_UNLEASH_ADMIN_TOKEN   e.g. "*:*.<secret>"                   (type admin, all projects/environments)
//   E2E_UNLEASH_BACKEND_TOKEN e.g. "default:development.<secret>"   (type backend)
//   E2E_UNLEASH_ADMIN_TOKEN_NAME (default remediator-e2e-admin): Unleash 7.4.1 rejects init
//   tokens without a name, and records the name as `createdBy` of what the token changes.
//   E2E_UNLEASH_ADMIN_PASSWORD (optional): the password of the admin user Unleash creates in an
//   empty database (username E2E_UNLEASH_ADMIN_USER, default admin), instead of Unleash's
//   well-known default admin/unleash4all.
// Unleash creates these init tokens only when its tokens table is empty, hence the fresh
// database per run.
'use strict';

process.env.SEND_TELEMETRY = 'false';

const dir = process.env.E2E_UNLEASH_DIR || __dirname;
const unleash = require(require.resolve('unleash-server', { paths: [dir] }));

function need(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`start.js: environment variable ${name} is required`);
    process.exit(2);
  }
  return value;
}

const port = Number(process.env.E2E_UNLEASH_PORT || 4242);

unleash
  .start({
    db: {
      host: process.env.E2E_PG_HOST || '127.0.0.1',
      port: Number(process.env.E2E_PG_PORT || 5432),
      user: need('E2E_PG_USER'),
      password: need('E2E_PG_PASSWORD'),
      database: need('E2E_PG_DATABASE'),
      ssl: false,
    },
    server: { host: '127.0.0.1', port },
    logLevel: process.env.E2E_UNLEASH_LOG_LEVEL || 'warn',
    versionCheck: { enable: false },
    authentication: {
      type: 'open-source',
      enableApiToken: true,
      ...(process.env.E2E_UNLEASH_ADMIN_PASSWORD && {
        initialAdminUser: {
          username: process.env.E2E_UNLEASH_ADMIN_USER || 'admin',
          password: process.env.E2E_UNLEASH_ADMIN_PASSWORD,
        },
      }),
      initApiTokens: [
        {
          type: 'admin',
          tokenName: process.env.E2E_UNLEASH_ADMIN_TOKEN_NAME || 'remediator-e2e-admin',
          secret: need('E2E_UNLEASH_ADMIN_TOKEN'),
          projects: ['*'],
          environment: '*',
        },
        {
          type: 'backend',
          tokenName: 'remediator-e2e-backend',
          secret: need('E2E_UNLEASH_BACKEND_TOKEN'),
          projects: ['default'],
          environment: 'development',
        },
      ],
    },
  })
  .then(() => console.log(`unleash listening on http://127.0.0.1:${port}`))
  .catch((err) => {
    console.error('start.js: Unleash failed to start:', err);
    process.exit(1);
  });

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
