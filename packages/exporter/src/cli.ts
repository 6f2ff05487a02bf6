import { ConfigError, helpText, parseCommand } from './config.js';
import { startExporter } from './main.js';
import { WebConfigError } from './web-config.js';
import { EXPORTER_VERSION } from './version.js';

const PROGRAM = 'agentconn-exporter';

async function main(): Promise<number> {
  let command;
  try {
    command = parseCommand(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${PROGRAM}: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  if (command.kind === 'help') {
    process.stdout.write(helpText(PROGRAM));
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${PROGRAM} ${EXPORTER_VERSION}\n`);
    return 0;
  }

  let exporter;
  try {
    exporter = await startExporter({ config: command.config });
  } catch (error) {
    if (error instanceof WebConfigError) {
      process.stderr.write(`${PROGRAM}: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const running = exporter;
  process.on('SIGHUP', () => {
    if (command.config.webConfigFile === undefined) {
      running.logger.info('SIGHUP ignored: no --web.config.file to re-read', {});
      return;
    }
    running.logger.info('SIGHUP: re-reading the web config', { file: command.config.webConfigFile });
    running.reloadWebConfig();
  });
  // A stray rejection (a driver's late error, say) must not take /metrics down with it.
  process.on('unhandledRejection', (reason) => {
    exporter.logger.error('unhandled rejection', { error: reason instanceof Error ? reason.message : String(reason) });
  });
  return new Promise<number>((resolve) => {
    let signalled = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (signalled) {
        exporter.logger.warn('second signal; exiting now', { signal });
        resolve(1);
        return;
      }
      signalled = true;
      exporter.logger.info('stopping', { signal });
      exporter.stop().then(
        () => resolve(0),
        (error: unknown) => {
          exporter.logger.error('stop failed', { error: String(error) });
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: 'fatal', error: error instanceof Error ? error.message : String(error) })}\n`);
    process.exit(1);
  },
);
