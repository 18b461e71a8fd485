# The toolkit's runtime defaults: mmseg's, plus the package import (which
# registers WSConv2d, BCN and the runner) and the runner that resumes under
# torch >= 2.6 and saves checkpoints atomically (mmseg_wsbcn/engine/runner.py).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
runner_type = 'WSBCNRunner'

# Stop training at the first NaN/inf loss, naming the iteration and the
# values, before that step is checkpointed (StopOnNonFiniteLossHook; checked
# every iteration, on every rank). Switch it off with stop_on_nan = False
# (or --cfg-options stop_on_nan=False). tools/train.py registers the hook
# even when a config replaces custom_hooks, unless stop_on_nan is False.
stop_on_nan = True
custom_hooks = [dict(type='StopOnNonFiniteLossHook')]
