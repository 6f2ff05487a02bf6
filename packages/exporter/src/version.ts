export const EXPORTER_VERSION = '0.1.0';
