import { metrics, type MeterProvider, type TracerProvider } from '@opentelemetry/api';
import { INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION } from './metric.js';
import type { FirstConnectionMetricOptions } from './options.js';
import type { Logger } from './logger.js';
import { FirstConnectionRecorder, type RecordOutcome } from './recorder.js';
import type { AgentFirstConnection } from './source.js';

export interface FirstConnectionInstrumentationConfig extends FirstConnectionMetricOptions {
  /** Default true: enabled on construction, as OpenTelemetry instrumentations are. */
  readonly enabled?: boolean;
  readonly logger?: Logger;
}

/**
 * Fits `registerInstrumentations({ instrumentations: [...] })` and the Node SDK's `instrumentations`
 * option; uses the MeterProvider they hand it (or the global one). It patches nothing: the host calls
 * `recordFirstConnection()` when an agent first connects (the event-driven use of Coder #24355).
 */
export class FirstConnectionInstrumentation {
  readonly instrumentationName = INSTRUMENTATION_SCOPE;
  readonly instrumentationVersion = INSTRUMENTATION_VERSION;
  #config: FirstConnectionInstrumentationConfig;
  #meterProvider: MeterProvider | undefined;
  #recorder: FirstConnectionRecorder | undefined;

  constructor(config: FirstConnectionInstrumentationConfig = {}) {
    this.#config = { ...config, enabled: config.enabled ?? true };
    // Fail on bad options at construction, not at the first record.
    this.#recorder = this.#createRecorder();
    if (!this.#config.enabled) this.#recorder = undefined;
  }

  enable(): void {
    this.#config = { ...this.#config, enabled: true };
    this.#recorder ??= this.#createRecorder();
  }

  disable(): void {
    this.#config = { ...this.#config, enabled: false };
    this.#recorder = undefined;
  }

  setMeterProvider(meterProvider: MeterProvider): void {
    this.#meterProvider = meterProvider;
    // Instruments belong to a provider: a new provider needs new instruments (observe-once state restarts).
    if (this.#recorder !== undefined) this.#recorder = this.#createRecorder();
  }

  setTracerProvider(_tracerProvider: TracerProvider): void {
    // No spans.
  }

  getConfig(): FirstConnectionInstrumentationConfig {
    return this.#config;
  }

  setConfig(config: FirstConnectionInstrumentationConfig): void {
    this.#config = { ...config, enabled: this.#config.enabled ?? true };
    if (this.#recorder !== undefined) this.#recorder = this.#createRecorder();
  }

  /** The recorder in use, while enabled. */
  get recorder(): FirstConnectionRecorder | undefined {
    return this.#recorder;
  }

  /** Records one first connection; a no-op (`'disabled'`) while disabled. Never throws. */
  recordFirstConnection(agent: AgentFirstConnection): RecordOutcome | 'disabled' {
    return this.#recorder?.record(agent) ?? 'disabled';
  }

  #createRecorder(): FirstConnectionRecorder {
    const { labels, cardinalityLimit, logger } = this.#config;
    return new FirstConnectionRecorder({
      meterProvider: this.#meterProvider ?? metrics.getMeterProvider(),
      ...(labels !== undefined && { labels }),
      ...(cardinalityLimit !== undefined && { cardinalityLimit }),
      ...(logger !== undefined && { logger }),
    });
  }
}
