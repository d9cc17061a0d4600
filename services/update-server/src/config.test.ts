import { describe, expect, it } from 'vitest';
import { loadConfig } from './config.js';

describe('loadConfig', () => {
  it('defaults to the embedded setup (PGlite + filesystem in ./data) on loopback', () => {
    const c = loadConfig({}, []);
    expect(c).toMatchObject({
      dataDir: './data',
      databaseUrl: undefined,
      s3: undefined,
      host: '127.0.0.1',
      port: 8080,
      audience: 'abota',
    });
  });
  it('reads PostgreSQL, S3 and limits from the environment; flags win', () => {
    const c = loadConfig(
      {
        DATABASE_URL: 'postgres://u@db/x',
        ABOTA_S3_BUCKET: 'b',
        ABOTA_S3_ENDPOINT: 'http://127.0.0.1:9000',
        ABOTA_S3_FORCE_PATH_STYLE: 'true',
        ABOTA_PORT: '9000',
        ABOTA_MAX_BLOB_BYTES: '1024',
      },
      ['--port', '7000', '--audience=fleet'],
    );
    expect(c.databaseUrl).toBe('postgres://u@db/x');
    expect(c.s3).toMatchObject({ bucket: 'b', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true });
    expect(c.port).toBe(7000);
    expect(c.audience).toBe('fleet');
    expect(c.maxBlobSizeBytes).toBe(1024);
  });
  it('names the offending setting and never echoes a malformed admin key', () => {
    expect(() => loadConfig({ ABOTA_PORT: 'eighty' })).toThrow(/ABOTA_PORT: expected an integer/);
    expect(() => loadConfig({}, ['--bogus', '1'])).toThrow(/unknown option "--bogus"/);
    expect(() => loadConfig({ ABOTA_BLOB_DELIVERY: 'carrier-pigeon' })).toThrow(/redirect or stream/);
    let message = '';
    try {
      loadConfig({ ABOTA_ADMIN_KEY: 'abk_tooshort-secret' });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/ABOTA_ADMIN_KEY/);
    expect(message).not.toContain('tooshort-secret');
  });
  it('reads rate limits and the metrics listener (issue #16)', () => {
    const c = loadConfig({ ABOTA_RATE_REGISTER: '5/60', ABOTA_RATE_DEVICE: '0' }, [
      '--metrics-listen',
      '127.0.0.1:9464',
    ]);
    expect(c.rateLimits).toEqual({
      registerPerSource: { burst: 5, periodSeconds: 60 },
      devicePerSource: { burst: 1200, periodSeconds: 60 },
      perDevice: { burst: 0, periodSeconds: 60 },
      signInPerSource: { burst: 10, periodSeconds: 60 },
      signInTotal: { burst: 100, periodSeconds: 60 },
    });
    expect(
      loadConfig({ ABOTA_RATE_SIGN_IN: '3/300', ABOTA_RATE_SIGN_IN_TOTAL: '0' }).rateLimits,
    ).toMatchObject({
      signInPerSource: { burst: 3, periodSeconds: 300 },
      signInTotal: { burst: 0, periodSeconds: 60 },
    });
    expect(c.metricsListen).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(loadConfig({ ABOTA_METRICS_LISTEN: '[::1]:9464' }).metricsListen).toEqual({
      host: '::1',
      port: 9464,
    });
    expect(loadConfig({}).metricsListen).toBeUndefined();
    expect(() => loadConfig({ ABOTA_RATE_DEVICE: 'lots' })).toThrow(
      /ABOTA_RATE_DEVICE: expected "<requests>/,
    );
    expect(() => loadConfig({ ABOTA_METRICS_LISTEN: '9464' })).toThrow(/ABOTA_METRICS_LISTEN/);
  });
});
