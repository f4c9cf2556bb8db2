// Shared pieces of the comparison harness: clocks, the workload values and line I/O.

import readline from 'node:readline';

/** Wall-clock time in milliseconds with sub-millisecond resolution, comparable across
 * processes on one machine. */
export function wall() {
  return performance.timeOrigin + performance.now();
}

/** The value written under key number `i`: the same shape for both systems. */
export function value(i, size, stamp) {
  const record = { v: 'x'.repeat(size), i };
  if (stamp) {
    record.t = wall();
  }
  return record;
}

/** The key written for number `i`: `k000123` (another prefix for the warm-up). */
export function key(i, prefix = 'k') {
  return `${prefix}${String(i).padStart(6, '0')}`;
}

/** Writes one JSON line to stdout. */
export function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Calls `handle` for every JSON line read on stdin; exits when stdin closes. */
export function commands(handle) {
  const lines = readline.createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (!line.trim()) {
      return;
    }
    let command;
    try {
      command = JSON.parse(line);
    } catch (error) {
      send({ error: `bad command: ${error.message}` });
      return;
    }
    Promise.resolve()
      .then(() => handle(command))
      .then(
        (reply) => send({ id: command.id, ...reply }),
        (error) => send({ id: command.id, error: String(error?.stack ?? error) }),
      );
  });
  lines.on('close', () => process.exit(0));
}

/** Runs `count` tasks with at most `window` in flight; resolves when all have finished. */
export async function windowed(count, window, task) {
  let next = 0;
  async function worker() {
    while (next < count) {
      const index = next;
      next += 1;
      await task(index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(window, count) }, worker));
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
