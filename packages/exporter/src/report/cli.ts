/**
 * `agentconn-exporter report` as the package's bin runs it: this entry loads the report's modules only,
 * not the serving command's (OpenTelemetry SDK and exporters), so the report starts faster.
 */
import { runReport } from './command.js';

const code = await runReport(process.argv.slice(3), { env: process.env, stdout: process.stdout, stderr: process.stderr, program: 'agentconn-exporter' });
process.exit(code);
