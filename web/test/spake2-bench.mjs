// The joiner's SPAKE2 cost: `node web/test/spake2-bench.mjs --run`. "cold" is the first
// start()+finish() in this process (noble's precomputed tables and M, N are built then);
// "warm" the mean of the next ones. CPU time is printed beside wall time, as this machine
// may be busy. (`node --test web/test/` runs this file too; without --run it does nothing.)

import { Spake2A } from '../src/spake2.js';

function once(password, theirs) {
  const wall = performance.now();
  const cpu = process.cpuUsage();
  const a = new Spake2A(password);
  a.start();
  a.finish(theirs);
  const used = process.cpuUsage(cpu);
  return { wall: performance.now() - wall, cpu: (used.user + used.system) / 1000 };
}

if (process.argv.includes('--run')) {
  const password = new TextEncoder().encode('rw:xyz789');
  // a fixed message from B (python-spake2's vector): making one here would warm the tables
  const theirs = Uint8Array.from(
    Buffer.from('42354e97b88406922b1df4bea1d7870f17aed3dba7c720b313edae315b00959309', 'hex'),
  );
  const cold = once(password, theirs);
  const runs = 30;
  let wall = 0;
  let cpu = 0;
  for (let i = 0; i < runs; i++) {
    const r = once(password, theirs);
    wall += r.wall;
    cpu += r.cpu;
  }
  const ms = (x) => x.toFixed(1);
  console.log(
    `SPAKE2 side A start+finish: cold ${ms(cold.wall)} ms (cpu ${ms(cold.cpu)}), ` +
      `warm ${ms(wall / runs)} ms (cpu ${ms(cpu / runs)}) over ${runs}`,
  );
}
