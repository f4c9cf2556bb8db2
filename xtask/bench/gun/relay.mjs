// The Gun.js relay for the comparison: a Gun server on 127.0.0.1 with radisk storage.
//
// Usage: node relay.mjs DATA_DIR
// Prints `ready port=PORT` once it accepts WebSocket peers at ws://127.0.0.1:PORT/gun,
// then runs until it is killed.

import http from 'node:http';
import Gun from 'gun';

const file = process.argv[2];
if (!file) {
  console.error('usage: node relay.mjs DATA_DIR');
  process.exit(2);
}

const server = http.createServer((_req, res) => {
  res.writeHead(404);
  res.end();
});
server.listen(0, '127.0.0.1', () => {
  // Radisk is Gun's default storage in Node; `file` keeps it in the throwaway dir.
  // Multicast is off so that nothing leaves loopback.
  Gun({ web: server, file, multicast: false });
  console.log(`ready port=${server.address().port}`);
});
