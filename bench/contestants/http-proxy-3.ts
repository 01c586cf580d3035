import { createProxyServer } from 'http-proxy-3';
import { keepAliveAgent, serveThrough } from './routes.js';

// Bare http-proxy-3: host + longest prefix, round robin, pod connections kept alive.

serveThrough(createProxyServer({ agent: keepAliveAgent() }));
