export { StorageError } from './errors.js';
export { createS3Client, s3SettingsFromEnv, validateS3Settings, type S3Settings } from './s3.js';
export { S3Objects, S3HttpError } from './s3-objects.js';
export { EmbeddedS3, EMBEDDED_S3_KEY, type EmbeddedS3Options } from './embedded-s3.js';
export * from './latency/index.js';
export * from './episodes/index.js';
