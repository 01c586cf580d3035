import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkCase, injectionProperty } from './support/injection-property.js';
import { pod } from './support/objects.js';
import { parseNginxConf } from './support/nginx-conf-parser.js';

// `npm run fuzz` runs the same property for 100,000 cases; here a few thousand.
const RUNS = 2000;

describe('no annotation can change the structure of nginx.conf', () => {
  it('the structure check notices an injected directive (the oracle can fail)', () => {
    const clean = 'http {\nserver {\nlocation /a {\nproxy_pass http://x;\n}\n}\n}\n';
    const injected = 'http {\nserver {\nlocation /a;}server{return 200 {\nproxy_pass http://x;\n}\n}\n}\n';
    assert.notDeepEqual(parseNginxConf(clean), parseNginxConf(injected));
  });

  it('keeps the template structure for hand-picked hostile values', async () => {
    const hostile = [
      pod('web', { hosts: 'a.example.com;}server{listen 81;', paths: '80:/x;}location /y {return 200;' }),
      pod('web2', { hosts: 'b.example.com\nserver_name evil;', paths: '80:/$host 80:/"a" 80:/a\\ 80:/{} 80:/#x' }),
      pod('web3', { hosts: 'c.example.com', paths: "80:/ok 80:/a'b 80:/%2e%2e 80:/a b" }),
    ];
    const verdict = await checkCase({ pods: hostile, secrets: [] });
    assert.ok(verdict.ok, verdict.problem);
  });

  it(`holds for ${RUNS} generated cases, checked by nginx -t`, async () => {
    await fc.assert(injectionProperty(), { numRuns: RUNS });
  });
});
