import { cpus, totalmem, release, platform, loadavg } from 'node:os';

export interface MachineFacts {
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly os: string;
  readonly node: string;
  /** 1-minute load average when the report was made: other work on the machine shows here. */
  readonly loadAverage: number;
}

export function machineFacts(): MachineFacts {
  const list = cpus();
  return {
    cpuModel: list[0]?.model ?? 'unknown',
    cpus: list.length,
    memoryBytes: totalmem(),
    os: `${platform()} ${release()}`,
    node: process.version,
    loadAverage: loadavg()[0] ?? 0,
  };
}
