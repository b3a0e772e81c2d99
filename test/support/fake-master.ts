// The fake master ships with the demo (src/demo/fake-master.ts); tests import it from here.
export * from "../../src/demo/fake-master.js";
