import { startAgentService } from './service.js';

const port = Number(process.env['PORT'] ?? 9465);
const service = await startAgentService({ port });
const now = new Date();
const created = new Date(now.getTime() - 42_000).toISOString();
process.stdout.write(
  [
    `agent service example listening on ${service.url}`,
    '',
    'Report an agent being created (it waits; with a 120 s timeout):',
    `  curl -s -X POST ${service.url}/agents/agent-2/created -H 'content-type: application/json' \\`,
    `    -d '{"template_name":"docker","agent_name":"main","connection_timeout_seconds":120}'`,
    `  curl -s -X POST ${service.url}/agents/agent-2/connected -d '{}'   # when it connects`,
    'Report an agent that connected now, 42 s after it was created:',
    `  curl -s -X POST ${service.url}/agents/agent-1/connected -H 'content-type: application/json' \\`,
    `    -d '{"created_at":"${created}","template_name":"docker","agent_name":"main"}'`,
    'Then read the histogram next to the service\'s own metrics:',
    `  curl -s ${service.url}/metrics | grep -E 'coderd_agents_|agent_service_http_requests'`,
    '',
    'Ctrl-C stops it.',
    '',
  ].join('\n'),
);
const stop = () => {
  void service.close().then(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
