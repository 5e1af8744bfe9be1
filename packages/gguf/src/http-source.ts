/**
 * A byte source over HTTP range requests (`Range: bytes=a-b` → `206 Partial Content`), so a
 * browser reads a model's header and then one tensor at a time from a server or a CDN instead of
 * downloading the whole file into one buffer.
 */
import { GgufError, GgufErrorCode } from "./errors";
import { type ByteSource, bytesSource, errorMessage } from "./source";

/** Options for {@link openHttpSource}. */
export interface HttpSourceOptions {
  /** Headers sent with every request (e.g. `Authorization`). */
  readonly headers?: Readonly<Record<string, string>>;
  /** The `fetch` to use (default `globalThis.fetch`): one with credentials, retries or a cache. */
  readonly fetch?: typeof globalThis.fetch;
  /** The file's size when known: skips the request that asks the server for it. */
  readonly size?: number;
  /**
   * A server that ignores `Range` answers `200` with the whole file. A file of at most this many
   * bytes is then kept from that one download and served from memory; a larger one is refused
   * with `GGUF_RANGE_UNSUPPORTED` rather than pulled whole into memory. Default 64 MiB: enough
   * for test models, far below a real one.
   */
  readonly maxFullDownloadBytes?: number;
  /** Aborts every request this source makes. */
  readonly signal?: AbortSignal;
}

const DEFAULT_MAX_FULL_DOWNLOAD = 64 << 20;

interface ContentRange {
  readonly start: number | undefined;
  readonly end: number | undefined;
  /** undefined when the server wrote `*` (size unknown). */
  readonly total: number | undefined;
}

/** Parses `bytes 0-99/1234`, `bytes 0-99/*` and `bytes *\/1234` (RFC 9110 §14.4). */
function parseContentRange(header: string | null): ContentRange | undefined {
  if (header === null) {
    return undefined;
  }
  const m = /^\s*bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)\s*$/i.exec(header);
  if (m === null) {
    return undefined;
  }
  const number = (s: string | undefined): number | undefined =>
    s === undefined || s === "*" ? undefined : Number(s);
  return { start: number(m[1]), end: number(m[2]), total: number(m[3]) };
}

/**
 * Opens a GGUF (or any file) over HTTP for random access. It first learns the file's size (a
 * one-byte range request, or `options.size`), then each `read` is one range request checked for
 * `206`, the `Content-Range` it asked for and the exact byte count.
 *
 * A server that ignores ranges is handled by `maxFullDownloadBytes` (small files are kept from
 * the one full download; larger ones throw `GGUF_RANGE_UNSUPPORTED`). If the file changes on the
 * server while it is read (another size, another `ETag`), reads fail with `GGUF_IO` instead of
 * mixing two files. Cross-origin servers must allow the `Range` request header and should expose
 * `Content-Range` (`Access-Control-Expose-Headers`); without it the size comes from a `HEAD`
 * request's `Content-Length`.
 *
 * @example
 * const source = await openHttpSource("https://example.com/models/ggml-model-i2_s.gguf");
 * const file = await readGgufFrom(source); // a few MB of header, not the 1.2 GB file
 * const norm = await file.readTensorData("output_norm.weight"); // one more range request
 */
export async function openHttpSource(
  url: string | URL,
  options: HttpSourceOptions = {},
): Promise<ByteSource> {
  const target = new URL(url);
  // Error messages name the file without its query, which may hold a signed token.
  const name = `${target.origin}${target.pathname}`;
  const doFetch = options.fetch ?? globalThis.fetch;
  const maxFull = options.maxFullDownloadBytes ?? DEFAULT_MAX_FULL_DOWNLOAD;

  const request = async (method: "GET" | "HEAD", range: string | undefined): Promise<Response> => {
    try {
      return await doFetch(target, {
        method,
        headers: { ...options.headers, ...(range === undefined ? {} : { Range: range }) },
        ...(options.signal === undefined ? {} : { signal: options.signal }),
      });
    } catch (error) {
      throw new GgufError(
        GgufErrorCode.IO,
        `could not fetch ${name} - ${errorMessage(error)}.\nCheck the URL, the network, and (from a browser) that the server allows this origin (CORS).`,
        { cause: error },
      );
    }
  };
  const httpError = (response: Response, doing: string): GgufError =>
    new GgufError(
      GgufErrorCode.IO,
      `could not ${doing} ${name} - the server answered HTTP ${response.status}${response.statusText === "" ? "" : ` ${response.statusText}`}.`,
    );

  let size = options.size;
  let etag: string | null = null;
  if (size === undefined) {
    const probe = await request("GET", "bytes=0-0");
    if (probe.status === 200) {
      // The server ignores Range and is sending the whole file.
      const whole = await readBodyUpTo(probe, maxFull);
      if (whole === undefined) {
        throw rangeUnsupported(name, maxFull, probe.headers.get("content-length"));
      }
      return bytesSource(whole, name);
    }
    if (probe.status !== 206 && probe.status !== 416) {
      await discard(probe);
      throw httpError(probe, "open");
    }
    await discard(probe);
    etag = probe.headers.get("etag");
    size = parseContentRange(probe.headers.get("content-range"))?.total;
    if (size === undefined) {
      // Cross-origin responses hide Content-Range unless the server exposes it; Content-Length
      // of a HEAD request is always readable.
      const head = await request("HEAD", undefined);
      await discard(head);
      const length = head.ok ? head.headers.get("content-length") : null;
      if (length === null || !/^\d+$/.test(length.trim())) {
        throw new GgufError(
          GgufErrorCode.IO,
          `could not open ${name} - the server did not say how large the file is (no readable Content-Range on a range request, no Content-Length on HEAD).\nPass { size } to openHttpSource, or have the server send "Access-Control-Expose-Headers: Content-Range".`,
        );
      }
      size = Number(length);
    }
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new GgufError(
      GgufErrorCode.IO,
      `could not open ${name} - its size ${size} is not a non-negative integer.`,
    );
  }
  const fileSize = size;

  return {
    size: fileSize,
    name,
    async read(offset: number, length: number): Promise<Uint8Array> {
      if (length === 0) {
        return new Uint8Array(0);
      }
      const end = offset + length - 1;
      const response = await request("GET", `bytes=${offset}-${end}`);
      if (response.status === 200 && offset === 0 && length === fileSize) {
        // Ignoring Range is allowed when the range is the whole file anyway.
        return checkLength(new Uint8Array(await response.arrayBuffer()), length, offset);
      }
      if (response.status === 200) {
        await discard(response);
        throw rangeUnsupported(name, maxFull, String(fileSize));
      }
      if (response.status !== 206) {
        await discard(response);
        throw httpError(response, `read bytes ${offset}..${end + 1} of`);
      }
      const range = parseContentRange(response.headers.get("content-range"));
      const tag = response.headers.get("etag");
      const changed =
        (range !== undefined &&
          (range.start !== offset ||
            range.end !== end ||
            (range.total !== undefined && range.total !== fileSize))) ||
        (etag !== null && tag !== null && tag !== etag);
      if (changed) {
        await discard(response);
        throw new GgufError(
          GgufErrorCode.IO,
          `could not read bytes ${offset}..${end + 1} of ${name} - the server answered "${response.headers.get("content-range")}"${tag !== null && etag !== null && tag !== etag ? ` with ETag ${tag} (was ${etag})` : ""} for a ${fileSize}-byte file.\nThe file changed on the server while it was being read; open it again.`,
        );
      }
      return checkLength(new Uint8Array(await response.arrayBuffer()), length, offset);
    },
  };

  function checkLength(bytes: Uint8Array, length: number, offset: number): Uint8Array {
    if (bytes.length !== length) {
      throw new GgufError(
        GgufErrorCode.IO,
        `could not read ${length} bytes at offset ${offset} of ${name} - the server sent ${bytes.length}.`,
      );
    }
    return bytes;
  }
}

function rangeUnsupported(name: string, maxFull: number, length: string | null): GgufError {
  return new GgufError(
    GgufErrorCode.RANGE_UNSUPPORTED,
    `could not open ${name} - the server ignores HTTP range requests (it answered 200 with the whole file${length === null ? "" : `, ${length} bytes`}), and a file over ${maxFull} bytes is not downloaded whole into memory.\nServe it with range support (any static file server or CDN has it), or raise maxFullDownloadBytes for a small file.`,
  );
}

/** The body, or undefined as soon as it exceeds `limit` bytes (the rest is not downloaded). */
async function readBodyUpTo(response: Response, limit: number): Promise<Uint8Array | undefined> {
  const declared = response.headers.get("content-length");
  if (declared !== null && Number(declared) > limit) {
    await discard(response);
    return undefined;
  }
  if (response.body === null) {
    return new Uint8Array(0);
  }
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) {
      break;
    }
    total += value.length;
    if (total > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/** Drops a body we do not need, so the connection can be reused. */
async function discard(response: Response): Promise<void> {
  try {
    await response.body?.cancel();
  } catch {
    // already consumed or closed: nothing to release
  }
}
