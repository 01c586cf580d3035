import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderNginxConf } from '../nginx/render.js';
import { defaultConfig } from '../src/core/config.js';
import { redactKeys, redactNginxConf, redactTable, SecretScrubber } from '../src/core/redact.js';
import { buildRouteTable } from '../src/core/route-table.js';
import { apiKeySecret, pod } from './support/objects.js';

// API keys leave the router only in the nginx.conf nginx reads: everything shown is
// redacted by one module, whichever way the text was made.

const config = defaultConfig();
const KEY = Buffer.from('supersecret').toString('base64');
const ROTATED = Buffer.from('rotated').toString('base64');

function lockedTable(plainKey: string): ReturnType<typeof buildRouteTable> {
  const pods = [
    pod('web', { namespace: 'ns', hosts: 'h', paths: '80:/' }),
    pod('open', { namespace: 'free', hosts: 'o', paths: '80:/' }),
  ];
  return buildRouteTable(config, pods, [apiKeySecret('ns', plainKey)]);
}

describe('redaction', () => {
  it('redacts keys for display', () => {
    const table = lockedTable('supersecret');
    const shown = JSON.stringify(redactTable(table));
    assert.ok(!shown.includes(KEY));
    assert.ok(shown.includes('"apiKey":"<redacted>"'));
    // An open route stays open: null is not a key.
    assert.deepEqual(
      redactTable(table).routes.map((r) => [r.host, r.apiKey]),
      [
        ['h', '<redacted>'],
        ['o', null],
      ],
    );
  });

  it("replaces a table's keys in text that quotes them, such as a refusal quoting the config", () => {
    const table = lockedTable('supersecret');
    const refusal = `nginx: [emerg] unexpected "}" in if ($http_x_routing_api_key != "${KEY}") { at line 9`;
    assert.equal(
      redactKeys(refusal, table),
      'nginx: [emerg] unexpected "}" in if ($http_x_routing_api_key != "<redacted>") { at line 9',
    );
    assert.equal(redactKeys('nothing secret here', table), 'nothing secret here');
  });

  it('replaces the key checks of a rendered nginx.conf, whatever the keys were', () => {
    const conf = renderNginxConf(lockedTable('supersecret'), config);
    assert.ok(conf.includes(KEY), 'the rendered config holds the key (what nginx reads)');
    const shown = redactNginxConf(conf);
    assert.ok(!shown.includes(KEY));
    assert.match(shown, /^if \(\$http_x_routing_api_key != "<redacted>"\) \{$/m);
    assert.equal(
      shown,
      renderNginxConf(redactTable(lockedTable('supersecret')), config),
      'the same as rendering the redacted table',
    );
  });

  it('scrubs every key it was shown since it started, rotated ones too', () => {
    const scrubber = new SecretScrubber();
    scrubber.learn(lockedTable('supersecret'));
    scrubber.learn(lockedTable('rotated'));
    assert.equal(
      scrubber.scrub(`old ${KEY}, new ${ROTATED}, again ${KEY}`),
      'old <redacted>, new <redacted>, again <redacted>',
    );
    assert.equal(scrubber.scrub('nothing secret here'), 'nothing secret here');
  });
});
