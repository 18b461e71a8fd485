# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""The end-to-end benchmark runs in its quick mode and writes valid JSON.

It asserts nothing about speed: timings are the script's output, not a
test's verdict.
"""
import json
import math
import subprocess
import sys
from pathlib import Path


def test_quick_run_writes_json(repo_root, tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([
        sys.executable,
        str(Path(repo_root) / 'benchmarks' / 'benchmark_end2end.py'),
        '--quick', '--threads', '1', '--variants', 'bn', 'gn', 'gn-ws',
        'bcn-ws', '--out',
        str(out)
    ],
                          cwd=repo_root,
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'training iteration' in proc.stdout
    result = json.loads(out.read_text())
    variants = {'bn', 'gn', 'gn-ws', 'bcn-ws'}
    for part in ('train_ms', 'eval_ms', 'memory_mib'):
        assert set(result[part]) == variants, part
        assert all(math.isfinite(v) and v > 0
                   for v in result[part].values()), part
    # every variant against BN and GN
    assert set(result['ratios']['train']) == {
        'gn/bn', 'gn-ws/bn', 'bcn-ws/bn', 'gn-ws/gn', 'bcn-ws/gn'
    }
    assert result['args']['crop'] == [64, 64]
    assert result['machine']['threads'] == 1
    assert result['versions']['torch'] and result['versions']['mmseg']
    layers = {(r['layer'], r['baseline']) for r in result['layers']}
    assert ('BCN(est=True)', 'GroupNorm') in layers
    assert ('BCN eval', 'GroupNorm eval') in layers
    assert ('WSConv2d(std) eval', 'Conv2d eval') in layers
    assert all(r['ms'] > 0 for r in result['layers'])
