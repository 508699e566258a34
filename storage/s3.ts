/**
 * S3 settings and the client. Works against any S3 endpoint: MinIO in production (path-style, own
 * endpoint), AWS itself (no endpoint), or the embedded store. Credentials come from the environment,
 * never from files in the repository.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { StorageError } from './errors.js';

export interface S3Settings {
  /** http(s)://host:port of an S3-compatible server; undefined for AWS itself. */
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** Path-style URLs (bucket in the path): needed by MinIO and the embedded store. */
  forcePathStyle: boolean;
  accessKeyId: string;
  secretAccessKey: string;
}

const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Settings from the environment: ECGFAAS_S3_ENDPOINT, ECGFAAS_S3_BUCKET (default ecgfaas),
 * ECGFAAS_S3_PATH_STYLE (default true when an endpoint is set), AWS_REGION (default us-east-1),
 * AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY.
 */
export function s3SettingsFromEnv(env: NodeJS.ProcessEnv = process.env, overrides: Partial<S3Settings> = {}): S3Settings {
  const endpoint = overrides.endpoint ?? (env.ECGFAAS_S3_ENDPOINT || undefined);
  const settings: S3Settings = {
    endpoint,
    region: overrides.region ?? env.AWS_REGION ?? 'us-east-1',
    bucket: overrides.bucket ?? env.ECGFAAS_S3_BUCKET ?? 'ecgfaas',
    forcePathStyle: overrides.forcePathStyle ?? (env.ECGFAAS_S3_PATH_STYLE === undefined ? endpoint !== undefined : env.ECGFAAS_S3_PATH_STYLE !== 'false'),
    accessKeyId: overrides.accessKeyId ?? env.AWS_ACCESS_KEY_ID ?? '',
    secretAccessKey: overrides.secretAccessKey ?? env.AWS_SECRET_ACCESS_KEY ?? '',
  };
  return validateS3Settings(settings);
}

export function validateS3Settings(settings: S3Settings): S3Settings {
  if (settings.endpoint !== undefined && !/^https?:\/\/[^/\s]+\/?$/.test(settings.endpoint)) {
    throw new StorageError('S3_CONFIG', `S3 endpoint "${settings.endpoint}" must be http(s)://host[:port]`);
  }
  if (!BUCKET_NAME.test(settings.bucket)) {
    throw new StorageError('S3_CONFIG', `S3 bucket "${settings.bucket}" is not a valid bucket name (3-63 lower-case letters, digits, dots, hyphens)`);
  }
  if (settings.accessKeyId === '' || settings.secretAccessKey === '') {
    throw new StorageError('S3_CONFIG', 'S3 credentials missing: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  return settings;
}

export function createS3Client(settings: S3Settings): S3Client {
  return new S3Client({
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey },
    ...(settings.endpoint === undefined ? {} : { endpoint: settings.endpoint }),
  });
}
