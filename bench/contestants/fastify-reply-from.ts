import replyFrom from '@fastify/reply-from';
import Fastify from 'fastify';
import { contestantArgs } from './routes.js';

// fastify + @fastify/reply-from (undici, whose pools keep pod connections alive):
// host + longest prefix, round robin.

const { routes, port } = contestantArgs();
const app = Fastify({ logger: false });
await app.register(replyFrom);
app.all('/*', (request, reply) => {
  const pod = routes(request.headers.host, request.url);
  if (pod === null) return reply.code(404).send();
  return reply.from(`http://${pod.ip}:${pod.port}${request.url}`);
});
await app.listen({ port, host: '127.0.0.1' });
