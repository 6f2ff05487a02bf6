import { InstrumentationBase, type InstrumentationConfig } from '@opentelemetry/instrumentation';
import type { Logger } from './logger.js';
import { INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION } from './metric.js';
import { validateMetricOptions, type FirstConnectionMetricOptions } from './metric-options.js';
import { FirstConnectionRecorder, type RecordOutcome } from './first-connection-recorder.js';
import type { AgentFirstConnection } from './first-connection-source.js';

export interface FirstConnectionInstrumentationConfig extends InstrumentationConfig, FirstConnectionMetricOptions {
  /** Default: OpenTelemetry `diag`. */
  readonly logger?: Logger;
}

const DEFAULT_CONFIG: FirstConnectionInstrumentationConfig = { enabled: true };

/**
 * An OpenTelemetry instrumentation for `registerInstrumentations({ instrumentations: [...] })` and the
 * Node SDK's `instrumentations` option: it records on the MeterProvider they hand it (or the global one).
 * The host calls `recordFirstConnection()` when an agent first connects (the event-driven use of
 * Coder PR #24355). While disabled it holds no instruments, so a disabled instance adds no series.
 */
export class FirstConnectionInstrumentation extends InstrumentationBase<FirstConnectionInstrumentationConfig> {
  #recorder: FirstConnectionRecorder | undefined;

  // The base constructor calls setConfig, _updateMetricInstruments and enable before this class's fields
  // exist; `#recorder in this` is false then, and those overrides leave the work to the constructor.
  constructor(config: FirstConnectionInstrumentationConfig = {}) {
    super(INSTRUMENTATION_SCOPE, INSTRUMENTATION_VERSION, { ...DEFAULT_CONFIG, ...config });
    this._updateMetricInstruments();
  }

  /** Called by the base class whenever the Meter changes (a new MeterProvider): instruments belong to one. */
  protected override _updateMetricInstruments(): void {
    if (!(#recorder in this)) return;
    // Observe-once state restarts with the new instruments.
    this.#recorder = this.isEnabled() ? this.#createRecorder() : undefined;
  }

  protected override init(): void {
    // Nothing to patch: the host calls recordFirstConnection() itself.
  }

  override enable(): void {
    super.enable();
    if (!(#recorder in this)) return;
    this._config = { ...this._config, enabled: true };
    this.#recorder ??= this.#createRecorder();
  }

  override disable(): void {
    super.disable();
    if (!(#recorder in this)) return;
    this._config = { ...this._config, enabled: false };
    this.#recorder = undefined;
  }

  /**
   * Replaces the config (bad options throw, and the old config stays). `enabled: true | false` enables or
   * disables; without `enabled` the current state is kept. New options take effect with new instruments.
   */
  override setConfig(config: FirstConnectionInstrumentationConfig): void {
    validateMetricOptions(config);
    if (!(#recorder in this)) {
      super.setConfig(config);
      return;
    }
    const enabled = config.enabled ?? this.isEnabled();
    super.setConfig({ ...config, enabled });
    if (enabled !== this.isEnabled()) {
      if (enabled) this.enable();
      else this.disable();
    } else {
      this._updateMetricInstruments();
    }
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
    const { labels, cardinalityLimit, logger } = this._config;
    return new FirstConnectionRecorder({
      meter: this.meter,
      ...(labels !== undefined && { labels }),
      ...(cardinalityLimit !== undefined && { cardinalityLimit }),
      ...(logger !== undefined && { logger }),
    });
  }
}
