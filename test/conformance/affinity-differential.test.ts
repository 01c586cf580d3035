import { affinityConformance } from './affinity.js';
import { MODES } from './harness.js';

// Session affinity on the documented config (a new pod connection per request), every data plane against nginx.
affinityConformance(MODES[0], { firstPickTables: 10, addressesPerRoute: 40, pathTables: 6 });
