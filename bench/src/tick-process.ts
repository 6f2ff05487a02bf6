/**
 * Entry of the process that runs one mode's ticks (forked by the runner with --expose-gc): receives a
 * TickRunConfig over IPC, answers with a TickRunResult or an error, then exits.
 */
import { runTicks, type TickRunConfig } from './ticks.js';

process.once('message', (config: TickRunConfig) => {
  runTicks(config).then(
    (result) => process.send!({ ok: true, result }, () => process.exit(0)),
    (error: unknown) =>
      process.send!({ ok: false, error: error instanceof Error ? (error.stack ?? error.message) : String(error) }, () => process.exit(1)),
  );
});
