/**
 * The one error the file-format parsers and decoders throw (tar, ar, zip, the compressions,
 * deb control stanzas, .PKGINFO, Python core metadata, repodata): what format, the message,
 * and, where known, the file and the byte offset in it. It is not a PackratError: a parser does not know what the bytes
 * were for, so its caller wraps it in one that names the package (PACKRAT_PACKAGE_INVALID) or
 * turns it into a check problem.
 */

export type FormatErrorCode =
  | "tar"
  | "ar"
  | "zip"
  | "compress"
  | "deb-control"
  | "pkginfo"
  | "python-metadata"
  | "repodata"
  | "docker-archive";

export interface FormatErrorOptions {
  /** The file the bytes came from, when the parser knows it. */
  file?: string;
  /** The byte offset (in the file, or in the decompressed stream for a member) of the fault. */
  offset?: number;
  cause?: unknown;
}

export class FormatError extends Error {
  override readonly name = "FormatError";
  readonly code: FormatErrorCode;
  readonly file: string | undefined;
  readonly offset: number | undefined;

  constructor(code: FormatErrorCode, message: string, options: FormatErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.file = options.file;
    this.offset = options.offset;
  }
}

export function isFormatError(err: unknown, code?: FormatErrorCode): err is FormatError {
  return err instanceof FormatError && (code === undefined || err.code === code);
}

/**
 * `err` with `file` filled in when it is a FormatError that does not name one (a parser over
 * bytes does not know where they came from; the caller that wraps it does); anything else
 * as it is.
 */
export function inFile(err: unknown, file: string): unknown {
  if (!(err instanceof FormatError) || err.file !== undefined) return err;
  return new FormatError(err.code, err.message, {
    file,
    ...(err.offset === undefined ? {} : { offset: err.offset }),
    ...(err.cause === undefined ? {} : { cause: err.cause }),
  });
}
