import { MODES } from './harness.js';
import { generatedConformance } from './generated.js';

// Upstream keep-alive (UPSTREAM_KEEPALIVE) on both sides: pod connections reused.
generatedConformance(MODES[1]);
