// The status page at / on the admin port: plain HTML and a small script, served as they
// are (no build step). The script polls /status and /routes and builds the page with
// DOM nodes and textContent only, never HTML text: pod names, annotation values and
// reasons are written by anyone who can create a pod, so all of it is shown as text.
// Links are relative so the page also works behind a path prefix (kubectl proxy).

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>k8s-router status</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5rem; color: #1d2125; background: #fafbfc; }
h1 { font-size: 1.4rem; margin: 0 0 .4rem; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td {
  text-align: left; vertical-align: top; padding: .3rem .5rem; border: 1px solid #d0d7de; overflow-wrap: anywhere;
}
th { background: #f0f3f6; font-weight: 600; }
code, .mono { font-family: ui-monospace, monospace; font-size: 13px; }
ul.pods { margin: 0; padding-left: 1.1rem; }
.badge { display: inline-block; padding: .05rem .45rem; border-radius: .6rem; font-size: 12px; font-weight: 600; }
.ready { background: #dafbe1; color: #116329; }
.degraded { background: #fff8c5; color: #7d4e00; }
.not-ready, .error { background: #ffebe9; color: #a40e26; }
.locked { background: #ddf4ff; color: #0a3069; }
.sticky { background: #fbefff; color: #6e40c9; }
.muted { color: #57606a; }
#summary p { margin: .2rem 0; }
td.details { white-space: pre-line; }
</style>
</head>
<body>
<h1>k8s-router</h1>
<div id="summary"><p class="muted">Loading…</p></div>
<h2>Routes <span class="muted" id="route-count"></span></h2>
<p class="muted">Requests are matched on the Host header, then on the longest path prefix; several pods on one path
share it round-robin, in this order, or by client address (affinity ip).</p>
<div id="routes"></div>
<h2>Not routed <span class="muted" id="rejection-count"></span></h2>
<div id="rejections"></div>
<h2>Data planes and source</h2>
<div id="planes"></div>
<p class="muted">Refreshes every 2 seconds. Machine-readable: <a href="status">status</a>, <a href="routes">routes</a>,
<a href="nginx.conf">nginx.conf</a>, <a href="metrics">metrics</a>, <a href="readyz">readyz</a>.</p>
<script src="status-page.js"></script>
</body>
</html>
`;

export const STATUS_PAGE_SCRIPT = `'use strict';
(function () {
  var REFRESH_MS = 2000;

  /** An element with attributes and children; strings become text nodes, never HTML. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    (children || []).forEach(function (child) {
      var text = typeof child === 'string' || typeof child === 'number';
      node.appendChild(text ? document.createTextNode(String(child)) : child);
    });
    return node;
  }

  function show(id, nodes) {
    document.getElementById(id).replaceChildren.apply(document.getElementById(id), nodes);
  }

  function when(iso) {
    if (!iso) return 'never';
    var seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    var ago = seconds < 120 ? seconds + ' s ago' : Math.round(seconds / 60) + ' min ago';
    return new Date(iso).toLocaleString() + ' (' + ago + ')';
  }

  function table(headings, rows) {
    return el('table', {}, [
      el('thead', {}, [el('tr', {}, headings.map(function (h) { return el('th', {}, [h]); }))]),
      el('tbody', {}, rows)
    ]);
  }

  function summary(status) {
    var r = status.readiness;
    var cls = r.status === 'ready' ? 'ready' : r.status === 'degraded' ? 'degraded' : 'not-ready';
    var t = status.table;
    return [
      el('p', {}, [el('span', { 'class': 'badge ' + cls, id: 'readiness' }, [r.status]), ' ', r.reason]),
      el('p', {}, [
        'Backend ', el('code', {}, [status.backend]),
        ' listening on ', el('code', {}, [status.listen.address + ':' + status.listen.port])
      ]),
      el('p', { id: 'last-change' }, t === null
        ? ['No route table yet.']
        : ['Route table v' + t.version + ', last changed ' + when(t.changedAt) + ': ' +
          t.routes + ' routes, ' + t.rejections + ' rejections.'])
    ];
  }

  function pods(route) {
    return el('ul', { 'class': 'pods' }, route.backends.map(function (b) {
      var address = b.ip.indexOf(':') >= 0 ? '[' + b.ip + ']:' + b.port : b.ip + ':' + b.port;
      return el('li', {}, [
        el('span', { 'class': 'mono' }, [b.namespace + '/' + b.pod]), ' ',
        el('span', { 'class': 'mono muted' }, [address])
      ]);
    }));
  }

  function routes(data) {
    var hosts = [];
    var byHost = {};
    data.routes.forEach(function (route) {
      if (!Object.prototype.hasOwnProperty.call(byHost, route.host)) {
        byHost[route.host] = [];
        hosts.push(route.host);
      }
      byHost[route.host].push(route);
    });
    if (hosts.length === 0) return [el('p', { 'class': 'muted' }, ['No routes.'])];
    var columns = ['Path', 'Namespace', 'Access', 'Balancing', 'Pods (in round-robin order)'];
    return hosts.map(function (host) {
      return el('section', { 'class': 'host', 'data-host': host }, [
        el('h3', {}, [host]),
        table(columns, byHost[host].map(function (route) {
          var access = route.apiKey === null
            ? el('span', { 'class': 'muted' }, ['open'])
            : el('span', { 'class': 'badge locked', title: 'requests need the namespace ' + 'API key header' },
              ['API key required']);
          var balancing = route.affinity === 'ip'
            ? el('span', { 'class': 'badge sticky', title: 'each client address keeps to one ' +
              'pod (consistent hashing)' }, ['affinity ip'])
            : el('span', { 'class': 'muted' }, ['round robin']);
          return el('tr', { 'class': 'route' }, [
            el('td', { 'class': 'mono' }, [route.path]),
            el('td', { 'class': 'mono' }, [route.namespace]),
            el('td', {}, [access]),
            el('td', {}, [balancing]),
            el('td', {}, [pods(route)])
          ]);
        }))
      ]);
    });
  }

  function rejections(list) {
    if (list.length === 0) return [el('p', { 'class': 'muted' }, ['Everything is routed.'])];
    return [table(['Namespace/pod', 'Field', 'Value', 'Code', 'Reason'], list.map(function (r) {
      return el('tr', { 'class': 'rejection' }, [
        el('td', { 'class': 'mono' }, [r.namespace + '/' + r.pod]),
        el('td', { 'class': 'mono' }, [r.field]),
        el('td', { 'class': 'mono' }, [r.value]),
        el('td', {}, [el('span', { 'class': 'badge error' }, [r.code])]),
        el('td', {}, [r.reason])
      ]);
    }))];
  }

  function planes(status) {
    var rows = status.dataPlanes.map(function (p) {
      var details = [];
      if (p.nginx) {
        details.push('pid ' + (p.nginx.pid === null ? 'none (not running)' : p.nginx.pid) +
          ', reloads ' + p.nginx.reloads + ', failures ' + p.nginx.failures + ', restarts ' + p.nginx.restarts +
          ', last reload ' + when(p.nginx.lastReloadAt));
        details.push('mode ' + p.nginx.mode + (p.nginx.tableVersion ? ', table ' + p.nginx.tableVersion : '') +
          ', old workers shutting down ' + p.nginx.workersShuttingDown);
        var faults = p.nginx.errors.crit + p.nginx.errors.alert + p.nginx.errors.emerg;
        details.push('nginx faults (crit, alert, emerg in its error log): ' + (faults === 0 ? 'none' :
          p.nginx.errors.crit + ' crit, ' + p.nginx.errors.alert + ' alert, ' + p.nginx.errors.emerg + ' emerg'));
        p.nginx.recentErrors.slice(-3).forEach(function (f) {
          details.push('  [' + f.level + '] ' + when(f.at) + ': ' + f.message);
        });
        if (p.nginx.error) details.push('last error ' + p.nginx.error.code + ': ' + p.nginx.error.message);
      }
      if (!p.nginx)
        details.push(p.name === 'proxy' ? 'serves in the router process' : 'prints the config nginx would get');
      if (p.lastError) details.push('refused the last table ' + when(p.lastError.at) + ': ' + p.lastError.message);
      return el('tr', {}, [
        el('td', { 'class': 'mono' }, [p.name]),
        el('td', {}, [p.servedVersion === null ? 'nothing yet' : 'v' + p.servedVersion + ', ' + when(p.servedAt)]),
        el('td', { 'class': 'mono details' }, [details.join('\\n')])
      ]);
    });
    var s = status.source;
    var source = s.kind === 'manifest'
      ? ['manifest ', el('code', {}, [s.file]),
        s.ok ? ': read' : ': unusable, its last good ' + 'objects are kept: ' + s.lastError]
      : ['cluster: pods watch ' + (s.pods.connected ? 'open' : 'closed') +
          ' (' + s.pods.objects + ' pods, ' + s.pods.restarts + ' restarts), secrets watch ' +
          (s.secrets.connected ? 'open' : 'closed') + ' (' + s.secrets.objects + ' secrets)' +
          (s.pods.lastError ? '; last error: ' + s.pods.lastError : '')];
    return [table(['Data plane', 'Serves', 'Details'], rows), el('p', { id: 'source' }, ['Source: '].concat(source))];
  }

  async function getJson(path) {
    var res = await fetch(path, { cache: 'no-store' });
    if (!res.ok && res.status !== 503) throw new Error(path + ': HTTP ' + res.status);
    return { ok: res.ok, body: await res.json() };
  }

  async function refresh() {
    try {
      var answers = await Promise.all([getJson('status'), getJson('routes')]);
      var status = answers[0].body;
      show('summary', summary(status));
      show('planes', planes(status));
      show('rejections', rejections(status.rejections));
      document.getElementById('rejection-count').textContent = '(' + status.rejections.length + ')';
      if (answers[1].ok) {
        show('routes', routes(answers[1].body));
        document.getElementById('route-count').textContent = '(' + answers[1].body.routes.length + ')';
      } else {
        show('routes', [el('p', { 'class': 'muted' }, [answers[1].body.error || 'No route table yet.'])]);
      }
    } catch (err) {
      show('summary', [el('p', {}, [
        el('span', { 'class': 'badge not-ready' }, ['unreachable']), ' ',
        'The admin server did not answer: ' + err.message
      ])]);
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
`;
