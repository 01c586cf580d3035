import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/core/config.js';
import { ERROR_CODES, errorCodeInfo, invalidSettingCode } from '../src/core/error-codes.js';

// One catalogue of error codes: each unique, each with the one prefix, each with its
// meaning, and the exit status the CLI ends with read from it.

test('every code is unique, starts with KR_ and says what it means', () => {
  const codes = ERROR_CODES.map((e) => e.code);
  assert.equal(new Set(codes).size, codes.length, `no code twice: ${codes.join(', ')}`);
  for (const entry of ERROR_CODES) {
    assert.match(entry.code, /^KR_[A-Z_<>]+$/);
    assert.ok(entry.meaning.length > 10, `${entry.code} has a meaning`);
  }
});

test("a setting's code is KR_INVALID_ and its variable, and ends the CLI with status 2", () => {
  assert.equal(invalidSettingCode('PORT'), 'KR_INVALID_PORT');
  assert.equal(errorCodeInfo('KR_INVALID_PORT').exit, 2);
  assert.throws(
    () => loadConfig({ PORT: '0' }),
    (err: unknown) => err instanceof ConfigError && err.code === 'KR_INVALID_PORT',
  );
});

test('each code has its exit status, and the faults that do not end the CLI have none', () => {
  assert.equal(errorCodeInfo('KR_BAD_MANIFEST').exit, 1);
  assert.equal(errorCodeInfo('KR_LISTEN_FAILED').exit, 1);
  assert.equal(errorCodeInfo('KR_STOPPED').exit, 0);
  assert.equal(errorCodeInfo('KR_NGINX_CONFIG_REFUSED').exit, null);
  assert.throws(() => errorCodeInfo('KR_NOT_A_CODE' as never), /KR_NOT_A_CODE is not in the error-code catalogue/);
});
