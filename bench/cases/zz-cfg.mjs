const t0 = performance.now();
const { loadConfig } = await import('@piimg/core');
const t1 = performance.now();
await loadConfig(process.argv[2]);
const t2 = performance.now();
await loadConfig(process.argv[2]);
const t3 = performance.now();
console.log(`import ${(t1 - t0).toFixed(0)} first ${(t2 - t1).toFixed(0)} second ${(t3 - t2).toFixed(0)}`);
