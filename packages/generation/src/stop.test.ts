import * as fc from "fast-check";
import { describe, expect, it } from "vitest";
import { StopMatcher } from "./stop";

describe("StopMatcher", () => {
  it("holds back text that could still become a stop string", () => {
    const m = new StopMatcher(["</end>"]);
    expect(m.push("Hello </")).toEqual({ emit: "Hello ", stopped: false });
    expect(m.push("e")).toEqual({ emit: "", stopped: false });
    expect(m.push("x")).toEqual({ emit: "</ex", stopped: false });
    expect(m.push(" ok </en")).toEqual({ emit: " ok ", stopped: false });
    expect(m.push("d> tail")).toEqual({ emit: "", stopped: true });
  });

  it("releases held text at the end", () => {
    const m = new StopMatcher(["STOP"]);
    expect(m.push("abc ST")).toEqual({ emit: "abc ", stopped: false });
    expect(m.flush()).toBe("ST");
  });

  it("emits exactly the text before the first stop string, however the text is chunked", () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 40 }),
        fc.array(fc.integer({ min: 1, max: 5 }), { maxLength: 20 }),
        (text, cuts) => {
          const stop = "<|x|>";
          const full = `${text}${stop}after`;
          const m = new StopMatcher([stop, "zz"]);
          let out = "";
          let at = 0;
          let stopped = false;
          for (const n of [...cuts, full.length]) {
            const r = m.push(full.slice(at, at + n));
            at += n;
            out += r.emit;
            if (r.stopped) {
              stopped = true;
              break;
            }
          }
          const first = Math.min(...[full.indexOf(stop), full.indexOf("zz")].filter((i) => i >= 0));
          expect(stopped).toBe(true);
          expect(out).toBe(full.slice(0, first));
        },
      ),
    );
  });
});
