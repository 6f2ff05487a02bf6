import { spawnSync } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import type { Logger, LogFields } from '@agentconn/core';

/** The official exporter's text, through its public request handler (its server never starts). */
export function officialText(exporter: PrometheusExporter): Promise<string> {
  return new Promise((resolve, reject) => {
    const response = {
      statusCode: 0,
      setHeader(): void {},
      end(body: string): void {
        if (response.statusCode === 200) resolve(body);
        else reject(new Error(`official exporter answered ${response.statusCode}`));
      },
    };
    exporter.getMetricsRequestHandler({} as IncomingMessage, response as unknown as ServerResponse);
  });
}

export interface LoggedEvent {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly message: string;
  readonly fields: LogFields | undefined;
}

export function recordingLogger(): Logger & { readonly events: LoggedEvent[] } {
  const events: LoggedEvent[] = [];
  return {
    events,
    debug: (message, fields) => events.push({ level: 'debug', message, fields }),
    info: (message, fields) => events.push({ level: 'info', message, fields }),
    warn: (message, fields) => events.push({ level: 'warn', message, fields }),
    error: (message, fields) => events.push({ level: 'error', message, fields }),
  };
}

export const PROMTOOL = process.env['PROMTOOL'] ?? 'promtool';

export function hasPromtool(): boolean {
  const probe = spawnSync(PROMTOOL, ['--version'], { encoding: 'utf8' });
  return probe.status === 0;
}

/** `promtool check metrics` with the text on stdin: exit status and everything it printed. */
export function promtoolCheck(text: string): { status: number | null; output: string } {
  const run = spawnSync(PROMTOOL, ['check', 'metrics'], { input: text, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}
