// A client peer of the comparison, driven by JSON lines on stdin (one reply per line on
// stdout). The same commands run against either system:
//
// - Gun.js: this process is a Gun peer connected to the relay over WebSocket, without
//   storage of its own, so a put's callback is the relay's acknowledgement.
// - CosmicSyncCore: this process is an HTTP client of its own cosmic-node (a PUT answers
//   200 once the write is durable; changes arrive over the Server-Sent Events stream).
//
// Usage: node peer.mjs gun RELAY_URL | node peer.mjs cosmic
// (a cosmic peer learns its node's API with the `connect` command).

import http from 'node:http';

import Gun from 'gun';
import { commands, key, send, sleep, value, wall, windowed } from './common.mjs';

/** How long one put may wait for its acknowledgement. */
const ACK_TIMEOUT_MS = 30_000;

/** Gun.js: puts acknowledged by the relay, subscriptions with `map().on`. */
class GunBackend {
  constructor(relay) {
    // No radisk and no localStorage here: the only acknowledgement can come from the relay.
    // AXE (Gun's relay routing) is for relays; on a client peer it swallows the acks.
    this.gun = Gun({
      peers: [relay],
      radisk: false,
      localStorage: false,
      multicast: false,
      axe: false,
    });
  }

  put(root, name, record) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new Error(`no ack for ${name} within ${ACK_TIMEOUT_MS} ms`));
      }, ACK_TIMEOUT_MS);
      this.gun
        .get(root)
        .get(name)
        .put(record, (ack) => {
          if (settled) {
            return;
          }
          settled = true;
          clearTimeout(timer);
          if (ack.err) {
            reject(new Error(String(ack.err)));
          } else {
            resolve();
          }
        });
    });
  }

  async watch(root, onDoc) {
    this.gun
      .get(root)
      .map()
      .on((data, name) => {
        if (data && typeof data === 'object') {
          onDoc(name, data);
        }
      });
  }
}

/**
 * CosmicSyncCore: HTTP PUT per document, the SSE change stream per space.
 *
 * PUTs go through `node:http` with a keep-alive agent (one socket per put in flight):
 * Node 20's `fetch` costs this process more CPU per request than the node spends on the
 * write (measured against a lone node, 64 in flight: about 1,000 puts/s with `fetch`,
 * 2,300-2,500 with `node:http`, 4,900 with ApacheBench), and this process shares the two
 * cores with the nodes.
 */
class CosmicBackend {
  constructor(api, token) {
    this.api = new URL(api);
    this.auth = `Bearer ${token}`;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  }

  put(root, name, record) {
    const body = JSON.stringify(record);
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          host: this.api.hostname,
          port: this.api.port,
          path: `/v1/spaces/${root}/docs/${name}`,
          method: 'PUT',
          agent: this.agent,
          timeout: ACK_TIMEOUT_MS,
          headers: {
            authorization: this.auth,
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (response) => {
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk) => {
            text += chunk;
          });
          response.on('end', () => {
            if (response.statusCode === 200) {
              resolve();
            } else {
              reject(new Error(`PUT ${name}: ${response.statusCode} ${text}`));
            }
          });
          response.on('error', reject);
        },
      );
      request.on('timeout', () => {
        request.destroy(new Error(`no answer for ${name} within ${ACK_TIMEOUT_MS} ms`));
      });
      request.on('error', reject);
      request.end(body);
    });
  }

  async watch(root, onDoc) {
    const response = await fetch(new URL(`/v1/spaces/${root}/events?since=0`, this.api), {
      headers: { authorization: this.auth, accept: 'text/event-stream' },
    });
    if (response.status !== 200) {
      throw new Error(`events: ${response.status} ${await response.text()}`);
    }
    const docs = new Map();
    const decoder = new TextDecoder();
    let buffer = '';
    const pump = async () => {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf('\n');
        while (end >= 0) {
          const line = buffer.slice(0, end).replace(/\r$/, '');
          buffer = buffer.slice(end + 1);
          end = buffer.indexOf('\n');
          if (!line.startsWith('data:')) {
            continue;
          }
          const change = JSON.parse(line.slice(5));
          const fields = docs.get(change.doc) ?? {};
          fields[change.field] = change.value;
          docs.set(change.doc, fields);
          onDoc(change.doc, fields);
        }
      }
    };
    // The stream ends when the node stops; that is expected in the catch-up workload.
    pump().catch(() => {});
  }
}

let backend = process.argv[2] === 'gun' ? new GunBackend(process.argv[3]) : null;

/** Whether `data` is the complete document written by `value(i, size, stamp)`. */
function complete(data, size, stamp) {
  return (
    typeof data.v === 'string' &&
    data.v.length === size &&
    typeof data.i === 'number' &&
    (!stamp || typeof data.t === 'number')
  );
}

commands(async (command) => {
  switch (command.cmd) {
    case 'ping':
      return { pong: true };
    case 'connect':
      backend = new CosmicBackend(command.api, command.token);
      return { connected: true };
    case 'puts': {
      // `n` puts of keys from..from+n, at most `window` unacknowledged.
      let errors = 0;
      let firstError = null;
      const started = wall();
      await windowed(command.n, command.window, async (index) => {
        const i = command.from + index;
        try {
          await backend.put(command.root, key(i, command.prefix), value(i, command.size, false));
        } catch (error) {
          errors += 1;
          firstError ??= String(error);
        }
      });
      return { started, finished: wall(), errors, firstError };
    }
    case 'paced': {
      // One put every `interval` ms, each stamped with its send time, not waiting for acks.
      const pending = [];
      let errors = 0;
      const started = wall();
      for (let i = 0; i < command.n; i += 1) {
        const due = started + i * command.interval;
        const wait = due - wall();
        if (wait > 0) {
          await sleep(wait);
        }
        pending.push(
          backend.put(command.root, key(i), value(i, command.size, true)).catch(() => {
            errors += 1;
          }),
        );
      }
      await Promise.all(pending);
      return { started, finished: wall(), errors };
    }
    case 'watch': {
      // Replies once subscribed; later sends one `done` event when `n` complete documents
      // whose keys start with `prefix` have arrived.
      const seen = new Set();
      const latencies = [];
      let first = null;
      let done = false;
      await backend.watch(command.root, (name, data) => {
        if (done || !name.startsWith(command.prefix) || seen.has(name)) {
          return;
        }
        if (!complete(data, command.size, command.stamp)) {
          return;
        }
        const now = wall();
        seen.add(name);
        first ??= now;
        if (command.stamp) {
          latencies.push(now - data.t);
        }
        if (seen.size >= command.n) {
          done = true;
          send({ event: 'done', id: command.id, first, last: now, count: seen.size, latencies });
        }
      });
      return { watching: true, at: wall() };
    }
    default:
      throw new Error(`unknown command ${command.cmd}`);
  }
});

send({ ready: true });
