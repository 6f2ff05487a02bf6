/**
 * `pnpm bench`: see bench/README.md. Progress on stderr; the Markdown report on stdout and, with the
 * JSON, in `<out>/<run id>/`. Exits 1 when an invariant check fails, 2 on bad flags.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { HELP, parseBenchArgs, UsageError } from './options.js';
import { progress } from './progress.js';
import { renderMarkdown, targetVerdicts } from './report.js';
import { runBench } from './runner.js';

async function main(): Promise<number> {
  let options;
  try {
    options = parseBenchArgs(process.argv.slice(2));
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`bench: ${error.message}\n\n${HELP}`);
      return 2;
    }
    throw error;
  }
  if (options === undefined) {
    process.stdout.write(HELP);
    return 0;
  }
  if ((globalThis as { gc?: unknown }).gc === undefined) {
    process.stderr.write('bench: run with node --expose-gc (pnpm bench does)\n');
    return 2;
  }
  const command = ['pnpm bench', ...process.argv.slice(2)].join(' ');
  const report = await runBench(options, command);
  const markdown = renderMarkdown(report);
  const jsonFile = join(report.outDir, 'results.json');
  const markdownFile = join(report.outDir, 'results.md');
  await writeFile(jsonFile, JSON.stringify({ ...report, targets: targetVerdicts(report) }, null, 2) + '\n');
  await writeFile(markdownFile, markdown + '\n');
  process.stdout.write(markdown + '\n');
  progress(`wrote ${markdownFile} and ${jsonFile}`);
  const failed = report.sizes.flatMap((s) => s.checks.filter((c) => !c.pass));
  if (failed.length > 0) {
    progress(`${failed.length} check(s) failed: ${failed.map((c) => c.name).join('; ')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
