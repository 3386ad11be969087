'use strict';
// Reference peer, client side: a local on-disk PouchDB (the "node") replicating one way to a PouchDB
// server over HTTP (server.js).
//
//   node replicate.js --remote http://127.0.0.1:PORT/DB --dir DIR --mode docs [--count 25000] [--size 500]
//   node replicate.js --remote http://127.0.0.1:PORT/DB --dir DIR --mode attachments [--count 200]
//                     [--size 1048576]
//   node replicate.js --sample [--size 500]        # print one generated document and exit
//
// docs:        COUNT dossier-like JSON documents (Vietnamese text) of SIZE bytes each (UTF-8 JSON of the
//              document as created, _id included), written to the local database before the clock starts.
// attachments: COUNT small dossier documents, each with one attachment of SIZE random bytes.
// Only `local.replicate.to(remote)` is timed. Afterwards the remote is checked: doc count, every
// document body (docs) or every attachment's bytes, re-hashed with our own MD5 (attachments).
// Prints ONE JSON object on stdout; exits non-zero (with a message on stderr) on any failure.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');

const { values: args } = parseArgs({
  options: {
    remote: { type: 'string' },
    dir: { type: 'string' },
    mode: { type: 'string', default: 'docs' },
    count: { type: 'string' },
    size: { type: 'string' },
    'batch-size': { type: 'string', default: '100' }, // PouchDB's default
    'batches-limit': { type: 'string', default: '10' }, // PouchDB's default
    timeout: { type: 'string', default: '1200' }, // seconds, whole run
    sample: { type: 'boolean', default: false },
  },
});

function die(msg) {
  process.stderr.write(`replicate.js: ${msg}\n`);
  process.exit(1);
}

function intArg(name, dflt, min) {
  const raw = args[name] === undefined ? String(dflt) : args[name];
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) die(`bad --${name} ${raw}`);
  return v;
}

// ---------------------------------------------------------------------------------------------------
// Deterministic, realistic documents: a one-stop-shop dossier ("hồ sơ một cửa").

function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FAMILY = ['Nguyễn', 'Trần', 'Lê', 'Phạm', 'Hoàng', 'Huỳnh', 'Phan', 'Vũ', 'Võ', 'Đặng', 'Bùi', 'Đỗ'];
const MIDDLE = ['Thị', 'Văn', 'Hữu', 'Minh', 'Ngọc', 'Thanh', 'Đức', 'Quốc', 'Thu', 'Hoài'];
const GIVEN = ['Ánh', 'Hồng', 'Dũng', 'Hương', 'Tuấn', 'Lan', 'Phương', 'Quân', 'Thảo', 'Khoa', 'Mỹ', 'Long'];
const PROCEDURES = [
  { code: '1.001193', name: 'Đăng ký khai sinh', doc: 'Tờ khai đăng ký khai sinh' },
  { code: '1.000656', name: 'Đăng ký kết hôn', doc: 'Tờ khai đăng ký kết hôn' },
  { code: '1.004227', name: 'Cấp bản sao trích lục hộ tịch', doc: 'Tờ khai cấp bản sao trích lục' },
  { code: '2.000908', name: 'Chứng thực bản sao từ bản chính', doc: 'Bản chính giấy tờ cần chứng thực' },
  { code: '1.003583', name: 'Đăng ký thường trú', doc: 'Tờ khai thay đổi thông tin cư trú' },
];
const WARDS = ['Phường Bến Nghé', 'Phường Hàng Bạc', 'Xã Tân Thông Hội', 'Phường Vĩnh Ninh', 'Xã Hòa Phước'];
const FILLER =
  'Công dân nộp hồ sơ trực tiếp tại bộ phận một cửa; cán bộ tiếp nhận đã kiểm tra tính đầy đủ, ' +
  'hợp lệ của giấy tờ và hẹn ngày trả kết quả theo quy định. ';

function pick(rng, list) {
  return list[Math.floor(rng() * list.length)];
}

function utf8Len(value) {
  return Buffer.byteLength(JSON.stringify(value), 'utf8');
}

// The dossier for index i; with `size`, padded with a Vietnamese note so that the UTF-8 JSON of the
// document is exactly `size` bytes (or as small as it can be, when `size` is below the bare dossier).
function makeDossier(i, size) {
  const rng = mulberry32(0x9e3779b9 ^ i);
  const proc = pick(rng, PROCEDURES);
  const seq = String(i + 1).padStart(6, '0');
  const doc = {
    _id: `000.00.01.H26-261122-${seq}`,
    type: 'dossier',
    branch: 'CN01',
    dossier: `000.00.01.H26-261122-${seq}`,
    received_at: new Date(Date.UTC(2026, 10, 22, 1, 0, 0) + i * 37000).toISOString(),
    applicant: {
      name: `${pick(rng, FAMILY)} ${pick(rng, MIDDLE)} ${pick(rng, GIVEN)}`,
      id_number: String(1e11 + Math.floor(rng() * 9e11)),
      phone: '09' + String(Math.floor(rng() * 1e8)).padStart(8, '0'),
      address: `${1 + Math.floor(rng() * 300)} đường Lê Lợi, ${pick(rng, WARDS)}`,
    },
    procedure: { code: proc.code, name: proc.name },
    documents: [{ name: proc.doc, form: 'original', count: 1 }],
    fee: 0,
    status: 'received',
  };
  if (size === undefined) return doc;
  const base = utf8Len(doc) + Buffer.byteLength(',"note":""', 'utf8');
  let room = size - base;
  if (room < 0) return doc;
  let note = '';
  // Bounded: at most `room` characters are appended.
  for (let k = 0; room > 0; k++) {
    const ch = FILLER[k % FILLER.length];
    const n = Buffer.byteLength(ch, 'utf8');
    if (n > room) {
      note += ' '.repeat(room);
      break;
    }
    note += ch;
    room -= n;
  }
  doc.note = note;
  return doc;
}

if (args.sample) {
  const size = args.size === undefined ? 500 : intArg('size', 500, 1);
  const doc = makeDossier(0, size);
  process.stdout.write(JSON.stringify(doc) + '\n');
  process.stderr.write(`${utf8Len(doc)} bytes\n`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------------

const mode = args.mode;
if (mode !== 'docs' && mode !== 'attachments') die(`--mode must be docs or attachments, got ${mode}`);
if (!args.remote) die('--remote URL is required');
if (!args.dir) die('--dir DIR is required');
const remoteUrl = new URL(args.remote);
if (!/^127\.\d+\.\d+\.\d+$/.test(remoteUrl.hostname) && remoteUrl.hostname !== 'localhost') {
  die(`--remote must be on loopback, got ${remoteUrl.hostname}`);
}
const count = intArg('count', mode === 'docs' ? 25000 : 200, 1);
const size = intArg('size', mode === 'docs' ? 500 : 1 << 20, 1);
const batchSize = intArg('batch-size', 100, 1);
const batchesLimit = intArg('batches-limit', 10, 1);
const timeoutS = intArg('timeout', 1200, 1);

const watchdog = setTimeout(() => die(`timed out after ${timeoutS} s`), timeoutS * 1000);
watchdog.unref();

const PouchDB = require('pouchdb-node');

function versionOf(name) {
  return require(`${name}/package.json`).version;
}

function md5(buf) {
  return crypto.createHash('md5').update(buf).digest('base64');
}

function now() {
  return Number(process.hrtime.bigint()) / 1e9;
}

async function populateDocs(local) {
  let bytes = 0;
  const CHUNK = 1000;
  for (let start = 0; start < count; start += CHUNK) {
    const docs = [];
    for (let i = start; i < Math.min(count, start + CHUNK); i++) {
      const doc = makeDossier(i, size);
      bytes += utf8Len(doc);
      docs.push(doc);
    }
    const res = await local.bulkDocs(docs);
    const bad = res.filter((r) => r.error);
    if (bad.length) throw new Error(`local bulkDocs failed: ${JSON.stringify(bad[0])}`);
  }
  return { bytes };
}

async function populateAttachments(local) {
  const digests = new Map();
  const CHUNK = 10;
  for (let start = 0; start < count; start += CHUNK) {
    const docs = [];
    for (let i = start; i < Math.min(count, start + CHUNK); i++) {
      const data = crypto.randomBytes(size);
      const doc = makeDossier(i);
      doc.type = 'scan';
      doc._attachments = { 'scan.bin': { content_type: 'application/octet-stream', data } };
      digests.set(doc._id, md5(data));
      docs.push(doc);
    }
    const res = await local.bulkDocs(docs);
    const bad = res.filter((r) => r.error);
    if (bad.length) throw new Error(`local bulkDocs failed: ${JSON.stringify(bad[0])}`);
  }
  return { bytes: count * size, digests };
}

// JSON with object keys sorted, so that documents compare by content (the server reorders _id).
function canonical(value) {
  if (Array.isArray(value)) return '[' + value.map(canonical).join(',') + ']';
  if (value && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + canonical(value[k])).join(',') + '}';
  }
  return JSON.stringify(value);
}

function stripRev(doc) {
  const { _rev, ...rest } = doc; // eslint-disable-line no-unused-vars
  return rest;
}

async function verifyDocs(remote) {
  const PAGE = 2000;
  let checked = 0;
  for (let start = 0; start < count; start += PAGE) {
    const ids = [];
    for (let i = start; i < Math.min(count, start + PAGE); i++) ids.push(makeDossier(i, size)._id);
    const res = await remote.allDocs({ keys: ids, include_docs: true });
    res.rows.forEach((row, k) => {
      if (!row.doc) throw new Error(`remote is missing ${ids[k]}`);
      const want = canonical(makeDossier(start + k, size));
      const got = canonical(stripRev(row.doc));
      if (want !== got) throw new Error(`remote ${ids[k]} differs:\n  want ${want}\n  got  ${got}`);
      checked++;
    });
  }
  return checked;
}

async function verifyAttachments(remote, digests) {
  let checked = 0;
  for (const [id, digest] of digests) {
    const data = await remote.getAttachment(id, 'scan.bin');
    if (data.length !== size) throw new Error(`remote ${id}: attachment is ${data.length} bytes`);
    if (md5(data) !== digest) throw new Error(`remote ${id}: attachment bytes differ`);
    checked++;
  }
  return checked;
}

async function main() {
  const localDir = path.resolve(args.dir);
  fs.mkdirSync(localDir, { recursive: true });
  const local = new PouchDB(path.join(localDir, 'node'));
  const remote = new PouchDB(args.remote);

  const t0 = now();
  const populated = mode === 'docs' ? await populateDocs(local) : await populateAttachments(local);
  const localInfo = await local.info();
  if (localInfo.doc_count !== count) throw new Error(`local has ${localInfo.doc_count} docs`);
  await remote.info(); // creates the remote database: not part of the timed replication
  const setupSeconds = now() - t0;

  const t1 = now();
  const rep = await local.replicate.to(remote, { batch_size: batchSize, batches_limit: batchesLimit });
  const seconds = now() - t1;

  if (!rep.ok || rep.doc_write_failures !== 0 || rep.docs_written !== count) {
    throw new Error(`replication: ok=${rep.ok} written=${rep.docs_written} failures=${rep.doc_write_failures}`);
  }
  const t2 = now();
  const remoteInfo = await remote.info();
  if (remoteInfo.doc_count !== count) throw new Error(`remote has ${remoteInfo.doc_count} docs, not ${count}`);
  const verified =
    mode === 'docs' ? await verifyDocs(remote) : await verifyAttachments(remote, populated.digests);
  const verifySeconds = now() - t2;
  await local.close();
  await remote.close();

  const out = {
    peer: 'pouchdb',
    mode,
    docs: count,
    size,
    bytes: populated.bytes,
    // docs: UTF-8 JSON bytes of the documents; attachments: attachment bytes only.
    avg_doc_bytes: mode === 'docs' ? Number((populated.bytes / count).toFixed(1)) : undefined,
    seconds: Number(seconds.toFixed(6)),
    docs_per_s: Number((count / seconds).toFixed(1)),
    mib_per_s: Number((populated.bytes / 1048576 / seconds).toFixed(3)),
    remote_doc_count: remoteInfo.doc_count,
    verified,
    docs_written: rep.docs_written,
    batch_size: batchSize,
    batches_limit: batchesLimit,
    setup_seconds: Number(setupSeconds.toFixed(3)),
    verify_seconds: Number(verifySeconds.toFixed(3)),
    adapter: { local: local.adapter, remote: remote.adapter },
    versions: {
      node: process.versions.node,
      'pouchdb-node': versionOf('pouchdb-node'),
      leveldown: versionOf('leveldown'),
    },
  };
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => die(err && err.stack ? err.stack : String(err)),
);
