/**
 * A local HTTP server for byte-source tests: serves one file with or without range support, the
 * way static servers and CDNs do (206 + Content-Range), or the ways they fail.
 */
import * as http from "node:http";
import type { AddressInfo } from "node:net";

export interface ServeOptions {
  /** Answer `Range` with 206 (default true); false: always 200 with the whole file. */
  readonly ranges?: boolean;
  /** Send Content-Range on 206 (default true); false: like a cross-origin response that hides it. */
  readonly contentRange?: boolean;
  /** ETag for every response; a function lets a test change it between requests. */
  readonly etag?: () => string | undefined;
}

export interface TestServer {
  readonly url: string;
  /** Every request seen: method and Range header. */
  readonly requests: { method: string; range: string | undefined }[];
  /** Replaces the bytes served (a file changed on the server). */
  setBytes(bytes: Uint8Array): void;
  close(): Promise<void>;
}

export async function serve(bytes: Uint8Array, options: ServeOptions = {}): Promise<TestServer> {
  let body = bytes;
  const requests: TestServer["requests"] = [];
  const server = http.createServer((req, res) => {
    const range = req.headers.range;
    requests.push({ method: req.method ?? "", range });
    if (new URL(req.url ?? "/", "http://localhost").pathname !== "/files/model.gguf") {
      res.writeHead(404).end();
      return;
    }
    const etag = options.etag?.();
    const headers: Record<string, string> = etag === undefined ? {} : { ETag: etag };
    const m = range === undefined ? null : /^bytes=(\d+)-(\d+)$/.exec(range);
    if (options.ranges === false || m === null) {
      res.writeHead(200, { ...headers, "Content-Length": String(body.length) });
      res.end(req.method === "HEAD" ? undefined : body);
      return;
    }
    const start = Number(m[1]);
    const end = Math.min(Number(m[2]), body.length - 1);
    if (start >= body.length) {
      res.writeHead(416, { ...headers, "Content-Range": `bytes */${body.length}` }).end();
      return;
    }
    res.writeHead(206, {
      ...headers,
      "Content-Length": String(end - start + 1),
      ...(options.contentRange === false
        ? {}
        : { "Content-Range": `bytes ${start}-${end}/${body.length}` }),
    });
    res.end(body.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/files/model.gguf`,
    requests,
    setBytes: (next) => {
      body = next;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}
