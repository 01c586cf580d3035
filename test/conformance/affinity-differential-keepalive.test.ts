import { affinityConformance } from './affinity.js';
import { MODES } from './harness.js';

// Session affinity with upstream keep-alive (`keepalive` after `hash` in the upstream block), every data plane against
// nginx.
affinityConformance(MODES[1], { firstPickTables: 3, addressesPerRoute: 40, pathTables: 4 });
