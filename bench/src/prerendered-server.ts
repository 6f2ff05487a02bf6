/**
 * The baseline of `pnpm bench:scrape`: a plain `node:http` server that answers `/<variant>` with bytes an exporter
 * answered before (one file per variant, read into memory once) and that exporter's headers. It does nothing per
 * request but write them: what serving pre-rendered bytes costs on this machine.
 * Usage: node prerendered-server.js MANIFEST.json PORT
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const [manifestFile, portText] = process.argv.slice(2);
if (manifestFile === undefined || portText === undefined) {
  process.stderr.write('usage: node prerendered-server.js MANIFEST.json PORT\n');
  process.exit(2);
}
const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as Record<string, { file: string; headers: Record<string, string> }>;
const bodies = new Map(
  Object.entries(manifest).map(([variant, { file, headers }]) => [`/${variant}`, { body: readFileSync(file), headers }] as const),
);

const server = createServer((request, response) => {
  if (request.url === '/ready') {
    response.writeHead(200).end('ready\n');
    return;
  }
  const entry = bodies.get((request.url ?? '') as `/${string}`);
  if (entry === undefined) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { ...entry.headers, 'Content-Length': String(entry.body.length) });
  response.end(entry.body);
});
server.listen(Number(portText), '127.0.0.1');
process.once('SIGTERM', () => server.close(() => process.exit(0)));
