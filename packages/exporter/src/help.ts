import { FLAGS, type AnyFlagSpec } from './flags.js';

function shownDefault(spec: AnyFlagSpec): string {
  return spec.default ?? spec.unset ?? '(unset)';
}

/** `--help`: made from the flag table. */
export function helpText(program: string): string {
  const rows = FLAGS.map((f) => {
    const left = `  --${f.flag} ${f.value}`;
    return `${left.padEnd(40)} ${f.help}\n${''.padEnd(41)}default: ${shownDefault(f)} [env ${f.env}]`;
  });
  return [
    `Usage: ${program} [COMMAND] (--database-url URL | --database-url-file PATH) [flags]`,
    '',
    'Commands (the same flags):',
    '  (none)    serve /metrics',
    '  check     check the database once (connection, TLS, tables, columns, grants, leader) and exit:',
    '            0 when the exporter could serve, 1 when not',
    '  report    the history of first connections in the database (see report --help)',
    '',
    'Serves coderd_agents_first_connection_seconds (time from workspace agent creation to its first',
    'connection to the control plane) on http://HOST:PORT/metrics, read from a Coder PostgreSQL database.',
    '',
    'Flags (each also read from the environment variable shown; a flag on the command line wins over any',
    'variable for the same setting, and the log names the variable it ignored):',
    ...rows,
    `  --help${''.padEnd(32)} show this help and exit`,
    `  --version${''.padEnd(29)} print the version and exit`,
    '',
    'Durations: 500ms, 30s, 5m, 1h, 1h30m, 1d. --listen :PORT (no host) listens on every interface.',
    'Exit codes: 0 stopped by SIGINT/SIGTERM, 1 fatal error, 2 bad flags.',
    '',
  ].join('\n');
}

const cell = (text: string): string => text.replaceAll('|', '\\|');
const code = (text: string): string => `\`${cell(text)}\``;

/** The options table of the package README, made from the flag table (a test keeps the README in step). */
export function flagTableMarkdown(): string {
  const rows = FLAGS.map((f) => {
    const fallback = f.default === undefined ? cell(shownDefault(f)) : code(f.default);
    return `| ${code(`--${f.flag} ${f.value}`)} | ${code(f.env)} | ${fallback} | ${cell(f.help)} |`;
  });
  return ['| flag | environment | default | meaning |', '|---|---|---|---|', ...rows, '| `--help`, `--version` | | | |'].join('\n');
}
