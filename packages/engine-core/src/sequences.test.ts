import { describe, expect, it } from "vitest";
import { EngineErrorCode } from "./errors";
import { SequenceTable } from "./sequences";

describe("SequenceTable", () => {
  it("hands out fresh ids that are never reused", () => {
    const table = new SequenceTable<{ length: number }>();
    const a = table.add({ length: 0 });
    const b = table.add({ length: 3 });
    table.delete(a);
    const c = table.add({ length: 0 });
    expect(new Set([a, b, c]).size).toBe(3);
    expect(table.size).toBe(2);
    expect(table.get(b).length).toBe(3);
  });

  it("rejects freed and unknown sequences with BAD_SEQUENCE", () => {
    const table = new SequenceTable<{ length: number }>();
    const a = table.add({ length: 0 });
    table.delete(a);
    expect(() => table.get(a)).toThrow(
      expect.objectContaining({ code: EngineErrorCode.BAD_SEQUENCE }),
    );
    expect(() => table.delete(a)).toThrow(
      expect.objectContaining({ code: EngineErrorCode.BAD_SEQUENCE }),
    );
    expect(() => table.get(99)).toThrow(/does not exist/);
  });

  it("truncates only to a length it holds", () => {
    const table = new SequenceTable<{ length: number }>();
    const a = table.add({ length: 5 });
    expect(table.truncate(a, 2).length).toBe(2);
    for (const bad of [3, -1, 1.5, Number.NaN]) {
      expect(() => table.truncate(a, bad)).toThrow(
        expect.objectContaining({ code: EngineErrorCode.BAD_OPTION }),
      );
    }
    expect(table.get(a).length).toBe(2);
  });

  it("after dispose, everything answers DISPOSED and a second dispose is a no-op", () => {
    const table = new SequenceTable<{ length: number }>();
    const a = table.add({ length: 0 });
    expect(table.dispose()).toBe(true);
    expect(table.dispose()).toBe(false);
    expect(table.disposed).toBe(true);
    expect(table.size).toBe(0);
    for (const use of [
      () => table.get(a),
      () => table.add({ length: 0 }),
      () => table.assertAlive(),
    ]) {
      expect(use).toThrow(expect.objectContaining({ code: EngineErrorCode.DISPOSED }));
    }
  });
});
