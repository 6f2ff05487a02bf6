#!/usr/bin/env node
// Stays in place before the first build, so package managers can always link the bin.
await import('../dist/cli.js');
