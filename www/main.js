import init, { capabilities, capabilitiesReport } from './pkg/kjarni_web.js';

const status = document.getElementById('status');

async function main() {
  if (!('gpu' in navigator)) {
    status.textContent = 'WebGPU is not available in this browser (Chrome/Edge 113+, or enable it in your browser flags).';
    status.className = 'error';
    return;
  }
  await init();
  try {
    document.getElementById('report').textContent = await capabilitiesReport();
    document.getElementById('json').textContent = await capabilities();
    status.textContent = 'WebGPU device ready.';
    status.className = 'ok';
  } catch (e) {
    status.textContent = `WebGPU device failed: ${e.message ?? e}`;
    status.className = 'error';
  }
}

main();
