'use strict';
// Reference peer, server side: express-pouchdb over PouchDB's on-disk LevelDB adapter.
//
//   node server.js --dir DIR [--port 0] [--host 127.0.0.1] [--fsync]
//
// Databases live under DIR (one LevelDB directory per database). With --port 0 the kernel picks a free
// port. Once listening, ONE JSON line is printed on stdout:
//   {"event":"listening","host":"127.0.0.1","port":N,"pid":P,"dir":"...","versions":{...}}
// --fsync: every LevelDB write is made with {sync: true} (fdatasync of LevelDB's log before PouchDB
// acknowledges), a variant for comparing with a hub that fsyncs each commit. Without it: stock PouchDB,
// whose LevelDB writes reach the OS (write(2)) but are not fsynced.
// No request logging (express-pouchdb's "minimumForPouchDB" mode: no log file, no config file).
// SIGTERM / SIGINT close the HTTP server, then exit 0.

const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');

const { values: args } = parseArgs({
  options: {
    dir: { type: 'string' },
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    fsync: { type: 'boolean', default: false },
  },
});

function fail(msg) {
  process.stderr.write(`server.js: ${msg}\n`);
  process.exit(2);
}

if (!args.dir) fail('--dir DIR is required');
const port = Number(args.port);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad --port ${args.port}`);
// Loopback only: this is a benchmark peer, never a service.
if (!/^127\.\d+\.\d+\.\d+$/.test(args.host) && args.host !== '::1' && args.host !== 'localhost') {
  fail(`--host must be a loopback address, got ${args.host}`);
}

const dir = path.resolve(args.dir);
fs.mkdirSync(dir, { recursive: true });

const express = require('express');
const expressPouchDB = require('express-pouchdb');
const PouchDB = require('pouchdb-node');
const leveldown = require('leveldown');

function versionOf(name) {
  return require(`${name}/package.json`).version;
}

const versions = {
  node: process.versions.node,
  'pouchdb-node': versionOf('pouchdb-node'),
  'express-pouchdb': versionOf('express-pouchdb'),
  express: versionOf('express'),
  leveldown: versionOf('leveldown'),
};

// leveldown with every write synchronous. PouchDB writes through levelup -> abstract-leveldown's
// batch/put/del -> these _batch/_put/_del, so forcing `sync` here covers all of its writes.
function LevelDOWNSync(location) {
  const db = leveldown(location);
  const batch = db._batch;
  const put = db._put;
  const del = db._del;
  db._batch = function (ops, options, cb) {
    return batch.call(this, ops, Object.assign({}, options, { sync: true }), cb);
  };
  db._put = function (key, value, options, cb) {
    return put.call(this, key, value, Object.assign({}, options, { sync: true }), cb);
  };
  db._del = function (key, options, cb) {
    return del.call(this, key, Object.assign({}, options, { sync: true }), cb);
  };
  return db;
}
LevelDOWNSync.destroy = leveldown.destroy;

// Every database the server opens is a LevelDB directory under DIR.
const ServerPouchDB = PouchDB.defaults(
  args.fsync ? { prefix: dir + path.sep, db: LevelDOWNSync } : { prefix: dir + path.sep },
);

const app = express();
app.disable('x-powered-by');
app.use(
  '/',
  // The routes PouchDB replication needs, nothing else: no config file, no log file, no auth.
  expressPouchDB(ServerPouchDB, { mode: 'minimumForPouchDB' }),
);

const server = app.listen(port, args.host, () => {
  const addr = server.address();
  const line = {
    event: 'listening',
    host: addr.address,
    port: addr.port,
    pid: process.pid,
    dir,
    adapter: 'leveldb',
    fsync: args.fsync,
    versions,
  };
  process.stdout.write(JSON.stringify(line) + '\n');
});
server.on('error', (err) => fail(`listen: ${err.message}`));
// Replication batches with inline base64 attachments can be large: do not time them out.
server.requestTimeout = 0;
server.keepAliveTimeout = 60000;

// Stop: close the listener and exit. Everything PouchDB acknowledged has already been written to
// LevelDB's log file (write(2), no fsync: see README), so it survives the process exiting.
let stopping = false;
function stop(signal) {
  if (stopping) return;
  stopping = true;
  server.close(() => {
    process.stderr.write(`server.js: stopped on ${signal}\n`);
    process.exit(0);
  });
  if (server.closeAllConnections) server.closeAllConnections();
  setTimeout(() => process.exit(1), 5000).unref();
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
