import httpProxy from 'http-proxy';
import { keepAliveAgent, serveThrough } from './routes.js';

// Bare http-proxy 1.18.1: host + longest prefix, round robin, pod connections kept alive.

serveThrough(httpProxy.createProxyServer({ agent: keepAliveAgent() }));
