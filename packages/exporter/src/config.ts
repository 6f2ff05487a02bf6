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

/** An environment variable left unused because a command-line flag gave the same setting. */
export interface IgnoredVariable {
  readonly variable: string;
  /** The flag that gave the setting instead, e.g. `--database-url-file`. */
  readonly flag: string;
}

export type ParsedCommand =
  | { readonly kind: 'run'; readonly config: ExporterConfig; readonly ignoredEnvironment: readonly IgnoredVariable[] }
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

/** Flags that give one setting between them: a flag of the group on the command line overrides every variable of it. */
const SETTING_GROUPS: readonly (readonly (keyof FlagValues)[])[] = [['databaseUrl', 'databaseUrlFromFile']];

/** Where a flag's text came from. */
interface FlagInput {
  readonly text: string;
  readonly fromCommandLine: boolean;
  /** How messages name it: `--interval`, or `AGENTCONN_INTERVAL (--interval)`. */
  readonly source: string;
}

/**
 * Reads the command line and the environment. A flag on the command line wins over any environment
 * variable for the same setting (its own, or one of the other flags that give that setting), and the
 * variables so left unused are listed; both win over the default.
 */
export function parseCommand(argv: readonly string[], env: NodeJS.ProcessEnv, options: ParseCommandOptions = {}): ParsedCommand {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: PARSE_OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new ConfigError(describeParseError(argv, error));
  }
  if (values['help'] === true) return { kind: 'help' };
  if (values['version'] === true) return { kind: 'version' };

  const ignoredEnvironment: IgnoredVariable[] = [];
  const inputs = new Map<keyof FlagValues, FlagInput>();
  for (const spec of FLAGS) {
    const fromFlag = values[spec.flag];
    const fromEnv = env[spec.env];
    const setInEnv = fromEnv !== undefined && fromEnv !== '';
    if (typeof fromFlag === 'string') {
      inputs.set(spec.key, { text: fromFlag, fromCommandLine: true, source: `--${spec.flag}` });
      if (setInEnv) ignoredEnvironment.push({ variable: spec.env, flag: `--${spec.flag}` });
    } else if (setInEnv) {
      inputs.set(spec.key, { text: fromEnv, fromCommandLine: false, source: `${spec.env} (--${spec.flag})` });
    }
  }
  for (const group of SETTING_GROUPS) {
    const winner = group.find((key) => inputs.get(key)?.fromCommandLine === true);
    if (winner === undefined) continue;
    for (const key of group) {
      if (inputs.get(key)?.fromCommandLine !== false) continue;
      inputs.delete(key);
      ignoredEnvironment.push({ variable: flagSpec(key).env, flag: `--${flagSpec(winner).flag}` });
    }
  }
  const urlInputs = [inputs.get('databaseUrl'), inputs.get('databaseUrlFromFile')];
  if (options.db === undefined && urlInputs[0] !== undefined && urlInputs[1] !== undefined) {
    throw new ConfigError(
      urlInputs[0].fromCommandLine
        ? 'the database URL is given twice: use --database-url (DATABASE_URL) or --database-url-file (DATABASE_URL_FILE), not both'
        : 'the database URL is given twice in the environment: DATABASE_URL and DATABASE_URL_FILE; set one',
    );
  }
  const passwordFile = inputs.get('databasePasswordFromFile');
  const urlOnCommandLine = inputs.get('databaseUrl');
  if (passwordFile !== undefined && !passwordFile.fromCommandLine && urlOnCommandLine?.fromCommandLine === true && hasPassword(urlOnCommandLine.text)) {
    // The password is part of the URL's setting: the one on the command line is the one asked for.
    inputs.delete('databasePasswordFromFile');
    ignoredEnvironment.push({ variable: flagSpec('databasePasswordFromFile').env, flag: '--database-url' });
  }

  const given: Record<string, unknown> = {};
  for (const spec of FLAGS) given[spec.key] = readFlag(spec, inputs.get(spec.key), options.db !== undefined);
  const flags = given as unknown as FlagValues;
  const { databaseUrl, databaseUrlFromFile, databasePasswordFromFile, ...settings } = flags;

  if (options.db !== undefined) {
    if (settings.leaderElection && settings.leaderDatabaseUrl === undefined) {
      throw new ConfigError('--leader-election: needs --database-url for its lock connection, and this program supplies the database: give --leader-database-url, or set --leader-election false');
    }
    return { kind: 'run', config: { ...settings, database: { db: options.db } }, ignoredEnvironment };
  }
  const url = databaseUrl ?? databaseUrlFromFile;
  if (url === undefined) throw new ConfigError('--database-url is required (or set DATABASE_URL, or give --database-url-file)');
  if (databasePasswordFromFile === undefined) return { kind: 'run', config: { ...settings, database: { url } }, ignoredEnvironment };
  try {
    return {
      kind: 'run',
      config: { ...settings, database: { url: withPassword(parseDatabaseUrl(url), databasePasswordFromFile).text } },
      ignoredEnvironment,
    };
  } catch (error) {
    if (error instanceof DatabaseUrlError) throw new ConfigError(`--database-password-file: with this password the URL ${error.message}`);
    throw error;
  }
}

function flagSpec(key: keyof FlagValues): AnyFlagSpec {
  const spec = FLAGS.find((f) => f.key === key);
  if (spec === undefined) throw new Error(`no flag for ${key}`);
  return spec;
}

/** Whether a URL carries a password in its userinfo or a `password` parameter (an unparsable one: as if it did not). */
function hasPassword(text: string): boolean {
  try {
    const url = new URL(text);
    return url.password !== '' || [...url.searchParams.keys()].some((key) => key.toLowerCase() === 'password');
  } catch {
    return false;
  }
}

/** The defaults of every setting: the table's default texts, parsed. */
export function defaultSettings(): ExporterSettings {
  const given: Record<string, unknown> = {};
  for (const spec of FLAGS) given[spec.key] = spec.default === undefined ? undefined : spec.parse(spec.default);
  const { databaseUrl: _url, databaseUrlFromFile: _file, databasePasswordFromFile: _password, ...settings } = given as unknown as FlagValues;
  return settings;
}

function readFlag(spec: AnyFlagSpec, input: FlagInput | undefined, injectedDb: boolean): unknown {
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
