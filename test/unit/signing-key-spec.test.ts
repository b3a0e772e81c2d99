import { describe, expect, it } from "vitest";
import fc from "fast-check";
import { isPackratError } from "../../src/errors.js";
import { keySpecMatches, parseKeySpec } from "../../src/signing/key-spec.js";

const FPR = "EF06E932C26363C63292F3EA98BE3C54F29BC765";
const KEYID = FPR.slice(-16);

describe("parseKeySpec", () => {
  it.each([
    ["F29BC765", "short-id", "F29BC765"],
    ["0xf29bc765", "short-id", "F29BC765"],
    [KEYID.toLowerCase(), "long-id", KEYID],
    [`0X${KEYID}`, "long-id", KEYID],
    [`${KEYID}!`, "long-id", KEYID],
    [FPR, "fingerprint", FPR],
    [`0x${FPR.toLowerCase()}`, "fingerprint", FPR],
    ["EF06 E932 C263 63C6 3292  F3EA 98BE 3C54 F29B C765", "fingerprint", FPR],
    ["A".repeat(64), "fingerprint", "A".repeat(64)],
  ])("%s is a %s", (raw, kind, hex) => {
    expect(parseKeySpec(raw)).toEqual({ raw, kind, hex });
  });

  it.each(["", "0x", "mirror", "F29BC76", "F29BC7650", "G29BC765", "A".repeat(41), "A".repeat(32)])(
    "refuses %j",
    (raw) => {
      expect(() => parseKeySpec(raw)).toThrow(/is not a key ID/);
    },
  );

  it("either parses or throws a PackratError, for any string", () => {
    fc.assert(
      fc.property(fc.string(), (raw) => {
        try {
          const spec = parseKeySpec(raw);
          expect(spec.hex).toMatch(/^[0-9A-F]+$/);
        } catch (err) {
          expect(isPackratError(err, "PACKRAT_SIGNING_KEY")).toBe(true);
        }
      }),
    );
  });
});

describe("keySpecMatches", () => {
  it("matches by fingerprint, long ID and short ID (the low 32 bits)", () => {
    expect(keySpecMatches(parseKeySpec(FPR), FPR, KEYID)).toBe(true);
    expect(keySpecMatches(parseKeySpec(KEYID), FPR, KEYID)).toBe(true);
    expect(keySpecMatches(parseKeySpec("f29bc765"), FPR, KEYID)).toBe(true);
    expect(keySpecMatches(parseKeySpec("98BE3C54"), FPR, KEYID)).toBe(false);
    expect(keySpecMatches(parseKeySpec("A".repeat(40)), FPR, KEYID)).toBe(false);
  });
});
