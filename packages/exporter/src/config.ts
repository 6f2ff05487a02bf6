import { parseArgs } from 'node:util';
import type { Kysely } from 'kysely';
import { DatabaseUrlError, parseDatabaseUrl, withPassword, type CoderDatabase } from '@agentconn/kysely';
import { DATABASE_KEYS, FLAGS, type AnyFlagSpec, type ExporterSettings, type FlagValues } from './flags.js';

export { FLAGS, type ExporterSettings, type ExpositionKind } from './flags.js';
export { flagTableMarkdown, helpText } from './help.js';

/** The Coder database: a URL the exporter connects to (and owns), or a Kysely instance the caller owns. */
export type ExporterDatabase = { readonly url: string } | { readonly db: Kysely<CoderDatabase> };

/** A resolved exporter configuration: every setting has its value. */
export interface ExporterConfig extends ExporterSettings {
  readonly database: ExporterDatabase;
}

export type ParsedCommand =
  | { readonly kind: 'run'; readonly config: ExporterConfig }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' };

export interface ParseCommandOptions {
  /**
   * The database the program supplies (e.g. an embedded PGlite); the database flags are then refused
   * and none is required.
   */
  readonly db?: Kysely<CoderDatabase>;
}

/** A bad flag or value; the message names the flag (and the environment variable it may come from). */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

const PARSE_OPTIONS = {
  help: { type: 'boolean' },
  version: { type: 'boolean' },
  ...Object.fromEntries(FLAGS.map((f) => [f.flag, { type: 'string' }] as const)),
} as const satisfies Record<string, { type: 'string' | 'boolean' }>;

/** Reads the command line and the environment (a flag wins over its variable, both over the default). */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv, options: ParseCommandOptions = {}): ParsedCommand {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(describeParseError(argv, error));
  }
  if (values['help'] === true) return { kind: 'help' };
  if (values['version'] === true) return { kind: 'version' };

  const given: Record<string, unknown> = {};
  for (const spec of FLAGS) given[spec.key] = readFlag(spec, values[spec.flag], env, options.db !== undefined);
  const flags = given as unknown as FlagValues;
  const { databaseUrl, databaseUrlFromFile, databasePasswordFromFile, ...settings } = flags;

  if (options.db !== undefined) {
    if (settings.leaderElection && settings.leaderDatabaseUrl === undefined) {
      throw new ConfigError('--leader-election: needs --database-url for its lock connection, and this program supplies the database: give --leader-database-url, or set --leader-election false');
    }
    return { kind: 'run', config: { ...settings, database: { db: options.db } } };
  }
  if (databaseUrl !== undefined && databaseUrlFromFile !== undefined) {
    throw new ConfigError('the database URL is given twice: use --database-url (DATABASE_URL) or --database-url-file (DATABASE_URL_FILE), not both');
  }
  const url = databaseUrl ?? databaseUrlFromFile;
  if (url === undefined) throw new ConfigError('--database-url is required (or set DATABASE_URL, or give --database-url-file)');
  if (databasePasswordFromFile === undefined) return { kind: 'run', config: { ...settings, database: { url } } };
  try {
    return { kind: 'run', config: { ...settings, database: { url: withPassword(parseDatabaseUrl(url), databasePasswordFromFile).text } } };
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new ConfigError(`--database-password-file: with this password the URL ${error.message}`);
    throw error;
  }
}

/** The defaults of every setting: the table's default texts, parsed. */
export function defaultSettings(): ExporterSettings {
  const given: Record<string, unknown> = {};
  for (const spec of FLAGS) given[spec.key] = spec.default === undefined ? undefined : spec.parse(spec.default);
  const { databaseUrl: _url, databaseUrlFromFile: _file, databasePasswordFromFile: _password, ...settings } = given as unknown as FlagValues;
  return settings;
}

function readFlag(spec: AnyFlagSpec, fromFlag: string | boolean | undefined, env: NodeJS.ProcessEnv, injectedDb: boolean): unknown {
  const fromEnv = env[spec.env];
  const input =
    typeof fromFlag === 'string'
      ? { text: fromFlag, source: `--${spec.flag}` }
      : fromEnv !== undefined && fromEnv !== ''
        ? { text: fromEnv, source: `${spec.env} (--${spec.flag})` }
        : undefined;
  if (injectedDb && DATABASE_KEYS.has(spec.key)) {
    if (input !== undefined) throw new ConfigError(`${input.source}: not accepted here; this program supplies the database`);
    return undefined;
  }
  if (input === undefined) return spec.default === undefined ? undefined : spec.parse(spec.default);
  try {
    return spec.parse(input.text);
  } catch (error) {
    throw new ConfigError(`${input.source}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/** Names the offending argument from the error's code and the parser's own tokens, not from its message text. */
function describeParseError(argv: readonly string[], error: unknown): string {
  const code = error !== null && typeof error === 'object' ? (error as { code?: unknown }).code : undefined;
  const { tokens } = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: false, allowPositionals: true, tokens: true });
  const known = (name: string): name is keyof typeof PARSE_OPTIONS => Object.hasOwn(PARSE_OPTIONS, name);
  switch (code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION': {
      const token = tokens.find((t) => t.kind === 'option' && !known(t.name));
      if (token?.kind === 'option') return `unknown flag ${token.rawName} (see --help)`;
      break;
    }
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      for (const token of tokens) {
        if (token.kind !== 'option' || !known(token.name)) continue;
        const { type } = PARSE_OPTIONS[token.name] as { readonly type: 'string' | 'boolean' };
        if (type === 'boolean' && token.value !== undefined) return `${token.rawName} takes no value`;
        if (type === 'string' && (token.value === undefined || (token.inlineValue === false && token.value.startsWith('-')))) {
          return `${token.rawName} needs a value`;
        }
      }
      break;
    }
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL': {
      const token = tokens.find((t) => t.kind === 'positional');
      if (token?.kind === 'positional') return `unexpected argument "${token.value}": every setting is a --flag VALUE (see --help)`;
      break;
    }
  }
  return `${error instanceof Error ? error.message : String(error)} (see --help)`;
}
