import type { DataPlane } from '../src/core/data-plane.js';
import type { RouteTable } from '../src/core/route-table.js';
import { IncrementalNginxRenderer } from './incremental-render.js';
import type { RenderOptions } from './render.js';

/**
 * A data plane that only shows the nginx.conf each table would get, for mock mode:
 * the documented config, as `render` prints it.
 */
export function createConfigPreview(options: RenderOptions, write: (text: string) => void): DataPlane {
  let last: string | null = null;
  const renderer = new IncrementalNginxRenderer();
  return {
    async apply(table: RouteTable) {
      const conf = renderer.render(table, options);
      if (conf === last) return;
      last = conf;
      write(conf);
    },
    async close() {},
  };
}
