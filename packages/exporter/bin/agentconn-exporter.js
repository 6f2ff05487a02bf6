#!/usr/bin/env node
// Stays in place before the first build, so package managers can always link the bin.
// The report subcommand has an entry of its own that skips the serving command's modules.
await import(process.argv[2] === 'report' ? '../dist/report/cli.js' : '../dist/cli.js');
