// The coordinator of the Gun.js comparison: starts both systems on loopback, runs the
// four workloads against each, interleaved run by run, and prints one JSON line per
// measurement on stdout (`{"system", "workload", "run", "value", ...}`), then
// `{"finished": true}`. Every process it starts is killed before it exits.
//
// Usage: node compare.mjs --node-bin PATH --work DIR [--runs N] [--quick]
//
// Topology, the same for both systems: a relay R and two client peers A and B, each a
// separate process. Gun.js: R is a Gun server with radisk (relay.mjs), A and B are Gun
// peers (peer.mjs) connected to R only. CosmicSyncCore: R, A and B are cosmic-node
// processes, A and B bootstrapped to R; the A and B clients are peer.mjs processes that
// speak HTTP and SSE to their own node.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { sleep, wall } from './common.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
function option(name) {
  const at = args.indexOf(name);
  return at >= 0 ? args[at + 1] : undefined;
}
const nodeBin = option('--node-bin');
const work = option('--work');
const quick = args.includes('--quick');
const runs = Number(option('--runs') ?? (quick ? 2 : 3));
if (!nodeBin || !work) {
  console.error('usage: node compare.mjs --node-bin PATH --work DIR [--runs N] [--quick]');
  process.exit(2);
}

/** Workload sizes, equal for both systems. */
const SIZES = quick
  ? { puts: 500, window: 64, size: 100, samples: 60, interval: 20, stream: 500, catchup: 300 }
  : { puts: 2000, window: 64, size: 100, samples: 200, interval: 20, stream: 2000, catchup: 1000 };
/** Deadline for one step (a workload, a start-up, a warm-up). */
const STEP_MS = quick ? 60_000 : 120_000;

function emit(record) {
  process.stdout.write(`${JSON.stringify(record)}\n`);
}

function log(message) {
  process.stderr.write(`compare: ${message}\n`);
}

/** Rejects after `ms` unless `promise` settles first. */
function deadline(promise, ms, what) {
  let timer;
  const expiry = new Promise((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/** Every child still running, so that none outlives the coordinator. */
const children = new Set();

function killAll() {
  for (const child of children) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    killAll();
    process.exit(1);
  });
}

/** A child process whose stdout is read line by line; JSON lines answer commands. */
class Child {
  constructor(command, argv, logFile, env = process.env) {
    const errors = fs.openSync(logFile, 'a');
    this.process = spawn(command, argv, { stdio: ['pipe', 'pipe', errors], env });
    fs.closeSync(errors);
    children.add(this.process);
    this.name = path.basename(logFile);
    this.exited = new Promise((resolve) => {
      this.process.on('exit', (code, signal) => {
        children.delete(this.process);
        resolve({ code, signal });
      });
    });
    this.process.on('error', (error) => log(`${this.name}: ${error.message}`));
    this.process.stdin.on('error', () => {});
    this.waiters = new Map();
    this.lineWaiters = [];
    this.nextId = 1;
    readline.createInterface({ input: this.process.stdout }).on('line', (line) => {
      for (const waiter of [...this.lineWaiters]) {
        const match = waiter.pattern.exec(line);
        if (match) {
          this.lineWaiters.splice(this.lineWaiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
      if (!line.startsWith('{')) {
        return; // Gun greets on stdout
      }
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        return; // not one of ours
      }
      const waiterKey = message.event ? `${message.event}:${message.id}` : `${message.id}`;
      const waiter = this.waiters.get(waiterKey);
      if (waiter) {
        this.waiters.delete(waiterKey);
        if (message.error) {
          waiter.reject(new Error(`${this.name}: ${message.error}`));
        } else {
          waiter.resolve(message);
        }
      }
    });
  }

  /** Resolves with the match of the first stdout line matching `pattern`. */
  line(pattern, what) {
    const seen = new Promise((resolve) => this.lineWaiters.push({ pattern, resolve }));
    const died = this.exited.then(({ code, signal }) => {
      throw new Error(`${this.name} exited (${code ?? signal}) before: ${what}`);
    });
    return deadline(Promise.race([seen, died]), STEP_MS, `${this.name} ${what}`);
  }

  /** Sends a command; resolves with its reply and, when asked, a promise of its event. */
  request(command, event) {
    const id = this.nextId;
    this.nextId += 1;
    const reply = new Promise((resolve, reject) => {
      this.waiters.set(`${id}`, { resolve, reject });
    });
    let later = null;
    if (event) {
      later = deadline(
        new Promise((resolve, reject) => this.waiters.set(`${event}:${id}`, { resolve, reject })),
        STEP_MS,
        `${this.name} ${command.cmd} ${event}`,
      );
      later.catch(() => {}); // awaited by the caller when it needs it
    }
    this.process.stdin.write(`${JSON.stringify({ id, ...command })}\n`);
    return deadline(reply, STEP_MS, `${this.name} ${command.cmd}`).then((answer) =>
      event ? { answer, event: later } : answer,
    );
  }

  /** Asks the process to stop (`signal`), then kills it if it takes longer than 10 s. */
  async stop(signal = 'SIGTERM') {
    if (this.process.exitCode !== null || this.process.signalCode !== null) {
      return;
    }
    this.process.kill(signal);
    const timer = setTimeout(() => this.process.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }
}

function peerProcess(dir, name, argv) {
  return new Child(process.execPath, [path.join(here, 'peer.mjs'), ...argv], path.join(dir, `${name}.log`));
}

// ---------------------------------------------------------------------------------------
// CosmicSyncCore

/** The environment of a cosmic-node: none of the caller's COSMIC_* settings, quiet logs. */
function nodeEnv() {
  const env = {};
  for (const [name, setting] of Object.entries(process.env)) {
    if (!name.startsWith('COSMIC_') && name !== 'RUST_LOG') {
      env[name] = setting;
    }
  }
  env.RUST_LOG = 'warn';
  return env;
}

class CosmicNode {
  static async start(dir, bootstrap) {
    fs.mkdirSync(dir, { recursive: true });
    const argv = ['--data-dir', dir, 'run', '--listen', '/ip4/127.0.0.1/tcp/0', '--api', '127.0.0.1:0', '--no-mdns'];
    if (bootstrap) {
      argv.push('--bootstrap', bootstrap);
    }
    const node = new CosmicNode();
    node.dir = dir;
    node.child = new Child(nodeBin, argv, `${dir}.log`, nodeEnv());
    const ready = await node.child.line(/^ready peer_id=(\S+) api=(\S+) listen=(\S+)/, 'ready line');
    node.peerId = ready[1];
    node.api = ready[2];
    node.listen = ready[3].split(',')[0];
    node.token = fs.readFileSync(path.join(dir, 'api.token'), 'utf8').trim();
    return node;
  }

  get address() {
    return `${this.listen}/p2p/${this.peerId}`;
  }

  async call(method, route, body) {
    const response = await fetch(`${this.api}${route}`, {
      method,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`${method} ${route}: ${response.status} ${text}`);
    }
    return text ? JSON.parse(text) : null;
  }

  async space(id) {
    const listing = await this.call('GET', '/v1/spaces');
    const spaces = Array.isArray(listing) ? listing : listing.spaces;
    return spaces.find((space) => space.id === id);
  }
}

/** R, A and B as cosmic-node processes, one open space, and the A and B clients. */
async function cosmicTopology(dir) {
  const relay = await CosmicNode.start(path.join(dir, 'r'));
  const [a, b] = await Promise.all([
    CosmicNode.start(path.join(dir, 'a'), relay.address),
    CosmicNode.start(path.join(dir, 'b'), relay.address),
  ]);
  const { id: space } = await relay.call('POST', '/v1/spaces', { mode: 'open' });
  await a.call('POST', `/v1/spaces/${space}/join`);
  await b.call('POST', `/v1/spaces/${space}/join`);
  const peerA = peerProcess(dir, 'peer-a', ['cosmic']);
  const peerB = peerProcess(dir, 'peer-b', ['cosmic']);
  await peerA.request({ cmd: 'connect', api: a.api, token: a.token });
  await peerB.request({ cmd: 'connect', api: b.api, token: b.token });
  const topology = {
    root: space,
    a: peerA,
    b: peerB,
    async stopB() {
      await b.child.stop();
    },
    async relayHolds() {
      // A's puts are acknowledged by A's own disk: wait until R holds the same entries.
      const want = (await a.space(space)).state_hash;
      const until = wall() + STEP_MS;
      while ((await relay.space(space))?.state_hash !== want) {
        if (wall() > until) {
          throw new Error('the relay did not catch up with A');
        }
        await sleep(20);
      }
    },
    async startB() {
      const again = await CosmicNode.start(b.dir, relay.address);
      await peerB.request({ cmd: 'connect', api: again.api, token: again.token });
      nodes.push(again);
    },
    async direct() {
      // Whether A found B itself (through R) and syncs with it over a direct connection.
      const peers = await a.call('GET', '/v1/peers');
      return peers.some((peer) => peer.peer_id === b.peerId && peer.connections > 0);
    },
    async stop() {
      await Promise.all([peerA.stop(), peerB.stop()]);
      await Promise.all(nodes.map((node) => node.child.stop()));
    },
  };
  const nodes = [relay, a, b];
  return topology;
}

// ---------------------------------------------------------------------------------------
// Gun.js

async function gunTopology(dir, name) {
  fs.mkdirSync(dir, { recursive: true });
  const relay = new Child(process.execPath, [path.join(here, 'relay.mjs'), path.join(dir, 'radata')], path.join(dir, 'relay.log'));
  const [, port] = await relay.line(/^ready port=(\d+)/, 'ready line');
  const url = `http://127.0.0.1:${port}/gun`;
  const startPeer = async (peer) => {
    const child = peerProcess(dir, peer, ['gun', url]);
    await child.line(/^\{"ready":true\}/, 'ready line');
    return child;
  };
  const [peerA, peerB] = await Promise.all([startPeer('peer-a'), startPeer('peer-b')]);
  const topology = {
    root: name,
    a: peerA,
    b: peerB,
    async stopB() {
      await topology.b.stop('SIGKILL');
    },
    async relayHolds() {
      // Every put was acknowledged by the relay after its radisk write.
    },
    async direct() {
      return false; // A and B know only the relay
    },
    async startB() {
      topology.b = await startPeer('peer-b-again');
    },
    async stop() {
      await Promise.all([topology.a.stop('SIGKILL'), topology.b.stop('SIGKILL'), relay.stop('SIGKILL')]);
    },
  };
  return topology;
}

// ---------------------------------------------------------------------------------------
// Workloads

/** One document from A that B must see: the path A → R → B works before timing starts. */
async function warmUp(t) {
  const { event } = await t.b.request(
    { cmd: 'watch', root: t.root, prefix: 'w', n: 1, size: SIZES.size, stamp: false },
    'done',
  );
  const put = await t.a.request({ cmd: 'puts', root: t.root, prefix: 'w', from: 0, n: 1, window: 1, size: SIZES.size });
  if (put.errors) {
    throw new Error(`warm-up put failed: ${put.firstError}`);
  }
  await event;
}

function checkPuts(put) {
  if (put.errors) {
    throw new Error(`${put.errors} puts failed, first: ${put.firstError}`);
  }
}

const WORKLOADS = {
  /** Puts per second on A, each acknowledged, at most `window` in flight. */
  async puts(t) {
    const put = await t.a.request({ cmd: 'puts', root: t.root, prefix: 'k', from: 0, n: SIZES.puts, window: SIZES.window, size: SIZES.size });
    checkPuts(put);
    return { value: SIZES.puts / ((put.finished - put.started) / 1000), n: SIZES.puts };
  },

  /** Median time from a put on A to the complete document on B, one put every 20 ms. */
  async latency(t) {
    const { event } = await t.b.request(
      { cmd: 'watch', root: t.root, prefix: 'k', n: SIZES.samples, size: SIZES.size, stamp: true },
      'done',
    );
    const put = await t.a.request({ cmd: 'paced', root: t.root, n: SIZES.samples, interval: SIZES.interval, size: SIZES.size });
    if (put.errors) {
      throw new Error(`${put.errors} paced puts failed`);
    }
    const seen = (await event).latencies.sort((x, y) => x - y);
    const at = (q) => seen[Math.min(seen.length - 1, Math.floor(q * seen.length))];
    return { value: at(0.5), p95: at(0.95), n: seen.length };
  },

  /** Documents per second arriving on B while A writes as fast as its acks allow. */
  async throughput(t) {
    const { event } = await t.b.request(
      { cmd: 'watch', root: t.root, prefix: 'k', n: SIZES.stream, size: SIZES.size, stamp: false },
      'done',
    );
    const put = await t.a.request({ cmd: 'puts', root: t.root, prefix: 'k', from: 0, n: SIZES.stream, window: SIZES.window, size: SIZES.size });
    checkPuts(put);
    const done = await event;
    return { value: SIZES.stream / ((done.last - put.started) / 1000), n: SIZES.stream };
  },

  /** B is offline while A writes; from B's restart until B holds all of them. */
  async catchup(t) {
    await t.stopB();
    const put = await t.a.request({ cmd: 'puts', root: t.root, prefix: 'k', from: 0, n: SIZES.catchup, window: SIZES.window, size: SIZES.size });
    checkPuts(put);
    await t.relayHolds();
    const started = wall();
    await t.startB();
    const { event } = await t.b.request(
      { cmd: 'watch', root: t.root, prefix: 'k', n: SIZES.catchup, size: SIZES.size, stamp: false },
      'done',
    );
    const done = await event;
    return { value: done.last - started, n: SIZES.catchup };
  },
};

async function measure(system, workload, run) {
  const dir = path.join(work, 'runs', `${system}-${workload}-${run}`);
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const name = `bench-${workload}-${run}-${process.pid}`;
  const topology = system === 'cosmic' ? await cosmicTopology(dir) : await gunTopology(dir, name);
  try {
    await deadline(warmUp(topology), STEP_MS, `${system} warm-up`);
    const result = await deadline(WORKLOADS[workload](topology), STEP_MS, `${system} ${workload}`);
    emit({ system, workload, run, ...result, direct: await topology.direct() });
  } finally {
    await topology.stop();
  }
  // Kept only when the run failed (its logs are there); the disk is not ours to fill.
  fs.rmSync(dir, { recursive: true, force: true });
}

const started = wall();
try {
  emit({ sizes: SIZES, runs });
  for (let run = 0; run < runs; run += 1) {
    for (const workload of Object.keys(WORKLOADS)) {
      for (const system of ['cosmic', 'gun']) {
        log(`run ${run + 1}/${runs}: ${workload} on ${system}`);
        await measure(system, workload, run);
      }
    }
  }
  emit({ finished: true, seconds: (wall() - started) / 1000 });
  process.exit(0);
} catch (error) {
  log(String(error?.stack ?? error));
  killAll();
  process.exit(1);
}
