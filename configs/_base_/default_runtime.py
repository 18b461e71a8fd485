# The toolkit's runtime defaults: mmseg's, plus the package import (which
# registers WSConv2d, BCN, the hooks and the runner) and the runner that resumes under
# torch >= 2.6 and saves checkpoints atomically (mmseg_wsbcn/engine/runner.py).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['mmseg_wsbcn'], allow_failed_imports=False)
runner_type = 'SafeCheckpointRunner'

# Stop training at the first NaN/inf loss, naming the iteration and the
# values, before that step is checkpointed (StopOnNonFiniteLossHook; checked
# every iteration, on every rank). Configs that add hooks extend this list
# (custom_hooks = _base_.custom_hooks + [...]), so it stays first; switch it
# off for one run with --cfg-options custom_hooks.0.enabled=False.
custom_hooks = [dict(type='StopOnNonFiniteLossHook')]
# On SIGTERM/SIGUSR1 (slurm's warning before it kills a job) training saves
# a checkpoint after the iteration and exits with status 75: the runner adds
# PreemptionHook when custom_hooks lists none (list it to configure it, e.g.
# dict(type='PreemptionHook', enabled=False); docs/distributed.md).
