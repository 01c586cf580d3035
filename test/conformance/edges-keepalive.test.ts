import { MODES } from './harness.js';
import { edgeConformance } from './edges.js';

// Upstream keep-alive (UPSTREAM_KEEPALIVE) on both sides: pod connections reused.
edgeConformance(MODES[1]);
