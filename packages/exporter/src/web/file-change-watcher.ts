import { unwatchFile, watchFile, type Stats } from 'node:fs';

/** How often the web config file and the files it names are checked for changes (stat, follows symlinks). */
export const WEB_CONFIG_POLL_MILLIS = 1000;

/**
 * Calls `onChange` (debounced) when any of `files` changes: content, size, or the file behind a symlink (a
 * Kubernetes Secret update swaps one). `watch` replaces the set; `close` stops.
 */
export class FileChangeWatcher {
  readonly #onChange: () => void;
  #files: readonly string[] = [];
  #debounce: NodeJS.Timeout | undefined;

  constructor(onChange: () => void) {
    this.#onChange = onChange;
  }

  readonly #listener = (current: Stats, previous: Stats): void => {
    if (current.mtimeMs === previous.mtimeMs && current.ino === previous.ino && current.size === previous.size) return;
    if (this.#debounce !== undefined) clearTimeout(this.#debounce);
    // A certificate and its key are often replaced one after the other: read them once both are there.
    this.#debounce = setTimeout(() => {
      this.#debounce = undefined;
      this.#onChange();
    }, 200);
    this.#debounce.unref();
  };

  watch(files: readonly string[]): void {
    this.close();
    this.#files = [...new Set(files)];
    for (const file of this.#files) watchFile(file, { interval: WEB_CONFIG_POLL_MILLIS, persistent: false }, this.#listener);
  }

  close(): void {
    for (const file of this.#files) unwatchFile(file, this.#listener);
    this.#files = [];
    if (this.#debounce !== undefined) clearTimeout(this.#debounce);
    this.#debounce = undefined;
  }
}
