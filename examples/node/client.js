// A Node.js client of the sscard suite, written from protos/ alone (examples/node/README.md).
//
// It registers a person (the registry feed), applies for a card at an instant branch of the
// bank (made on the spot, A22.3), follows the application with WatchSaga (losing the stream once
// and resuming it from the last sequence), collects and activates the card at the branch, tops
// up 50 yuan at a transit kiosk (retrying a call whose deadline ran out with the same request
// id), and decodes two refusals' google.rpc.ErrorInfo and BadRequest.
//
// Credentials: each role's JWT, as `sscard token` prints it, in an environment variable or in
// the file that variable's _FILE twin names (examples/node/README.md).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTOS = process.env.SSCARD_PROTOS || path.join(__dirname, "..", "..", "protos");
const BANK = "ICBC";
const BRANCH = process.env.SSCARD_BRANCH || "ICBC-NODE-01";
const PHOTO = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(64)]);
// Transport failures: the same request again, with the same request id, is safe.
const RETRYABLE = new Set([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.ABORTED,
]);

// --- contracts ----------------------------------------------------------------------------

const definition = protoLoader.loadSync(
  [
    "sscard/identity/v1/identity.proto",
    "sscard/card/v1/card.proto",
    "sscard/bank/v1/bank.proto",
    "sscard/transit/v1/transit.proto",
  ],
  // Field names as in the .proto files; int64 fields (fen, ids) as strings, as in proto3 JSON:
  // never a float.
  { includeDirs: [PROTOS], keepCase: true, longs: String, enums: String, defaults: true },
);
const sscard = grpc.loadPackageDefinition(definition).sscard;

// google.rpc.Status and its details (vendored from googleapis, examples/node/google/rpc).
const rpc = new protobuf.Root();
rpc.resolvePath = (_origin, target) => {
  const local = path.join(__dirname, target);
  return fs.existsSync(local) ? local : target;
};
rpc.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], { keepCase: true });
const Status = rpc.lookupType("google.rpc.Status");
const DETAILS = {
  "type.googleapis.com/google.rpc.ErrorInfo": rpc.lookupType("google.rpc.ErrorInfo"),
  "type.googleapis.com/google.rpc.BadRequest": rpc.lookupType("google.rpc.BadRequest"),
  "type.googleapis.com/google.rpc.RetryInfo": rpc.lookupType("google.rpc.RetryInfo"),
};

// The largest request message a service reads (its SSCARD_MAX_REQUEST_BYTES, 1 MiB by
// default); a larger one is refused RESOURCE_EXHAUSTED by gRPC itself.
const REQUEST_BYTES = 1 << 20;
// The contracts as protobufjs types, to measure the messages of a bulk stream (slices).
const contracts = new protobuf.Root();
contracts.resolvePath = (_origin, target) => {
  const local = path.join(PROTOS, target);
  return fs.existsSync(local) ? local : target;
};
contracts.loadSync(["sscard/identity/v1/identity.proto", "sscard/card/v1/card.proto"], {
  keepCase: true,
});
contracts.resolveAll();

// The messages of a bulk client stream (ImportPersons, ApplyBatch) carrying `request` whole,
// cut along its repeated field: the first keeps the other fields (the header), each carries as
// many items as fit in `limit` bytes. An item larger than the limit travels alone, and the
// service refuses it.
function slices(typeName, request, limit = REQUEST_BYTES) {
  const type = contracts.lookupType(typeName);
  const field = type.fieldsArray.find((f) => f.repeated && f.resolvedType instanceof protobuf.Type).name;
  const size = (message) => type.encode(type.fromObject(message)).finish().length;
  let current = { ...request, [field]: [] };
  const messages = [current];
  let used = size(current);
  for (const item of request[field]) {
    const cost = size({ [field]: [item] });
    if (used > 0 && used + cost > limit) {
      current = { [field]: [] };
      messages.push(current);
      used = 0;
    }
    current[field].push(item);
    used += cost;
  }
  return messages;
}

// --- credentials --------------------------------------------------------------------------

function token(name) {
  const variable = `SSCARD_TOKEN_${name}`;
  if (process.env[variable]) return process.env[variable].trim();
  const file = process.env[`${variable}_FILE`];
  if (file) return fs.readFileSync(file, "utf8").trim();
  throw new Error(`set ${variable} (or ${variable}_FILE) to a credential from \`sscard token\``);
}

// A credential is bound to the client certificate it was issued for (mutual TLS, README's
// Transport section): each one travels over connections that present its own certificate.
function credential(name) {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token(name)}`);
  connections.set(metadata, { name, clients: {} });
  return metadata;
}

// SSCARD_TLS_CA_FILE (default var/tls/ca.pem), and per credential SSCARD_TLS_CERT_<NAME>_FILE / SSCARD_TLS_KEY_<NAME>_FILE
// (else SSCARD_TLS_CERT_FILE / SSCARD_TLS_KEY_FILE); SSCARD_TLS=off for a development suite
// without TLS.
function transport(name) {
  if ((process.env.SSCARD_TLS || "on").toLowerCase() === "off") {
    return grpc.credentials.createInsecure();
  }
  const file = (kind) => {
    const variable = [`SSCARD_TLS_${kind}_${name}_FILE`, `SSCARD_TLS_${kind}_FILE`].find(
      (v) => process.env[v],
    );
    if (!variable) throw new Error(`set SSCARD_TLS_${kind}_${name}_FILE or SSCARD_TLS_${kind}_FILE`);
    return fs.readFileSync(process.env[variable]);
  };
  const ca = process.env.SSCARD_TLS_CA_FILE || path.join(__dirname, "..", "..", "var", "tls", "ca.pem");
  return grpc.credentials.createSsl(fs.readFileSync(ca), file("KEY"), file("CERT"));
}

function target(service, port) {
  return process.env[`SSCARD_${service.toUpperCase()}_TARGET`] || `127.0.0.1:${port}`;
}

const SERVICES = {
  identity: [sscard.identity.v1.IdentityService, 50051],
  card: [sscard.card.v1.CardService, 50052],
  bank: [sscard.bank.v1.BankService, 50053],
  transit: [sscard.transit.v1.TransitService, 50054],
};
const connections = new Map();
const [identity, card, bank, transit] = Object.keys(SERVICES);

// The client of `service` that carries `metadata`'s credential over its own certificate.
function client(service, metadata) {
  const held = connections.get(metadata);
  if (!held.clients[service]) {
    const [Service, port] = SERVICES[service];
    held.clients[service] = new Service(target(service, port), transport(held.name));
  }
  return held.clients[service];
}

// --- calls --------------------------------------------------------------------------------

function deadline(ms) {
  return new Date(Date.now() + ms);
}

function call(service, method, request, metadata, ms = 10000) {
  return new Promise((resolve, reject) => {
    client(service, metadata)[method](request, metadata, { deadline: deadline(ms) }, (error, answer) =>
      error ? reject(error) : resolve(answer),
    );
  });
}

// A refusal as the suite sends it: code, ErrorInfo (reason, rule) and BadRequest violations,
// decoded from the `grpc-status-details-bin` trailer (a serialized google.rpc.Status).
function refusal(error) {
  const decoded = { code: grpc.status[error.code], reason: "", rule: "", violations: [] };
  const [bin] = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (!bin) return decoded;
  for (const any of Status.decode(bin).details) {
    const type = DETAILS[any.type_url];
    if (!type) continue;
    const detail = type.decode(any.value);
    if (any.type_url.endsWith("ErrorInfo")) {
      decoded.reason = detail.reason;
      decoded.rule = detail.metadata.rule || "";
    } else if (any.type_url.endsWith("BadRequest")) {
      decoded.violations = detail.field_violations.map((v) => `${v.field}: ${v.description}`);
    }
  }
  return decoded;
}

function say(text) {
  console.log(text);
}

// A valid resident ID number (GB 11643 check character) for a person born in 1970-2002.
function residentId() {
  const birth = new Date(Date.UTC(1970, 0, 1) + crypto.randomInt(12000) * 86400000);
  const ymd = birth.toISOString().slice(0, 10).replaceAll("-", "");
  const first17 = `110105${ymd}${String(crypto.randomInt(1000)).padStart(3, "0")}`;
  const weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
  const sum = [...first17].reduce((total, digit, i) => total + Number(digit) * weights[i], 0);
  return first17 + "10X98765432"[sum % 11];
}

// Every event of a saga, resumable: `after` is the last sequence already received.
function watch(sagaId, after, metadata, onEvent) {
  return new Promise((resolve, reject) => {
    const stream = client(card, metadata).WatchSaga(
      { saga_id: sagaId, after_sequence: String(after) },
      metadata,
    );
    let last = after;
    let ended = false;
    stream.on("data", (event) => {
      last = Number(event.sequence);
      if (onEvent(event) === false && !event.final) {
        ended = true;
        stream.cancel(); // the client goes away mid-way
        resolve({ last, final: false });
      } else if (event.final) {
        ended = true;
        resolve({ last, final: true });
      }
    });
    stream.on("error", (error) => {
      if (ended) return;
      // UNAVAILABLE WATCH_INTERRUPTED (the server drains) or a lost connection: watch again.
      if (RETRYABLE.has(error.code)) resolve({ last, final: false });
      else reject(error);
    });
    stream.on("end", () => ended || resolve({ last, final: false }));
  });
}

async function main() {
  const run = crypto.randomBytes(4).toString("hex");
  const ops = credential("OPS");
  const registry = credential("REGISTRY");
  const branch = credential("BRANCH");
  const kiosk = credential("KIOSK");

  await call(bank, "UpsertBranch", {
    request_id: `node-branch-${BRANCH}`,
    branch: { bank_code: BANK, branch_id: BRANCH, name: "Node example branch", instant: true },
  }, ops);

  const document = { type: "DOCUMENT_TYPE_RESIDENT_ID", number: residentId() };
  const imported = await new Promise((resolve, reject) => {
    const stream = client(identity, registry).ImportPersons(registry, { deadline: deadline(10000) }, (e, a) =>
      e ? reject(e) : resolve(a),
    );
    const feed = {
      batch_id: `node-feed-${run}`,
      records: [{ document, name: "王芳", insured_in_beijing: true, source: "RECORD_SOURCE_HR" }],
    };
    for (const message of slices("sscard.identity.v1.ImportPersonsRequest", feed)) stream.write(message);
    stream.end();
  });
  say(`registered: ${imported.created} person`);

  const applicant = {
    document,
    name: "王芳",
    photo: PHOTO,
    occupation: "nurse",
    mobile: "13912345678",
    address: "2 Fuxingmen Street, Xicheng, Beijing",
  };
  const application = {
    request_id: `node-apply-${run}`,
    applicant,
    bank_code: BANK,
    delivery: "DELIVERY_BRANCH_PICKUP",
    pickup_branch_id: BRANCH,
  };
  const started = await call(card, "Apply", application, branch);
  say(`applied: card ${started.card_id}, saga ${started.saga_id}`);

  // Follow the saga; drop the stream after the first event, then resume from its sequence.
  const first = await watch(started.saga_id, 0, branch, (event) => {
    say(`event ${event.sequence}: ${event.state} ${event.step}`);
    return false;
  });
  let outcome = first;
  if (!first.final) {
    say(`stream lost after sequence ${first.last}; resuming`);
    while (!outcome.final) {
      outcome = await watch(started.saga_id, outcome.last, branch, (event) => {
        say(`event ${event.sequence}: ${event.state} ${event.step}`);
        if (event.final && event.state === "SAGA_STATE_FAILED") {
          say(`refused: ${event.refusal_reason} rule ${event.refusal_rule}`);
        }
      });
    }
  }

  await call(card, "RecordCollection", {
    request_id: `node-collect-${run}`,
    card_id: started.card_id,
    method: "COLLECTION_METHOD_AT_BRANCH",
    document,
  }, branch);
  const active = await call(card, "ActivateCard", {
    request_id: `node-activate-${run}`,
    card_id: started.card_id,
    document,
  }, branch);
  say(`card status: ${active.status}`);

  // A top-up whose answer does not arrive in time: the same request id again never pays twice.
  const topUp = { request_id: `node-topup-${run}`, card_id: started.card_id, amount_fen: "5000" };
  let entry;
  for (let attempt = 1; !entry; attempt += 1) {
    try {
      entry = await call(transit, "TopUp", topUp, kiosk, attempt === 1 ? 1 : 10000);
    } catch (error) {
      if (!RETRYABLE.has(error.code) || attempt >= 5) throw error;
      say(`top-up attempt ${attempt}: ${grpc.status[error.code]}; retrying with the same request id`);
    }
  }
  const wallet = await call(transit, "GetBalance", { card_id: started.card_id }, kiosk);
  say(`balance: ${(Number(wallet.balance_fen) / 100).toFixed(2)} yuan (${wallet.balance_fen} fen)`);

  // Two refusals, decoded: a malformed document, and a second card for the same person.
  for (const [label, request] of [
    ["malformed", { ...application, request_id: `node-bad-${run}`, applicant: { ...applicant, document: { type: "DOCUMENT_TYPE_RESIDENT_ID", number: "123" } } }],
    ["second card", { ...application, request_id: `node-again-${run}` }],
  ]) {
    try {
      await call(card, "Apply", request, branch);
      say(`${label}: accepted`);
    } catch (error) {
      const r = refusal(error);
      say(`${label}: ${r.code} ${r.reason} rule ${r.rule}`);
      for (const violation of r.violations) say(`  field ${violation}`);
    }
  }
  say("done");
}

main()
  .catch((error) => {
    const r = refusal(error);
    console.error(`failed: ${r.code} ${r.reason} ${r.rule} ${error.details || error.message}`);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const held of connections.values()) {
      for (const open of Object.values(held.clients)) open.close();
    }
  });
