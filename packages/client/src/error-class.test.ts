import { describe, expect, it } from 'vitest';
import { isDeviceSideError, isNoVerdictOnRelease } from './error-class.js';

describe('whose fault an error is', () => {
  it('device-side and transport failures are no verdict on the release; trust, verification and health are', () => {
    for (const code of [
      'ERR_CONFIG_INVALID',
      'ERR_INSTALL_NO_SPACE',
      'ERR_INSTALL_SLOT_IO',
      'ERR_TRUST_ROOT',
    ])
      expect([code, isDeviceSideError(code), isNoVerdictOnRelease(code)]).toEqual([code, true, true]);
    for (const code of ['ERR_HTTP_NETWORK', 'ERR_HTTP_UNAVAILABLE', 'ERR_HTTP_TIMEOUT', 'ERR_HTTP_TOO_SLOW'])
      expect([code, isDeviceSideError(code), isNoVerdictOnRelease(code)]).toEqual([code, false, true]);
    for (const code of [
      'ERR_SIGNATURE_INVALID',
      'ERR_INSTALL_BLOCK_CORRUPT',
      'ERR_HEALTH_CHECK_FAILED',
      'ERR_HTTP_TOO_LARGE',
      'ERR_HTTP_BAD_RESPONSE',
      'ERR_HTTP_STATUS',
      undefined,
    ])
      expect([code, isNoVerdictOnRelease(code)]).toEqual([code, false]);
  });
});
