import { MODES } from './harness.js';
import { edgeConformance } from './edges.js';

// The documented config (a new pod connection per request) on both sides.
edgeConformance(MODES[0]);
