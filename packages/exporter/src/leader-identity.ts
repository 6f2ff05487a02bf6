/**
 * Who leads, as a follower can tell. The leader's lock session names its instance and last published
 * poll in `application_name` (visible to every role); its host, pid, labels, version and interval ride
 * as a comment in each statement of that session, which `pg_stat_activity.query` shows to sessions of
 * the same role (replicas normally share one).
 */

/** What a leader says about itself. */
export interface LeaderIdentity {
  /** The host the process runs on (`os.hostname()`: a pod's name in Kubernetes). */
  readonly host: string;
  readonly pid: number;
  readonly labels: readonly string[];
  readonly version: string;
  readonly intervalMs: number;
}

/** What a follower knows of the lock holder. */
export interface LeaderInfo {
  /** The holder's exporter instance (from its `application_name`); undefined when the holder is not an exporter's lock session. */
  readonly instance: string | undefined;
  readonly applicationName: string | null;
  /** The holder session's backend pid on the database server. */
  readonly backendPid: number;
  /** The address the holder connects from, when this role may see it. */
  readonly clientAddr: string | null;
  /** Undefined when its statements are not visible to this role, or it publishes none (an older version). */
  readonly identity: LeaderIdentity | undefined;
  /** Epoch ms of the holder's last published poll (database clock). */
  readonly publishedPollMs: number | undefined;
  /** How old that poll is, on the database's clock. */
  readonly publishedPollAgeMs: number | undefined;
}

const MARK = 'agentconn-leader';

/** The comment a leader puts before each statement of its lock session. */
export function identityComment(identity: LeaderIdentity): string {
  const json = JSON.stringify({
    host: identity.host,
    pid: identity.pid,
    labels: identity.labels,
    version: identity.version,
    interval_ms: identity.intervalMs,
  });
  // A `*/` inside would end the comment early.
  return `/* ${MARK} ${json.replaceAll('*', '\\u002a')} */ `;
}

/** The identity in a statement's text (`pg_stat_activity.query`), if it carries one. */
export function parseIdentity(query: string | null): LeaderIdentity | undefined {
  if (query === null) return undefined;
  const match = /^\/\* agentconn-leader (\{.*?\}) \*\//.exec(query);
  if (match?.[1] === undefined) return undefined;
  try {
    const value = JSON.parse(match[1]) as Record<string, unknown>;
    const { host, pid, labels, version, interval_ms: intervalMs } = value;
    if (typeof host !== 'string' || typeof pid !== 'number' || !Array.isArray(labels) || typeof version !== 'string' || typeof intervalMs !== 'number') {
      return undefined;
    }
    return { host, pid, labels: labels.filter((l): l is string => typeof l === 'string'), version, intervalMs };
  } catch {
    return undefined;
  }
}

/** `host exporter-0 pid 12 (application_name "agentconn-leader 3f2a… 1765…", backend pid 4711)`. */
export function describeLeader(info: LeaderInfo): string {
  const who = info.identity === undefined ? 'a process' : `host ${info.identity.host} pid ${info.identity.pid}`;
  const from = info.identity === undefined && info.clientAddr !== null ? ` from ${info.clientAddr}` : '';
  return `${who}${from} (application_name "${info.applicationName ?? ''}", backend pid ${info.backendPid})`;
}

/** `template_name,agent_name`, or why they are unknown. */
export function describeLabels(info: LeaderInfo): string {
  if (info.identity !== undefined) return info.identity.labels.join(',');
  return info.instance === undefined
    ? 'unknown (the lock holder is not an agentconn exporter)'
    : "unknown (the leader's session belongs to another database role, or it is an older version)";
}

/** `2026-12-06T05:00:00.000Z (4 s ago)`, or that it published none yet. */
export function describePublishedPoll(info: LeaderInfo): string {
  if (info.publishedPollMs === undefined) return 'none published yet';
  const age = info.publishedPollAgeMs === undefined ? '' : ` (${Math.max(0, Math.round(info.publishedPollAgeMs / 1000))} s ago)`;
  return `${new Date(info.publishedPollMs).toISOString()}${age}`;
}
