#!/usr/bin/env bash
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
xz -dc .bin/kb.xz > /tmp/kb; chmod +x /tmp/kb
mkdir -p /tmp/m
timeout 400 /tmp/kb profile_decoder_qwen3_0.6b,profile_decoder_smollm2_135m > "$OUT/lanes.json" 2> "$OUT/lanes.err"
echo rc=$?
python3 - "$OUT/lanes.json" <<'PY'
import json,sys
d=json.load(open(sys.argv[1]))
for c in d['cases']:
    print(c['case'], c.get('shape',{}).get('one_pass_label'))
    for v in c.get('variants',[]):
        if 'one_pass' in v['variant']: print('  ',v['variant'],v['median_us'])
PY
