/**
 * The docker layout (issue 19): both archive shapes parse, with every blob located at the
 * right bytes; every bad input of the issue's point 4 is refused with a message that names
 * the fault; the render's tags, `latest`, image index, publish order and shared blobs.
 */
import { describe, expect, it } from "vitest";
import { isPackratError } from "../../src/errors.js";
import { dockerLayout } from "../../src/layout/docker.js";
import { readImageArchive, type ImageArchive } from "../../src/layout/formats/docker-archive.js";
import { readTar, writeTar } from "../../src/layout/formats/tar.js";
import { bufferSource, type PublishedPackage, type RenderedFile } from "../../src/layout/types.js";
import { DEFAULT_LAYOUT_OPTIONS } from "../../src/layout/index.js";
import type { DistroVersion, Repo } from "../../src/types.js";
import {
  dockerArchive,
  layerTar,
  ociArchive,
  sha256,
  withEntryType,
} from "../support/docker-builder.js";

const enc = new TextEncoder();
const base = layerTar({ "etc/os-release": "ID=test\n" });
const app = layerTar({ "usr/bin/app": "#!/bin/sh\necho hi\n" });

async function parse(bytes: Uint8Array, filename = "app_1.0.tar"): Promise<ImageArchive> {
  return (await dockerLayout.parse(bufferSource(bytes), filename)) as unknown as ImageArchive;
}

async function refusal(bytes: Uint8Array, filename = "app_1.0.tar"): Promise<string> {
  try {
    await parse(bytes, filename);
  } catch (err) {
    expect(isPackratError(err, "PACKRAT_PACKAGE_INVALID"), String(err)).toBe(true);
    return (err as Error).message;
  }
  throw new Error("accepted");
}

let nestedIndex = new Uint8Array(0);

/** The archive with one more file entry (before its end-of-archive blocks). */
function appendEntry(archive: Uint8Array, name: string, content: Uint8Array): Uint8Array {
  const entries = readTar(archive).map((e) => ({
    name: e.name,
    ...(e.type === "file" ? { content: e.data } : {}),
    mtime: 0,
  }));
  return writeTar([...entries, { name, content, mtime: 0 }]);
}

const slice = (bytes: Uint8Array, b: { offset: number; size: number }) =>
  bytes.subarray(b.offset, b.offset + b.size);

describe("reading image archives", () => {
  it("reads a docker-archive: config and layers at their offsets, digests as named", async () => {
    const bytes = dockerArchive([{ layers: [base, app], config: { Labels: { a: "b" } } }]);
    const archive = await parse(bytes);
    expect(archive.shape).toBe("docker-archive");
    const [image] = archive.images;
    expect(image!.layers.map((l) => l.digest)).toEqual([
      `sha256:${sha256(base)}`,
      `sha256:${sha256(app)}`,
    ]);
    expect(slice(bytes, image!.layers[1]!)).toEqual(app);
    const config = slice(bytes, image!.config);
    expect(image!.config.digest).toBe(`sha256:${sha256(config)}`);
    expect(JSON.parse(new TextDecoder().decode(config))).toMatchObject({
      config: { Labels: { a: "b" } },
    });
    expect(image!.platform).toEqual({ os: "linux", architecture: "amd64" });
  });

  it("reads an OCI layout with gzip layers: stored digests, diff_ids checked through gunzip", async () => {
    const bytes = ociArchive([{ layers: [base, app], architecture: "arm64" }], { gzip: true });
    const archive = await parse(bytes);
    expect(archive.shape).toBe("oci-layout");
    const [image] = archive.images;
    expect(image!.layers.map((l) => l.diffId)).toEqual([
      `sha256:${sha256(base)}`,
      `sha256:${sha256(app)}`,
    ]);
    for (const l of image!.layers) {
      expect(l.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
      expect(`sha256:${sha256(slice(bytes, l))}`).toBe(l.digest);
    }
    expect(image!.platform.architecture).toBe("arm64");
  });

  it("reads an OCI index of two platforms as two images", async () => {
    const bytes = ociArchive([
      { layers: [base], architecture: "amd64" },
      { layers: [base], architecture: "arm64" },
    ]);
    expect((await parse(bytes)).images.map((i) => i.platform.architecture)).toEqual([
      "amd64",
      "arm64",
    ]);
  });

  it("reads the platforms an image index holds, leaving out those the archive lacks", async () => {
    // As `docker save` with the containerd store writes it: index.json names an image index
    // whose other platform's manifest is not in the archive.
    const single = ociArchive(
      [{ layers: [base], architecture: "arm64" }],
      {},
      {
        manifest: (doc) => {
          const index = doc as { manifests: Record<string, unknown>[] };
          const present = index.manifests[0]!;
          const nested = enc.encode(
            JSON.stringify({
              schemaVersion: 2,
              mediaType: "application/vnd.oci.image.index.v1+json",
              manifests: [
                { ...present, platform: { os: "linux", architecture: "arm64" } },
                {
                  mediaType: "application/vnd.oci.image.manifest.v1+json",
                  digest: `sha256:${"a".repeat(64)}`,
                  size: 100,
                  platform: { os: "linux", architecture: "amd64" },
                },
              ],
            }),
          );
          nestedIndex = nested;
          return {
            schemaVersion: 2,
            manifests: [
              {
                mediaType: "application/vnd.oci.image.index.v1+json",
                digest: `sha256:${sha256(nested)}`,
                size: nested.length,
              },
            ],
          };
        },
        extra: [],
      },
    );
    // The nested index goes in as a blob of its own.
    const withIndex = appendEntry(single, `blobs/sha256/${sha256(nestedIndex)}`, nestedIndex);
    const archive = await parse(withIndex);
    expect(archive.images.map((i) => i.platform.architecture)).toEqual(["arm64"]);
  });

  it("parses without holding the archive: reads stay within 1 MiB each", async () => {
    const big = layerTar({ blob: "x".repeat(5 << 20) });
    const bytes = dockerArchive([{ layers: [big] }]);
    const source = bufferSource(bytes);
    let largest = 0;
    await readImageArchive({
      size: source.size,
      read: (offset, length) => {
        largest = Math.max(largest, length);
        return source.read(offset, length);
      },
    });
    expect(largest).toBeLessThanOrEqual(1 << 20);
  });
});

describe("bad input: the file is refused with the reason", () => {
  const good = () => dockerArchive([{ layers: [base, app] }]);

  it("a file that is not a tar at all", async () => {
    expect(await refusal(enc.encode("not an archive\n".repeat(100)))).toMatch(
      /not an image archive/,
    );
  });

  it("a tar that is not an image archive (no manifest.json, no index.json)", async () => {
    const bytes = writeTar([{ name: "hello.txt", content: enc.encode("hi"), mtime: 0 }]);
    expect(await refusal(bytes)).toMatch(/neither manifest\.json.*nor index\.json/);
  });

  it("manifest.json missing from a docker-archive", async () => {
    expect(await refusal(dockerArchive([{ layers: [base] }], { omit: ["manifest.json"] }))).toMatch(
      /neither manifest\.json/,
    );
  });

  it("index.json missing from an OCI layout", async () => {
    expect(await refusal(ociArchive([{ layers: [base] }], {}, { omit: ["index.json"] }))).toMatch(
      /neither manifest\.json.*nor index\.json/,
    );
  });

  it("a missing layer: manifest.json lists a layer the archive does not hold", async () => {
    const bytes = dockerArchive([{ layers: [base, app] }], {
      manifest: (doc) => {
        const [entry] = doc as { Layers: string[] }[];
        entry!.Layers[1] = "0000/layer.tar";
        return doc;
      },
    });
    expect(await refusal(bytes)).toMatch(
      /0000\/layer\.tar is not in the archive \(missing layer\)/,
    );
  });

  it("a missing layer: fewer layers than the config's diff_ids", async () => {
    const bytes = dockerArchive([{ layers: [base, app] }], {
      manifest: (doc) => {
        const [entry] = doc as { Layers: string[] }[];
        entry!.Layers.pop();
        return doc;
      },
    });
    expect(await refusal(bytes)).toMatch(/1 layer\(s\) listed, the config's rootfs has 2/);
  });

  it("an extra layer: a layer tar no image lists", async () => {
    const bytes = dockerArchive([{ layers: [base] }], {
      extra: [{ name: "ffff/layer.tar", content: app, mtime: 0 }],
    });
    expect(await refusal(bytes)).toMatch(/ffff\/layer\.tar is a layer no image .* \(extra layer\)/);
  });

  it("an extra layer: more layers in an OCI manifest than the config's diff_ids", async () => {
    const bytes = ociArchive([{ layers: [base, app], diffIds: [`sha256:${sha256(base)}`] }]);
    expect(await refusal(bytes)).toMatch(
      /2 layer\(s\) listed, the config's rootfs has 1 .*extra layer/,
    );
  });

  it("a layer whose content does not match the config's diff_ids", async () => {
    const bytes = good();
    const tampered = dockerArchive([{ layers: [base, app] }], {
      layerBytes: (i, b) => (i === 1 ? layerTar({ "usr/bin/app": "evil" }) : b),
    });
    expect(bytes.length).toBeGreaterThan(0);
    expect(await refusal(tampered)).toMatch(/diff_ids say sha256:[0-9a-f]{64} \(digest mismatch\)/);
  });

  it("an OCI blob whose bytes do not match its name", async () => {
    const bytes = ociArchive(
      [{ layers: [base] }],
      { gzip: true },
      {
        layerBytes: (_i, b) => {
          const copy = Uint8Array.from(b);
          copy[copy.length - 10]! ^= 1;
          return copy;
        },
      },
    );
    expect(await refusal(bytes)).toMatch(
      /SHA-256 is sha256:[0-9a-f]{64}, not the sha256:[0-9a-f]{64} it is named/,
    );
  });

  it("a config whose bytes do not match its name", async () => {
    const bytes = dockerArchive([{ layers: [base] }], {
      configBytes: (c) => enc.encode(new TextDecoder().decode(c).replace("amd64", "arm64")),
    });
    expect(await refusal(bytes)).toMatch(/config's SHA-256 is .*, its name says/);
  });

  it("a tar entry named with ..", async () => {
    const bytes = dockerArchive([{ layers: [base] }], {
      extra: [{ name: "../escape", content: enc.encode("x"), mtime: 0 }],
    });
    expect(await refusal(bytes)).toMatch(/\.\.\/escape: entry name with \.\./);
  });

  it("a tar entry with an absolute name", async () => {
    const bytes = dockerArchive([{ layers: [base] }], {
      extra: [{ name: "/etc/passwd", content: enc.encode("x"), mtime: 0 }],
    });
    expect(await refusal(bytes)).toMatch(/\/etc\/passwd: absolute entry name/);
  });

  it("a link named as a layer, or a link out of the archive", async () => {
    const bytes = dockerArchive([{ layers: [base, app] }]);
    const layerName = /"Layers":\["([^"]+)"/.exec(new TextDecoder().decode(bytes))![1]!;
    for (const type of ["2", "1"])
      expect(await refusal(withEntryType(bytes, layerName, type, "manifest.json"))).toMatch(
        /is a link; links are not accepted as image content/,
      );
    const withLink = dockerArchive([{ layers: [base] }], {
      extra: [{ name: "legacy/layer.tar", content: enc.encode(""), mtime: 0 }],
    });
    for (const target of ["/etc/passwd", "../../etc/passwd"])
      expect(await refusal(withEntryType(withLink, "legacy/layer.tar", "2", target))).toMatch(
        /legacy\/layer\.tar: link to .*, outside the archive/,
      );
    // podman's legacy `<id>/layer.tar -> ../<diffid>.tar` beside manifest.json: never followed.
    const legacy = withEntryType(withLink, "legacy/layer.tar", "2", "../manifest.json");
    expect((await parse(legacy)).images).toHaveLength(1);
  });

  it("an image name that is not a valid repository name", async () => {
    for (const name of ["App", "a..b", "-app", "app-"])
      expect(await refusal(good(), `${name}_1.0.tar`)).toMatch(
        /is not a valid image repository name/,
      );
  });

  it("a tag outside [A-Za-z0-9_][A-Za-z0-9._-]{0,127}", async () => {
    for (const tag of [".1", "-1", "1+2", "x".repeat(129)])
      expect(await refusal(good(), `app_${tag}.tar`)).toMatch(/is not a valid image tag/);
  });

  it("a file name without _<version>", async () => {
    expect(await refusal(good(), "app.tar")).toMatch(/named <name>_<version>\.tar/);
    expect(() =>
      dockerLayout.placePackage({
        repo: {} as Repo,
        file: { filename: "app.tar", arch: "all" } as PublishedPackage["file"],
        distroVersion: {} as DistroVersion,
        repoArches: [],
        options: DEFAULT_LAYOUT_OPTIONS,
      }),
    ).toThrow(/named <name>_<version>\.tar/);
  });
});

describe("rendering", () => {
  const dv: DistroVersion = {
    uri: "/dv/docker",
    name: "docker",
    distro: "none",
    version: null,
    fileType: "docker",
    releaseNames: "",
  };
  const repo = { name: "docker-prod", filesystemDir: "docker-prod" } as Repo;
  const pkg = async (
    filename: string,
    bytes: Uint8Array,
    arch = "all",
  ): Promise<PublishedPackage> => {
    const paths = dockerLayout.placePackage({
      repo,
      file: { filename, arch } as PublishedPackage["file"],
      distroVersion: dv,
      repoArches: [],
      options: DEFAULT_LAYOUT_OPTIONS,
    });
    return {
      file: { uri: `/f/${arch}/${filename}`, filename, arch } as PublishedPackage["file"],
      distroVersion: dv,
      paths,
      size: bytes.length,
      sha256: sha256(bytes),
      meta: await dockerLayout.parse(bufferSource(bytes), filename),
    };
  };
  const render = async (packages: PublishedPackage[]) =>
    (
      await dockerLayout.render({
        repo,
        distroVersions: new Map([[dv.uri, dv]]),
        packages,
        signer: null,
        options: DEFAULT_LAYOUT_OPTIONS,
        now: new Date(0),
      })
    ).files;
  const json = (files: RenderedFile[], path: string): unknown => {
    const f = files.find((x) => x.path === path);
    expect(f, path).toBeDefined();
    return JSON.parse(new TextDecoder().decode(f!.content));
  };

  it("tags every version; latest is the highest version (1.10 > 1.9), not the lowest", async () => {
    const files = await render([
      await pkg("app_1.9.tar", dockerArchive([{ layers: [base, app] }])),
      await pkg("app_1.10.tar", dockerArchive([{ layers: [base, layerTar({ v: "1.10" })] }])),
      await pkg("app_1.0.tar", dockerArchive([{ layers: [base] }])),
    ]);
    expect(json(files, "v2/app/tags/list")).toEqual({
      name: "app",
      tags: ["1.0", "1.10", "1.9", "latest"],
    });
    const latest = files.find((f) => f.path === "v2/app/manifests/latest")!;
    const v110 = files.find((f) => f.path === "v2/app/manifests/1.10")!;
    expect(latest.content).toEqual(v110.content);
    expect(json(files, "v2/_catalog")).toEqual({ repositories: ["app"] });
    // Every manifest also by digest, content-addressed.
    const digest = `sha256:${sha256(v110.content)}`;
    expect(files.find((f) => f.path === `v2/app/manifests/${digest}`)?.contentAddressed).toBe(true);
  });

  it("publishes blobs, then manifests by digest, then tags, tags/list and _catalog last", async () => {
    const files = await render([
      await pkg("app_1.0.tar", dockerArchive([{ layers: [base, app] }])),
    ]);
    const stageOf = (re: RegExp) => files.filter((f) => re.test(f.path)).map((f) => f.stage);
    const blobs = stageOf(/\/blobs\//);
    const byDigest = stageOf(/\/manifests\/sha256:/);
    const tags = stageOf(/\/manifests\/(?!sha256:)/);
    const lists = stageOf(/tags\/list$/);
    const catalog = stageOf(/_catalog$/);
    expect(Math.max(...blobs)).toBeLessThan(Math.min(...byDigest));
    expect(Math.max(...byDigest)).toBeLessThan(Math.min(...tags));
    expect(Math.max(...tags)).toBeLessThan(Math.min(...lists));
    expect(Math.max(...lists)).toBeLessThan(Math.min(...catalog));
    for (const f of files)
      expect(f.contentAddressed).toBe(/\/(blobs|manifests|_indexes)\/sha256:/.test(f.path));
  });

  it("a layer shared by two versions is one blob; blobs are ranges of the archive", async () => {
    const one = dockerArchive([{ layers: [base, app] }]);
    const files = await render([
      await pkg("app_1.0.tar", one),
      await pkg("app_2.0.tar", dockerArchive([{ layers: [base] }])),
    ]);
    const baseBlob = files.filter((f) => f.path === `v2/app/blobs/sha256:${sha256(base)}`);
    expect(baseBlob).toHaveLength(1);
    const appBlob = files.find((f) => f.path === `v2/app/blobs/sha256:${sha256(app)}`)!;
    expect(appBlob.extract!.from).toBe("archives/all/app_1.0.tar");
    const x = appBlob.extract!;
    expect(one.subarray(x.offset, x.offset + x.length)).toEqual(app);
    expect(x.sha256).toBe(sha256(app));
  });

  it("one name and version for two architectures is an OCI image index", async () => {
    const files = await render([
      await pkg(
        "multi_1.0.tar",
        dockerArchive([{ layers: [base], architecture: "amd64" }]),
        "x86_64",
      ),
      await pkg(
        "multi_1.0.tar",
        dockerArchive([{ layers: [app], architecture: "arm64" }]),
        "aarch64",
      ),
    ]);
    const index = json(files, "v2/multi/_indexes/1.0") as {
      mediaType: string;
      manifests: { digest: string; platform: { architecture: string } }[];
    };
    expect(index.mediaType).toBe("application/vnd.oci.image.index.v1+json");
    expect(index.manifests.map((m) => m.platform.architecture)).toEqual(["amd64", "arm64"]);
    for (const m of index.manifests)
      expect(files.some((f) => f.path === `v2/multi/manifests/${m.digest}`)).toBe(true);
    expect(files.some((f) => f.path === "v2/multi/manifests/1.0")).toBe(false);
    expect(json(files, "v2/multi/_indexes/latest")).toEqual(index);
  });
});
