import { errorMessage, type Logger } from '@agentconn/core';
import { redactSecrets } from '@agentconn/kysely';
import { ConfigError, helpText, parseCommand, type ParsedCommand } from './config.js';
import { createJsonLogger } from './log.js';
import { runCheck } from './check.js';
import { startExporter } from './exporter.js';
import { WebConfigError } from './web/config-file.js';
import { EXPORTER_VERSION } from './version.js';

const PROGRAM = 'agentconn-exporter';

/** Until the configuration says otherwise: fatal errors still go out as JSON lines without secrets. */
let logger: Logger = createJsonLogger({ level: 'info', scrub: redactSecrets });

// Node prints process warnings (a driver's deprecation notice, say) as plain text on stderr: they go
// into the JSON log instead, so that every line there parses.
process.removeAllListeners('warning');
// `check | head`: a reader that stops reading ends the output, not in a crash on stderr.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  logger.error('cannot write to stdout', { error: error.message, err: error });
});
process.on('warning', (warning) => {
  logger.warn('process warning', { warning: warning.name, error: warning.message, ...('code' in warning && { code: String(warning.code) }) });
});

function badFlags(error: ConfigError): number {
  process.stderr.write(`${PROGRAM}: ${redactSecrets(error.message)}\n`);
  return 2;
}

/** Subcommands by name; without one, the exporter serves. Each takes the same flags. */
const SUBCOMMANDS: Readonly<Record<string, (argv: readonly string[]) => Promise<number>>> = {
  check: (argv) => check(argv),
  report: async (argv) => {
    // Loaded only for the subcommand: serving never loads the report's charts.
    const { runReport } = await import('./report/command.js');
    return runReport(argv, { env: process.env, stdout: process.stdout, stderr: process.stderr, program: PROGRAM });
  },
};

async function main(): Promise<number> {
  const [first = '', ...rest] = process.argv.slice(2);
  const subcommand = Object.hasOwn(SUBCOMMANDS, first) ? SUBCOMMANDS[first] : undefined;
  if (subcommand !== undefined) return subcommand(rest);
  return serve(process.argv.slice(2));
}

/** The command, or the exit code of bad flags (their line already written). */
function parsed(argv: readonly string[]): ParsedCommand | number {
  try {
    return parseCommand(argv, process.env);
  } catch (error) {
    if (error instanceof ConfigError) return badFlags(error);
    throw error;
  }
}

/** `check`: the preflight once, a report on stdout; exit 0 when the exporter could serve, 1 when not, 2 on bad flags. */
async function check(argv: readonly string[]): Promise<number> {
  const command = parsed(argv);
  if (typeof command === 'number') return command;
  if (command.kind !== 'run') return serve(argv);
  logger = createJsonLogger({ level: command.config.logLevel, scrub: redactSecrets });
  try {
    return (await runCheck(command.config, (line) => process.stdout.write(redactSecrets(line)), logger)) ? 0 : 1;
  } catch (error) {
    if (error instanceof ConfigError) return badFlags(error);
    throw error;
  }
}

async function serve(argv: readonly string[]): Promise<number> {
  const command = parsed(argv);
  if (typeof command === 'number') return command;
  if (command.kind === 'help') {
    process.stdout.write(helpText(PROGRAM));
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${PROGRAM} ${EXPORTER_VERSION}\n`);
    return 0;
  }

  logger = createJsonLogger({ level: command.config.logLevel, scrub: redactSecrets });
  for (const { variable, flag } of command.ignoredEnvironment) {
    logger.info('environment variable ignored: a command-line flag gives the same setting', { variable, flag });
  }
  // Signals are taken from before the start on: one that comes while the exporter starts (after its
  // "started" line, say) stops it once started, instead of killing the process mid-way.
  let signalled: NodeJS.Signals | undefined;
  let stopNow: ((signal: NodeJS.Signals) => void) | undefined;
  let exitNow: ((code: number) => void) | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled !== undefined) {
      logger.warn('second signal; exiting now', { signal });
      if (exitNow !== undefined) exitNow(1);
      else process.exit(1);
      return;
    }
    signalled = signal;
    stopNow?.(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let exporter;
  try {
    exporter = await startExporter({ config: command.config, logger });
  } catch (error) {
    if (error instanceof ConfigError) return badFlags(error);
    if (error instanceof WebConfigError) {
      process.stderr.write(`${PROGRAM}: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const running = exporter;
  process.on('SIGHUP', () => {
    if (command.config.webConfigFile === undefined) {
      logger.info('SIGHUP ignored: no --web.config.file to re-read', {});
      return;
    }
    logger.info('SIGHUP: re-reading the web config', { file: command.config.webConfigFile });
    running.reloadWebConfig();
  });
  // A stray rejection (a driver's late error, say) must not take /metrics down with it.
  process.on('unhandledRejection', (reason) => {
    logger.error('unhandled rejection', { error: errorMessage(reason), err: reason });
  });
  return new Promise<number>((resolve) => {
    exitNow = resolve;
    stopNow = (signal) => {
      logger.info('stopping', { signal });
      running.stop().then(
        () => resolve(0),
        (error: unknown) => {
          logger.error('stop failed', { error: errorMessage(error), err: error });
          resolve(1);
        },
      );
    };
    if (signalled !== undefined) stopNow(signalled);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    logger.error('fatal', { error: errorMessage(error), err: error });
    process.exit(1);
  },
);
